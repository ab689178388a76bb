package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmwiz/wasmwiz/schemas"
)

const dlqUsage = `usage: wasmwiz dlq <command> [flags]

  list                      the dead letters: sequence, time, execution, tenant, tier, reason (--json: JSON lines)
  show SEQ                  one dead letter: its headers and request (--full: with stdin and env values)
  replay SEQ... | --all     publish the requests again, with their execution ids, and remove them from the dead letters
  purge SEQ... | --all      remove dead letters without replaying them

Every command dials NATS with the context's NATS URL and identity (--context NAME, else the
current one; beside wasmwiz dev: --context dev-admin), or --nats-url and the --nats-* credential
flags. A replayed request whose execution already ran is answered from
its stored result (its event is published if it was missing), never run twice.`

// HeaderReplayedFrom is set on a request replayed from the dead letters: its sequence there.
const HeaderReplayedFrom = "Wasmwiz-Replayed-From"

// deadLetter is one message of WASMWIZ_DLQ, as list and show print it.
type deadLetter struct {
	Seq         uint64    `json:"seq"`
	Time        time.Time `json:"time"`
	ExecutionID string    `json:"execution_id"`
	TenantID    string    `json:"tenant_id"`
	Tier        string    `json:"tier"`
	Subject     string    `json:"subject"`
	Reason      string    `json:"reason"`
}

func newDeadLetter(seq uint64, t time.Time, h nats.Header, data []byte) deadLetter {
	d := deadLetter{Seq: seq, Time: t.UTC(), ExecutionID: h.Get(schemas.HeaderExecutionID),
		Subject: h.Get(schemas.HeaderDLQSubject), Reason: h.Get(schemas.HeaderDLQReason)}
	if tier, tenant, err := schemas.ParseExecSubject(d.Subject); err == nil {
		d.Tier, d.TenantID = tier, tenant
	}
	if d.ExecutionID == "" {
		var req schemas.ExecRequest
		if json.Unmarshal(data, &req) == nil {
			d.ExecutionID = req.ExecutionID
		}
	}
	return d
}

// runDLQ is the operator's view of the dead letters: requests that exhausted their deliveries.
func runDLQ(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{dlqUsage}
	}
	cmd := args[0]
	fs := newFlagSet("dlq "+cmd, getenv, stderr)
	conn := opsNATSFlags(fs)
	asJSON := fs.Bool("json", false, "list: JSON lines")
	full := fs.Bool("full", false, "show: print stdin and env values too (they may hold tenants' data)")
	all := fs.Bool("all", false, "replay, purge: every dead letter")
	pos, err := fs.parseInterspersed(args[1:])
	if err != nil {
		return err
	}
	var seqs []uint64
	for _, p := range pos {
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil || n == 0 {
			return usageError{fmt.Sprintf("%q is not a dead letter's sequence (see wasmwiz dlq list)", p)}
		}
		seqs = append(seqs, n)
	}
	switch cmd {
	case "list":
		if len(seqs) > 0 || *all {
			return usageError{dlqUsage}
		}
	case "show":
		if len(seqs) != 1 || *all {
			return usageError{"usage: wasmwiz dlq show SEQ"}
		}
	case "replay", "purge":
		if (len(seqs) == 0) == !*all {
			return usageError{fmt.Sprintf("usage: wasmwiz dlq %s SEQ... | --all", cmd)}
		}
	default:
		return usageError{dlqUsage}
	}
	nc, js, err := connectJetStream(conn, "wasmwiz-dlq")
	if err != nil {
		return err
	}
	defer nc.Close()
	stream, err := js.Stream(ctx, schemas.StreamDLQ)
	if err != nil {
		return fmt.Errorf("dead letters (%s): %w", schemas.StreamDLQ, err)
	}
	if *all {
		if cmd == "purge" {
			info, err := stream.Info(ctx)
			if err != nil {
				return err
			}
			if err := stream.Purge(ctx); err != nil {
				return fmt.Errorf("purge %s: %w", schemas.StreamDLQ, err)
			}
			fmt.Fprintf(stdout, "purged %d dead letters\n", info.State.Msgs)
			return nil
		}
		letters, err := listDeadLetters(ctx, js)
		if err != nil {
			return err
		}
		for _, d := range letters {
			seqs = append(seqs, d.Seq)
		}
	}
	switch cmd {
	case "list":
		letters, err := listDeadLetters(ctx, js)
		if err != nil {
			return err
		}
		if *asJSON {
			enc := json.NewEncoder(stdout)
			for _, d := range letters {
				if err := enc.Encode(d); err != nil {
					return err
				}
			}
			return nil
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SEQ\tTIME\tEXECUTION\tTENANT\tTIER\tREASON")
		for _, d := range letters {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", d.Seq, d.Time.Format(time.RFC3339), d.ExecutionID, d.TenantID, d.Tier, d.Reason)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%d dead letters\n", len(letters))
		return nil
	case "show":
		return showDeadLetter(ctx, stream, seqs[0], *full, stdout)
	case "purge":
		for _, seq := range seqs {
			if err := stream.DeleteMsg(ctx, seq); err != nil {
				return fmt.Errorf("purge dead letter %d: %w", seq, err)
			}
			fmt.Fprintf(stdout, "purged %d\n", seq)
		}
		return nil
	default: // replay
		failed := 0
		for _, seq := range seqs {
			d, err := replayDeadLetter(ctx, js, stream, seq)
			if err != nil {
				failed++
				fmt.Fprintf(stderr, "wasmwiz dlq replay: %d: %v\n", seq, err)
				continue
			}
			fmt.Fprintf(stdout, "replayed %d: execution %s on %s\n", seq, d.ExecutionID, d.Subject)
		}
		if failed > 0 {
			return fmt.Errorf("%d of %d dead letters not replayed (they stay in %s)", failed, len(seqs), schemas.StreamDLQ)
		}
		return nil
	}
}

