// Package executor is the executor node: it pulls execution requests from JetStream, runs them
// in supervised worker processes (package executor/worker, wazero inside), writes each result to
// the results KV, publishes its event, replies to the requester and acks — in that order, every
// step idempotent, so a redelivery repairs whatever a crash interrupted without running the
// guest twice. It also compiles uploaded modules on request, under the same supervision.
//
// # Why processes
//
// wazero can stop a guest at its deadline only by checking at every loop back-edge
// (WithCloseOnContextDone), which makes tight loops 4-10x slower and still misses a loop-free
// exponential call tree; compilation cannot be cancelled, and a goroutine cannot be killed.
// A guest therefore runs in a child process (`wasmwiz-worker`, or `wasmwiz worker`), one job at
// a time per worker, talking gob over its stdin and stdout, at full speed with no deadline
// checks. The worker reports when compilation is over; the node gives it CompileTimeout to get
// there and then the job's timeout. At the deadline the node kills the worker's process group
// with SIGKILL and reports the execution timed_out, billed up to the kill ("execution exceeded
// its time limit"); past the compile timeout it reports it killed. So it does when the guest
// holds more memory than its limit (linear memory plus the Go heap the worker grew for it, as
// the worker reports, and the worker's resident memory as a backstop): killed, "memory limit
// exceeded". A spare worker, started and warmed ahead with the modules run last, takes the lost
// worker's place at once, and another is started in the background (Config.SpareWorkers). A
// worker that dies on its own (crash, its RLIMIT_DATA backstop) costs only its current job
// ("worker crashed", or "memory limit exceeded" when it ran out of memory). The node never runs
// guest code. A job goes to an idle worker that ran the same module recently, if any: each
// worker keeps its own cache of compiled modules (and all share wazero's compilation cache on
// disk).
//
// # Scheduling
//
// Each tier has a durable pull consumer. A node fetches at most Workers requests per tier ahead
// of running them (the rest stay in the stream for other nodes) and reports progress on those
// that wait. When a worker slot frees, the highest-priority tier with waiting work is served,
// except that a tier passed over starveAfter (3) times in a row while it had work waiting goes
// next: pro is served first, yet free always moves. Because a lower tier's guests may run for
// its whole wall time, it never takes a node's last free slot while a higher tier is active
// (work waiting or running, or a request within the last activeWindow): a tenant firing
// long-running guests from a lower tier cannot hold every worker of a node.
//
// # Draining
//
// When Run's context ends the node stops fetching, Naks what it fetched but did not start,
// lets started executions and compiles finish (bounded by their own deadlines), stops the
// workers and returns.
package executor
