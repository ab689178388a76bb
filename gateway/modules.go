package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode"

	"github.com/danielgtaylor/huma/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/wasmwiz/wasmwiz/internal/streams"
	"github.com/wasmwiz/wasmwiz/schemas"
	"github.com/wasmwiz/wasmwiz/wasmmodule"
)

func validModuleName(name string) error {
	if len(name) > 128 {
		return schemas.Errorf(schemas.CodeInvalid, "module name is longer than 128 bytes")
	}
	for _, r := range name {
		if !unicode.IsPrint(r) || r == '/' || r == '\\' {
			return schemas.Errorf(schemas.CodeInvalid, "module name may hold only printable characters and no slashes")
		}
	}
	return nil
}

// uploadModule checks, stores and compiles a module held in memory (a NATS upload, the compat
// endpoint, an inline module) for p's tenant; wait as in storeModule.
func (g *Server) uploadModule(ctx context.Context, p *Principal, name string, wasm []byte, wait bool) (*schemas.Module, error) {
	if int64(len(wasm)) > p.Tier.ModuleSize {
		return nil, schemas.Errorf(schemas.CodeTooLarge, "module is %d bytes; the %s tier allows %d", len(wasm), p.Tier.Name, p.Tier.ModuleSize)
	}
	return g.storeModule(ctx, p, name, bytesSource(wasm), wait)
}

// storeModule checks, stores and compiles src for p's tenant and returns the module. A module
// the tenant already has is returned at once; anything else passes the upload limits (see
// uploads.go), is stored and is compiled, the same whether or not other tenants have it.
//
// The compile runs in the background (compiling.go). The upload waits for it up to
// Config.UploadWait, or, with wait, up to the compile's whole budget: a module compiled by
// then is returned ready (or refused, as before: nothing of it is kept); one still compiling is
// returned with status "compiling" (a 202) and its record says later how the compile ended.
func (g *Server) storeModule(ctx context.Context, p *Principal, name string, src *moduleSource, wait bool) (*schemas.Module, error) {
	if name == "" {
		name = "module"
	}
	if err := validModuleName(name); err != nil {
		return nil, err
	}
	if src.size > p.Tier.ModuleSize {
		return nil, schemas.Errorf(schemas.CodeTooLarge, "module is %d bytes; the %s tier allows %d", src.size, p.Tier.Name, p.Tier.ModuleSize)
	}
	digest := src.digest
	refKey := schemas.ModuleRefKey(p.TenantID, digest)
	var prevRev uint64 // a failed or abandoned record this upload replaces
	if e, err := g.moduleRefs.Get(ctx, refKey); err == nil {
		var m schemas.Module
		if json.Unmarshal(e.Value(), &m) == nil {
			switch {
			case m.Ready():
				return &m, nil
			case m.Status == schemas.ModuleCompiling && !abandoned(&m):
				return g.awaitModule(ctx, p, &m, g.uploadWait(p.Tier, m.Size, wait))
			}
			prevRev = e.Revision()
		}
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, unavailable("module store", err)
	}
	if err := g.admitUpload(ctx, p); err != nil {
		return nil, err
	}
	info, err := wasmmodule.InspectReader(src.r, src.size)
	if err != nil {
		return nil, err
	}
	if err := wasmmodule.Check(info, wasmmodule.PolicyFor(p.Tier)); err != nil {
		return nil, err
	}
	if err := g.quotaFits(ctx, p, storedModules, src.size); err != nil { // storage.go
		return nil, err
	}
	release, err := g.acquireCompile(ctx, p)
	if err != nil {
		return nil, err
	}
	started := false
	defer func() {
		if !started {
			release()
		}
	}()
	// The tenant does not own the module. Whether or not another tenant does, its bytes are
	// stored: as the module's object, or, when the store has that already, aside (stored and
	// removed again), so that this upload costs what one of new bytes does and its time does
	// not tell what other tenants uploaded (issue 12, upload timing; the executor's compile
	// does likewise).
	body := io.NewSectionReader(src.r, 0, src.size)
	if err := streams.PutOrAside(ctx, g.js, schemas.ObjectModules, g.modules, schemas.ModuleObjectName(digest), body); err != nil {
		if strings.Contains(err.Error(), "maximum bytes") { // the store's share of the account is full (streams.StoreBudget)
			g.log.ErrorContext(ctx, "module store is full", "err", err)
			return nil, schemas.Errorf(schemas.CodeUnavailable, "the module store is full; uploads are refused until an operator makes room")
		}
		return nil, unavailable("module store", err)
	}
	deadline := compileDeadline(p.Tier, src.size)
	m := &schemas.Module{
		ID: schemas.ModuleID(digest), Name: name, Size: src.size,
		Imports: nonNil(info.Imports), Exports: nonNil(info.Exports),
		CreatedAt: time.Now().UTC(), TenantID: p.TenantID,
		Status: schemas.ModuleCompiling, CompileDeadline: &deadline,
	}
	b, _ := json.Marshal(m)
	var rev uint64
	if prevRev != 0 {
		rev, err = g.moduleRefs.Update(ctx, refKey, b, prevRev)
	} else {
		rev, err = g.moduleRefs.Create(ctx, refKey, b)
	}
	if err != nil {
		// Uploaded twice at once: the first one stands.
		if e, gerr := g.moduleRefs.Get(ctx, refKey); gerr == nil && json.Unmarshal(e.Value(), m) == nil {
			return g.awaitModule(ctx, p, m, g.uploadWait(p.Tier, m.Size, wait))
		}
		return nil, unavailable("module store", err)
	}
	// The record counts now: uploads racing this one see it; if the total is over, it goes.
	if err := g.withinQuota(ctx, p, storedModules, refKey, src.size); err != nil { // storage.go
		g.refCache.drop(refKey)
		g.deleteObjectIfUnreferenced(context.WithoutCancel(ctx), digest)
		return nil, err
	}
	started = true
	j := g.startCompile(p.Tier, p.KeyID, *m, rev, release)
	if !j.wait(ctx, g.uploadWait(p.Tier, src.size, wait)) {
		return m, nil // still compiling: its record will say how it ended
	}
	if j.err != nil {
		// The caller learns of the refusal (or the failure) now, as before compiles went on in
		// the background: nothing of the module is kept.
		if err := g.moduleRefs.Purge(context.WithoutCancel(ctx), refKey); err != nil {
			g.log.WarnContext(ctx, "remove refused module's record", "module_id", m.ID, "err", err)
		}
		g.refCache.drop(refKey)
		g.deleteObjectIfUnreferenced(context.WithoutCancel(ctx), digest)
		return nil, j.err
	}
	return j.m, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// compile asks an executor to compile the stored module under supervision, waiting for its
// answer at most timeout. It returns the worker time the compile took (also when the module
// was refused for it).
func (g *Server) compile(ctx context.Context, digest, tier string, timeout time.Duration) (float64, error) {
	req, _ := json.Marshal(schemas.CompileRequest{ModuleID: schemas.ModuleID(digest), Tier: tier})
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	msg, err := g.waiters.request(cctx, schemas.SubjectCompile, req)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return 0, schemas.Errorf(schemas.CodeUnavailable, "no executor is available to compile the module; try again shortly")
		}
		return 0, unavailable("executor (compile)", err)
	}
	var rep schemas.CompileReply
	if err := json.Unmarshal(msg.Data, &rep); err != nil {
		return 0, unavailable("executor (compile)", err)
	}
	if rep.Error != nil {
		return rep.CompileMS, rep.Error
	}
	g.metrics.compileSeconds.Observe(rep.CompileMS / 1000)
	return rep.CompileMS, nil
}