// listDeadLetters reads every dead letter, oldest first.
func listDeadLetters(ctx context.Context, js jetstream.JetStream) ([]deadLetter, error) {
	var out []deadLetter
	err := readStream(ctx, js, schemas.StreamDLQ, nil, streamStart{policy: jetstream.DeliverAllPolicy}, func(m jetstream.Msg) error {
		md, err := m.Metadata()
		if err != nil {
			return nil
		}
		out = append(out, newDeadLetter(md.Sequence.Stream, md.Timestamp, m.Headers(), m.Data()))
		return nil
	})
	return out, err
}

func showDeadLetter(ctx context.Context, stream jetstream.Stream, seq uint64, full bool, w io.Writer) error {
	m, err := stream.GetMsg(ctx, seq)
	if err != nil {
		return fmt.Errorf("dead letter %d: %w", seq, err)
	}
	d := newDeadLetter(m.Sequence, m.Time, m.Header, m.Data)
	var req schemas.ExecRequest
	if err := json.Unmarshal(m.Data, &req); err != nil {
		return fmt.Errorf("dead letter %d: not an execution request: %w", seq, err)
	}
	if !full {
		if len(req.Stdin) > 0 {
			req.Stdin = []byte(fmt.Sprintf("(%d bytes; --full shows them)", len(req.Stdin)))
		}
		for k := range req.Env {
			req.Env[k] = "(hidden; --full shows it)"
		}
	}
	headers := map[string]string{}
	for _, k := range slices.Sorted(maps.Keys(m.Header)) {
		headers[k] = m.Header.Get(k)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		deadLetter
		Headers map[string]string   `json:"headers"`
		Request schemas.ExecRequest `json:"request"`
	}{d, headers, req})
}

// replayDeadLetter publishes a dead letter's request again on its subject, with its execution
// id, and removes it from the dead letters.
//
// The executor that takes it reads the results KV first, because the replay carries no
// "new execution" mark: an execution that already ran is answered from its result (and its
// event published if it was missing), not run again. A result the dead-letter path stored for
// a request that never started ("given up", no start time) is removed first, so that the
// replay runs it. The replay has a Nats-Msg-Id of its own (the execution id and the dead
// letter's sequence): the original id may still be inside the stream's duplicate window.
func replayDeadLetter(ctx context.Context, js jetstream.JetStream, stream jetstream.Stream, seq uint64) (deadLetter, error) {
	m, err := stream.GetMsg(ctx, seq)
	if err != nil {
		return deadLetter{}, err
	}
	d := newDeadLetter(m.Sequence, m.Time, m.Header, m.Data)
	if d.Tier == "" || !schemas.ValidExecutionID(d.ExecutionID) {
		return d, fmt.Errorf("no execution subject or id (subject %q, execution %q): purge it", d.Subject, d.ExecutionID)
	}
	results, err := js.KeyValue(ctx, schemas.BucketResults)
	if err != nil {
		return d, fmt.Errorf("results: %w", err)
	}
	if entry, err := results.Get(ctx, d.ExecutionID); err == nil {
		var res schemas.Result
		if json.Unmarshal(entry.Value(), &res) == nil && res.Status.Final() && res.StartedAt == nil {
			if err := results.Delete(ctx, d.ExecutionID, jetstream.LastRevision(entry.Revision())); err != nil {
				return d, fmt.Errorf("remove the given-up result: %w", err)
			}
		}
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return d, fmt.Errorf("results: %w", err)
	}
	out := nats.NewMsg(d.Subject)
	out.Data = m.Data
	for k, v := range m.Header {
		switch k {
		case schemas.HeaderDLQReason, schemas.HeaderDLQSubject, schemas.HeaderNewExecution,
			schemas.HeaderReply, schemas.HeaderDeadline, schemas.HeaderMsgID:
			continue // nobody waits for a reply; the executor must look for a result
		}
		out.Header[k] = slices.Clone(v)
	}
	out.Header.Set(HeaderReplayedFrom, strconv.FormatUint(seq, 10))
	if _, err := js.PublishMsg(ctx, out, jetstream.WithMsgID(d.ExecutionID+":replay:"+strconv.FormatUint(seq, 10))); err != nil {
		return d, fmt.Errorf("publish: %w", err)
	}
	if err := stream.DeleteMsg(ctx, seq); err != nil {
		return d, fmt.Errorf("replayed, but not removed from the dead letters (a second replay is answered from its result): %w", err)
	}
	return d, nil
}
