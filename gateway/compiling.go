package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// A module's compile runs in the background, started by the gateway that stored it, so that a
// compile longer than an HTTP request should wait (a 30 MB toolchain compiles for tens of
// seconds) does not have to fit in one: the upload waits a while (Config.UploadWait; with
// ?wait=true the whole compile budget), and a module still compiling then is answered 202 with
// status "compiling". Its record (KV wasmwiz_module_refs) carries the status and, while
// compiling, the deadline by which its compile must have answered; the goroutine that runs the
// compile writes the outcome (ready, or failed and why) compare-and-set on the revision it
// wrote, and publishes module.uploaded or module.rejected with the compile's time.
//
// Survival: the compile itself is an executor's, under supervision and its tier's budget; the
// executor may die (the request then times out and is sent again) and so may the gateway. A
// record still "compiling" after its deadline is abandoned: the next upload of the same bytes,
// or the next read of the record on any gateway, starts the compile again (compare-and-set on
// the record, so only one gateway does).

// compileSlack is what a compile request may take beyond the compile's budget: the executor's
// wait for a compile worker (15 s), fetching the module, the answer.
const compileSlack = 30 * time.Second

// compileRequestTimeout is how long a compile of size bytes on tier t may take to answer.
func compileRequestTimeout(t schemas.Tier, size int64) time.Duration {
	return t.CompileWall(size) + compileSlack
}

// compileDeadline is when a compile of size bytes on tier t started now must have ended, all
// its attempts and the pauses between them included.
func compileDeadline(t schemas.Tier, size int64) time.Time {
	return time.Now().UTC().Add(compileRequestTimeout(t, size)*compileAttempts + compilePauses)
}

// compilePauses is the sum of the pauses between a compile's attempts (2 s, then 4 s).
const compilePauses = 6 * time.Second

// uploadWait is how long an upload waits for its compile before answering "compiling".
func (g *Server) uploadWait(t schemas.Tier, size int64, wait bool) time.Duration {
	if wait {
		return compileRequestTimeout(t, size)*compileAttempts + compilePauses
	}
	return g.cfg.UploadWait
}

// abandoned reports whether a compiling module's compile should have answered long ago: the
// gateway running it is gone.
func abandoned(m *schemas.Module) bool {
	return m.Status == schemas.ModuleCompiling && m.CompileDeadline != nil &&
		time.Now().After(m.CompileDeadline.Add(compileSlack))
}

// compileAttempts is how many times a compile is sent when no executor answers (none is up, all
// are busy compiling, the one compiling died).
const compileAttempts = 3

// compileJob is one compile running in the background.
type compileJob struct {
	done chan struct{}

	mu       sync.Mutex
	finished bool
	detached bool            // the upload stopped waiting
	m        *schemas.Module // the record as the compile left it
	err      error           // the refusal (invalid_module) or failure, when it did not compile
}

// wait waits for the compile up to d or the end of ctx. It reports whether the compile
// finished; if not, nobody waits for it any more.
func (j *compileJob) wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-j.done:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	j.detached = !j.finished
	return j.finished
}