func (g *Server) deleteObjectIfUnreferenced(ctx context.Context, digest string) {
	lister, err := g.moduleRefs.ListKeysFiltered(ctx, "*."+digest)
	if err != nil {
		return
	}
	for range lister.Keys() {
		_ = lister.Stop()
		return // someone still owns it
	}
	if err := g.modules.Delete(ctx, schemas.ModuleObjectName(digest)); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		g.log.Warn("delete module object", "module_id", schemas.ModuleID(digest), "err", err)
	}
}

func (g *Server) getModule(ctx context.Context, p *Principal, id string) (*schemas.Module, error) {
	digest, err := schemas.ParseModuleID(id)
	if err != nil {
		return nil, schemas.Errorf(schemas.CodeNotFound, "module %s not found", truncateID(id))
	}
	key := schemas.ModuleRefKey(p.TenantID, digest)
	if m, ok := g.refCache.get(key); ok {
		return m, nil
	}
	var e jetstream.KeyValueEntry
	err = g.rideOut(ctx, "module store", time.Now().Add(storeRetryFor), func(ctx context.Context) (err error) {
		e, err = g.moduleRefs.Get(ctx, key)
		return err
	})
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, schemas.Errorf(schemas.CodeNotFound, "module %s not found", id)
		}
		return nil, unavailable("module store", err)
	}
	var m schemas.Module
	if err := json.Unmarshal(e.Value(), &m); err != nil {
		return nil, unavailable("module store", err)
	}
	if abandoned(&m) {
		return g.revive(ctx, p, &m, e.Revision()), nil // compiling.go
	}
	if m.Ready() { // a compiling module is read again until it is not
		g.refCache.put(key, &m)
	}
	return &m, nil
}

