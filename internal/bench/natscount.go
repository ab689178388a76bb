package bench

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// NATSCounts are a NATS server's running totals, read before and after a cell to count what one
// execution costs the message path: the messages each connection sent the server (In) and the
// server sent it (Out), by connection name, and the writes to each stream.
type NATSCounts struct {
	Conns   map[string]MsgCounts    // by connection name, summed over the connections of that name
	Streams map[string]StreamCounts // by stream name
}

// MsgCounts are messages from a client to the server (In) and from the server to it (Out):
// publishes, JetStream API requests, acks and pull requests are In; deliveries, replies and
// JetStream acknowledgements are Out.
type MsgCounts struct {
	In  int64 `json:"in"`
	Out int64 `json:"out"`
}

// StreamCounts are a stream's last sequence (every stored message takes one) and its message
// count: writes are the growth of the first, and writes less the growth of the second are the
// messages removed (acked from a work queue, replaced in a KV bucket, expired).
type StreamCounts struct {
	LastSeq uint64 `json:"last_seq"`
	Msgs    uint64 `json:"msgs"`
}

// cellNATS is what one cell's executions cost the message path, per execution.
type cellNATS struct {
	In      float64            `json:"in_per_exec"`  // messages clients sent the server
	Out     float64            `json:"out_per_exec"` // messages the server sent clients
	Writes  float64            `json:"stream_writes_per_exec"`
	Removes float64            `json:"stream_removes_per_exec"`
	ByConn  map[string]MsgRate `json:"by_connection,omitempty"`
	Streams map[string]float64 `json:"writes_by_stream,omitempty"`
}

// MsgRate is MsgCounts per execution.
type MsgRate struct {
	In  float64 `json:"in"`
	Out float64 `json:"out"`
}

// natsSettle is how long a cell waits after its last reply before it reads the counts again:
// what an execution does after its reply (event, ack, accounting) is counted with it.
const natsSettle = 300 * time.Millisecond

// perExec turns the counts before and after n executions into a cellNATS; connections and
// streams that did nothing are left out.
func perExec(before, after NATSCounts, n int64) *cellNATS {
	if n <= 0 {
		return nil
	}
	f := float64(n)
	c := &cellNATS{ByConn: map[string]MsgRate{}, Streams: map[string]float64{}}
	for name, a := range after.Conns {
		b := before.Conns[name]
		in, out := a.In-b.In, a.Out-b.Out
		if in <= 0 && out <= 0 {
			continue
		}
		c.In += float64(in) / f
		c.Out += float64(out) / f
		c.ByConn[name] = MsgRate{In: float64(in) / f, Out: float64(out) / f}
	}
	for name, a := range after.Streams {
		b := before.Streams[name]
		w := a.LastSeq - b.LastSeq
		if a.LastSeq < b.LastSeq || w == 0 {
			continue
		}
		c.Writes += float64(w) / f
		c.Streams[name] = float64(w) / f
		if removed := int64(w) - (int64(a.Msgs) - int64(b.Msgs)); removed > 0 {
			c.Removes += float64(removed) / f
		}
	}
	return c
}

// printNATS writes the per-execution message counts of the cells that have them.
func (o *benchOutput) printNATS(w io.Writer) {
	first := true
	for _, x := range o.Cells {
		n := x.NATS
		if n == nil || (x.Mode != modeREST && x.Mode != modeWrk && x.Mode != modeNATS && x.Mode != modeBare) {
			continue
		}
		if first {
			fmt.Fprintln(w, "\nNATS per execution (messages clients sent the server / the server sent clients, by connection; stream writes, by stream):")
			first = false
		}
		var conns, strs []string
		for _, name := range slices.Sorted(maps.Keys(n.ByConn)) {
			r := n.ByConn[name]
			conns = append(conns, fmt.Sprintf("%s %.2f/%.2f", strings.TrimPrefix(name, "wasmwiz-"), r.In, r.Out))
		}
		for _, name := range slices.Sorted(maps.Keys(n.Streams)) {
			strs = append(strs, fmt.Sprintf("%s %.2f", name, n.Streams[name]))
		}
		fmt.Fprintf(w, "  %-6s %-8s c=%-3d %5.2f in %5.2f out (%s); %.2f writes (%s), %.2f removed\n",
			x.Module, x.Mode, x.Concurrency, n.In, n.Out, strings.Join(conns, ", "), n.Writes, strings.Join(strs, ", "), n.Removes)
	}
}

// printCPU writes the CPU time per execution of every cell: what bounds a mode's rate when the
// CPUs, not the waits, are the limit (on a busy machine the rates mostly measure the waits).
func (o *benchOutput) printCPU(w io.Writer, levels []int) {
	if len(o.Cells) == 0 {
		return
	}
	fmt.Fprintln(w, "\nCPU per execution, µs (this process + the workers; the floors and peers run in this process), and how long")
	fmt.Fprintln(w, "the same threads waited for a CPU while runnable (µs per execution; grows with other work on the machine):")
	seen := map[string]bool{}
	for _, x := range o.Cells {
		key := x.Module + " " + x.Mode
		if seen[key] {
			continue
		}
		seen[key] = true
		fmt.Fprintf(w, "  %-6s %-16s", x.Module, x.Mode)
		for _, c := range levels {
			if y := o.cell(x.Module, x.Mode, c); y != nil {
				fmt.Fprintf(w, " | c=%-3d cpu %5.0f + %-5.0f wait %5.0f + %-5.0f", c, y.CPUProcessUS, y.CPUWorkersUS, y.WaitProcessUS, y.WaitWorkersUS)
			}
		}
		fmt.Fprintln(w)
	}
}