// startCompile compiles the stored module m, whose record is at revision rev, for tier t in the
// background, and records the outcome. release (may be nil) gives back the tenant's compile
// slot when it ends.
func (g *Server) startCompile(t schemas.Tier, keyID string, m schemas.Module, rev uint64, release func()) *compileJob {
	j := &compileJob{done: make(chan struct{})}
	g.compiles.Add(1)
	go func() {
		defer g.compiles.Done()
		defer close(j.done)
		if release != nil {
			defer release()
		}
		ctx := context.Background()
		digest, _ := schemas.ParseModuleID(m.ID)
		refKey := schemas.ModuleRefKey(m.TenantID, digest)
		var (
			compileMS float64
			err       error
		)
		for attempt := range compileAttempts {
			compileMS, err = g.compile(ctx, digest, t.Name, compileRequestTimeout(t, m.Size))
			if se := (*schemas.Error)(nil); err == nil || errors.As(err, &se) && se.Code != schemas.CodeUnavailable {
				break
			}
			g.log.Warn("compile not answered; sending it again", "module_id", m.ID, "tenant_id", m.TenantID, "attempt", attempt+1, "err", err)
			if attempt+1 < compileAttempts {
				time.Sleep(time.Duration(attempt+1) * 2 * time.Second) // compilePauses in all
			}
		}
		m.CompileMS, m.CompileDeadline = compileMS, nil
		var se *schemas.Error
		switch {
		case err == nil:
			m.Status = schemas.ModuleReady
		case errors.As(err, &se) && se.Code == schemas.CodeInvalidModule:
			m.Status, m.Error = schemas.ModuleFailed, se.Message
			// The executor's time is billed even though the module was refused: a compile bomb
			// costs its uploader.
			g.publishEvent(ctx, schemas.EventModuleRejected, m.TenantID, "module.rejected:"+refKey+":"+time.Now().UTC().Format(time.RFC3339Nano), func(e *schemas.Event) {
				e.Module = &schemas.ModuleEvent{ModuleID: m.ID, Name: m.Name, Size: m.Size, KeyID: keyID, CompileMS: compileMS, Error: se.Message}
			})
		default:
			m.Status, m.Error = schemas.ModuleFailed, "the module could not be compiled: no executor answered; upload it again"
			if errors.As(err, &se) {
				m.Error = se.Message
			}
		}
		b, _ := json.Marshal(&m)
		if _, uerr := g.moduleRefs.Update(ctx, refKey, b, rev); uerr != nil {
			// Deleted meanwhile (or taken over after this gateway seemed gone): the record
			// that is there stands.
			g.log.Info("compile outcome not recorded", "module_id", m.ID, "tenant_id", m.TenantID, "err", uerr)
			if _, gerr := g.moduleRefs.Get(ctx, refKey); errors.Is(gerr, jetstream.ErrKeyNotFound) {
				g.deleteObjectIfUnreferenced(ctx, digest)
			}
		} else if m.Status == schemas.ModuleReady {
			g.publishEvent(ctx, schemas.EventModuleUploaded, m.TenantID, "module.uploaded:"+refKey+":"+m.CreatedAt.Format(time.RFC3339Nano), func(e *schemas.Event) {
				e.Module = &schemas.ModuleEvent{ModuleID: m.ID, Name: m.Name, Size: m.Size, KeyID: keyID, CompileMS: compileMS}
			})
		}
		j.mu.Lock()
		j.finished, j.m, j.err = true, &m, err
		j.mu.Unlock()
	}()
	return j
}

// awaitModule waits up to d for a module compiling elsewhere (another upload, another gateway)
// by reading its record, and returns the record as it last saw it: a refused module is the
// refusal.
func (g *Server) awaitModule(ctx context.Context, p *Principal, m *schemas.Module, d time.Duration) (*schemas.Module, error) {
	digest, _ := schemas.ParseModuleID(m.ID)
	refKey := schemas.ModuleRefKey(p.TenantID, digest)
	end := time.Now().Add(d)
	for m.Status == schemas.ModuleCompiling && time.Now().Before(end) {
		select {
		case <-ctx.Done():
			return m, nil
		case <-time.After(200 * time.Millisecond):
		}
		e, err := g.moduleRefs.Get(ctx, refKey)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, schemas.Errorf(schemas.CodeNotFound, "module %s not found", m.ID)
		} else if err != nil {
			return nil, unavailable("module store", err)
		}
		var next schemas.Module
		if err := json.Unmarshal(e.Value(), &next); err != nil {
			return nil, unavailable("module store", err)
		}
		m = &next
	}
	if m.Status == schemas.ModuleFailed {
		return nil, schemas.Errorf(schemas.CodeInvalidModule, "%s", m.Error)
	}
	return m, nil
}

// revive starts the compile of an abandoned module again, if this gateway is the first to see
// it abandoned (compare-and-set on rev). It returns the record as it now is.
func (g *Server) revive(ctx context.Context, p *Principal, m *schemas.Module, rev uint64) *schemas.Module {
	digest, _ := schemas.ParseModuleID(m.ID)
	deadline := compileDeadline(p.Tier, m.Size)
	next := *m
	next.CompileDeadline = &deadline
	b, _ := json.Marshal(&next)
	newRev, err := g.moduleRefs.Update(ctx, schemas.ModuleRefKey(p.TenantID, digest), b, rev)
	if err != nil {
		return m // another gateway took it over, or it changed
	}
	g.log.Warn("compile abandoned by its gateway; compiling again", "module_id", m.ID, "tenant_id", p.TenantID)
	g.startCompile(p.Tier, p.KeyID, next, newRev, nil)
	return &next
}