func (g *Server) listModules(ctx context.Context, p *Principal) (*schemas.ModuleList, error) {
	lister, err := g.moduleRefs.ListKeysFiltered(ctx, p.TenantID+".*")
	if err != nil {
		return nil, unavailable("module store", err)
	}
	out := &schemas.ModuleList{Modules: []schemas.Module{}}
	seen := map[string]bool{}
	for k := range lister.Keys() {
		if seen[k] {
			continue
		}
		seen[k] = true
		e, err := g.moduleRefs.Get(ctx, k)
		if err != nil {
			continue // deleted meanwhile
		}
		var m schemas.Module
		if json.Unmarshal(e.Value(), &m) == nil {
			out.Modules = append(out.Modules, m)
		}
	}
	return out, nil
}

func (g *Server) deleteModule(ctx context.Context, p *Principal, id string) error {
	m, err := g.getModule(ctx, p, id)
	if err != nil {
		return err
	}
	digest, _ := schemas.ParseModuleID(m.ID)
	g.refCache.drop(schemas.ModuleRefKey(p.TenantID, digest))
	if err := g.moduleRefs.Purge(ctx, schemas.ModuleRefKey(p.TenantID, digest)); err != nil {
		return unavailable("module store", err)
	}
	g.deleteObjectIfUnreferenced(ctx, digest)
	g.publishEvent(ctx, schemas.EventModuleDeleted, p.TenantID, "module.deleted:"+p.TenantID+"."+digest+":"+time.Now().UTC().Format(time.RFC3339Nano), func(e *schemas.Event) {
		e.Module = &schemas.ModuleEvent{ModuleID: m.ID, Name: m.Name, Size: m.Size, KeyID: p.KeyID}
	})
	return nil
}

// moduleUploadInput has no Body or RawBody field, so Huma does not read the body: the handler
// streams it to a spool file (uploads.go). Resolve hands it the body.
type moduleUploadInput struct {
	Name string `query:"name" maxLength:"128" doc:"a name for the module (argv[0] when it runs)"`
	Wait bool   `query:"wait" doc:"wait for the compile, however long its budget (otherwise a compile still running after 30 s is answered 202 with status compiling)"`
	body io.Reader
}

func (in *moduleUploadInput) Resolve(ctx huma.Context) []error {
	in.body = ctx.BodyReader()
	_ = ctx.SetReadDeadline(time.Now().Add(uploadReadTimeout))
	return nil
}

type moduleOutput struct {
	Body *schemas.Module
}

type moduleUploadOutput struct {
	Status   int
	Location string `header:"Location" doc:"with a 202: the module, to poll until its status is ready or failed"`
	Body     *schemas.Module
}

type moduleIDInput struct {
	ID string `path:"id" doc:"module id, sha256:<hex>"`
}

type moduleListOutput struct {
	Body *schemas.ModuleList
}

// maxModuleBytes is the largest module any tier may upload; the tier's own limit is checked after.
func maxModuleBytes(tiers map[string]schemas.Tier) int64 {
	var m int64
	for _, t := range tiers {
		m = max(m, t.ModuleSize)
	}
	return m
}

func (g *Server) restUploadModule(ctx context.Context, p *Principal, in *moduleUploadInput) (*moduleUploadOutput, error) {
	m, err := g.uploadREST(ctx, p, in.Name, in.body, in.Wait)
	if err != nil {
		return nil, err
	}
	out := &moduleUploadOutput{Status: http.StatusCreated, Body: m}
	if m.Status == schemas.ModuleCompiling {
		out.Status, out.Location = http.StatusAccepted, "/v1/modules/"+m.ID
	}
	return out, nil
}

// microUploadModule is modules.upload: the body is the module, its name a header.
func (g *Server) microUploadModule(ctx context.Context, p *Principal, req micro.Request) (any, error) {
	return g.uploadModule(ctx, p, req.Headers().Get(schemas.HeaderModuleName), req.Data(), req.Headers().Get(schemas.HeaderWait) == "true")
}

func (g *Server) restListModules(ctx context.Context, p *Principal, _ *struct{}) (*moduleListOutput, error) {
	l, err := g.listModules(ctx, p)
	return &moduleListOutput{Body: l}, err
}

func (g *Server) restGetModule(ctx context.Context, p *Principal, in *moduleIDInput) (*moduleOutput, error) {
	m, err := g.getModule(ctx, p, in.ID)
	return &moduleOutput{Body: m}, err
}

func (g *Server) restDeleteModule(ctx context.Context, p *Principal, in *moduleIDInput) (*struct{}, error) {
	return nil, g.deleteModule(ctx, p, in.ID)
}
