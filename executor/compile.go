package executor

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wasmwiz/wasmwiz/executor/worker"
	"github.com/wasmwiz/wasmwiz/schemas"
	"github.com/wasmwiz/wasmwiz/wasmmodule"
)

// compileWaitForWorker bounds how long a compile request waits for a free worker.
const compileWaitForWorker = 15 * time.Second

// shareTimeout bounds storing a compiled artifact for the other nodes.
const shareTimeout = 10 * time.Second

// serveCompile answers a CompileRequest: fetch the module (warming the node's file cache),
// compile it in a worker under the compile timeout (warming wazero's file cache and the
// worker's compiled modules), reply with a CompileReply.
func (n *Node) serveCompile(ctx context.Context, m *nats.Msg) {
	n.drainMu.Lock()
	if n.draining {
		n.drainMu.Unlock()
		n.respondCompile(m, &schemas.CompileReply{Error: schemas.Errorf(schemas.CodeUnavailable, "executor is shutting down, retry")})
		return
	}
	select {
	case n.compile <- struct{}{}:
	default:
		n.drainMu.Unlock()
		n.respondCompile(m, &schemas.CompileReply{Error: schemas.Errorf(schemas.CodeUnavailable, "executor is busy compiling, retry later")})
		return
	}
	n.work.Add(1) // under drainMu, so never concurrent with the drain's Wait
	n.drainMu.Unlock()
	go func() {
		defer n.work.Done()
		defer func() { <-n.compile }()
		n.respondCompile(m, n.compileModule(ctx, m))
	}()
}

func (n *Node) compileModule(ctx context.Context, m *nats.Msg) *schemas.CompileReply {
	var req schemas.CompileRequest
	if err := json.Unmarshal(m.Data, &req); err != nil {
		return &schemas.CompileReply{Error: schemas.Errorf(schemas.CodeBadRequest, "compile request is not valid JSON")}
	}
	hexDigest, err := schemas.ParseModuleID(req.ModuleID)
	if err != nil {
		return &schemas.CompileReply{Error: schemas.Errorf(schemas.CodeInvalid, "%s", err.Error())}
	}
	tier, ok := n.cfg.Tiers[req.Tier]
	if !ok {
		return &schemas.CompileReply{Error: schemas.Errorf(schemas.CodeInvalid, "unknown tier %q", req.Tier)}
	}
	log := n.log.With("module_id", req.ModuleID, "tier", tier.Name)
	// Fetched afresh, whether or not the node has the module (moduleCache.getFresh).
	mctx, cancel := context.WithTimeout(ctx, natsTimeout)
	path, size, release, err := n.mods.getFresh(mctx, hexDigest, tier.ModuleSize)
	cancel()
	var merr *moduleError
	switch {
	case errors.Is(err, errModuleNotFound):
		return &schemas.CompileReply{Error: schemas.Errorf(schemas.CodeNotFound, "module not found")}
	case errors.As(err, &merr):
		return &schemas.CompileReply{Error: schemas.Errorf(schemas.CodeInvalidModule, "%s", merr.msg)}
	case err != nil:
		log.Error("compile: module fetch", "err", err)
		return &schemas.CompileReply{Error: schemas.Errorf(schemas.CodeUnavailable, "module could not be loaded")}
	}
	defer release()
	// Wait for a worker no longer than a gateway waits for the answer (it gives up after 30 s
	// by default); the compile itself then has its own timeout.
	actx, cancel := context.WithTimeout(ctx, compileWaitForWorker)
	defer cancel()
	// At most CompileWorkers compiles at once: the pool has that many workers beyond the
	// execution slots, so compiles never hold a worker an execution was counting on.
	select {
	case n.compiling <- struct{}{}:
		defer func() { <-n.compiling }()
	case <-actx.Done():
		return &schemas.CompileReply{Error: schemas.Errorf(schemas.CodeUnavailable, "executor is busy compiling other uploads; retry shortly")}
	}
	budget := n.cfg.compileBudget(tier, size)
	// Every compile request is an upload by a tenant that does not own the module yet, and
	// does the same work whatever other tenants uploaded before (issue 12, upload timing): the
	// module is fetched from the store afresh (getFresh), compiled afresh (CompileJob.Share: a
	// runtime and cache directory of its own, no worker's compiled modules, no file cache), and
	// its artifact stored, for the other nodes the first time, aside every other time
	// (artifacts.put). So an upload of bytes another tenant already uploaded costs what one of
	// new bytes does, and its time tells nothing about other tenants.
	res, err := n.pool.compile(actx, &worker.CompileJob{ModulePath: path, ModuleHash: hexDigest, MemoryPages: uint32(tier.MemoryMB * 16), Share: true}, budget)
	var killed *killedError
	switch {
	case errors.As(err, &killed) && killed.starved:
		// The node's load, not the module's cost: the gateway sends it again.
		log.Warn("compile starved", "err", err)
		return &schemas.CompileReply{
			Error:     schemas.Errorf(schemas.CodeUnavailable, "executor too busy: the compile had less than its budget of %v of CPU time in %v and was stopped; it may compile when uploaded again", budget, killed.after.Round(time.Millisecond)),
			CompileMS: ms(killed.after),
		}
	case errors.As(err, &killed):
		log.Warn("compile killed", "err", err)
		return &schemas.CompileReply{
			Error:     schemas.Errorf(schemas.CodeInvalidModule, "module too expensive to compile: compilation used its budget of %v of CPU time (the %s tier's for a module of this size) and was stopped", budget, tier.Name),
			CompileMS: ms(killed.after),
		}
	case errors.Is(err, errWorkerCrashed):
		log.Warn("worker crashed while compiling")
		return &schemas.CompileReply{Error: schemas.Errorf(schemas.CodeInvalidModule, "module too expensive to compile: its compiler crashed")}
	case err != nil:
		log.Error("compile: worker pool", "err", err)
		return &schemas.CompileReply{Error: schemas.Errorf(schemas.CodeUnavailable, "no worker available")}
	}
	if res.CacheHit {
		n.m.cacheHits.WithLabelValues("compiled").Inc()
	} else {
		n.m.cacheMisses.WithLabelValues("compiled").Inc()
		n.m.compileDuration.Observe(res.Duration.Seconds())
	}
	reply := &schemas.CompileReply{CompileMS: ms(res.Duration)}
	if res.Error != "" {
		reply.Error = schemas.Errorf(schemas.CodeInvalidModule, "%s", wasmmodule.ExplainCompileError(res.Error))
	} else if res.CacheFile != "" {
		// Before the reply, so that the executions an upload's client starts next find it on
		// every node; bounded, since sharing is an optimisation and the upload waits.
		sctx, cancel := context.WithTimeout(ctx, shareTimeout)
		n.artifacts.put(sctx, hexDigest, res.CacheFile)
		cancel()
	}
	return reply
}

func (n *Node) respondCompile(m *nats.Msg, r *schemas.CompileReply) {
	r.NodeID = n.cfg.NodeID
	b, err := json.Marshal(r)
	if err != nil {
		return
	}
	if err := m.Respond(b); err != nil && !errors.Is(err, nats.ErrMsgNoReply) {
		n.log.Warn("compile reply", "err", err)
	}
}
