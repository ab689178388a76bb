// Package executor is the executor node: it pulls execution requests from JetStream, runs them
// in supervised worker processes (package executor/worker, wazero inside), writes each result to
// the results KV, publishes its event, replies to the requester and acks — in that order, every
// step idempotent, so a redelivery repairs whatever a crash interrupted without running the
// guest twice. It also compiles uploaded modules on request, under the same supervision.
//
// # Why processes
//
// wazero stops a guest at its deadline only at loop back-edges; a loop-free exponential call
// tree never reaches one, compilation cannot be cancelled, and a goroutine cannot be killed.
// A guest therefore runs in a child process (`wasmwiz worker`), one job at a time per worker,
// talking gob over its stdin and stdout. The worker reports when compilation is over; the node
// gives it CompileTimeout to get there and then the job's timeout plus KillGrace to finish.
// Past either, the node kills the worker's process group with SIGKILL, reports the execution
// as killed ("execution ignored its deadline and was killed with its worker"), and starts a
// replacement in the background. A worker that dies on its own (crash, its RLIMIT_DATA backstop)
// costs only its current job ("worker crashed"). The node never runs guest code. A job goes
// to an idle worker that ran the same module recently, if any: each worker keeps its own cache
// of compiled modules (and all share wazero's compilation cache on disk).
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
