package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"time"
	"unicode"

	"github.com/danielgtaylor/huma/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

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
// endpoint) for p's tenant.
func (g *Server) uploadModule(ctx context.Context, p *Principal, name string, wasm []byte) (*schemas.Module, error) {
	if int64(len(wasm)) > p.Tier.ModuleSize {
		return nil, schemas.Errorf(schemas.CodeTooLarge, "module is %d bytes; the %s tier allows %d", len(wasm), p.Tier.Name, p.Tier.ModuleSize)
	}
	return g.storeModule(ctx, p, name, bytesSource(wasm))
}

// storeModule checks, stores and compiles src for p's tenant and returns the module. A module
// the tenant already has is returned at once; anything else passes the upload limits (see
// uploads.go) before it is compiled.
func (g *Server) storeModule(ctx context.Context, p *Principal, name string, src *moduleSource) (*schemas.Module, error) {
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
	if e, err := g.moduleRefs.Get(ctx, refKey); err == nil {
		var m schemas.Module
		if json.Unmarshal(e.Value(), &m) == nil {
			return &m, nil
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
	if err := g.checkQuota(ctx, p, src.size); err != nil {
		return nil, err
	}
	release, err := g.acquireCompile(ctx, p)
	if err != nil {
		return nil, err
	}
	defer release()
	objName := schemas.ModuleObjectName(digest)
	if _, err := g.modules.GetInfo(ctx, objName); err != nil {
		if !errors.Is(err, jetstream.ErrObjectNotFound) {
			return nil, unavailable("module store", err)
		}
		if _, err := g.modules.Put(ctx, jetstream.ObjectMeta{Name: objName}, io.NewSectionReader(src.r, 0, src.size)); err != nil {
			if strings.Contains(err.Error(), "maximum bytes") { // the store's share of the account is full (streams.StoreBudget)
				g.log.ErrorContext(ctx, "module store is full", "err", err)
				return nil, schemas.Errorf(schemas.CodeUnavailable, "the module store is full; uploads are refused until an operator makes room")
			}
			return nil, unavailable("module store", err)
		}
	}
	compileMS, err := g.compile(ctx, digest, p.Tier.Name)
	if err != nil {
		var se *schemas.Error
		if errors.As(err, &se) && se.Code == schemas.CodeInvalidModule {
			g.deleteObjectIfUnreferenced(ctx, digest)
			// The executor's time is billed even though the module was refused: a compile bomb
			// costs its uploader.
			g.publishEvent(ctx, schemas.EventModuleRejected, p.TenantID, "module.rejected:"+refKey+":"+time.Now().UTC().Format(time.RFC3339Nano), func(e *schemas.Event) {
				e.Module = &schemas.ModuleEvent{ModuleID: schemas.ModuleID(digest), Name: name, Size: src.size, KeyID: p.KeyID, CompileMS: compileMS, Error: se.Message}
			})
		}
		return nil, err
	}
	m := &schemas.Module{
		ID: schemas.ModuleID(digest), Name: name, Size: src.size,
		Imports: nonNil(info.Imports), Exports: nonNil(info.Exports),
		CreatedAt: time.Now().UTC(), TenantID: p.TenantID,
	}
	b, _ := json.Marshal(m)
	if _, err := g.moduleRefs.Create(ctx, refKey, b); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) { // uploaded twice at once: the first one stands
			if e, err := g.moduleRefs.Get(ctx, refKey); err == nil && json.Unmarshal(e.Value(), m) == nil {
				return m, nil
			}
		}
		return nil, unavailable("module store", err)
	}
	g.publishEvent(ctx, schemas.EventModuleUploaded, p.TenantID, "module.uploaded:"+refKey+":"+m.CreatedAt.Format(time.RFC3339Nano), func(e *schemas.Event) {
		e.Module = &schemas.ModuleEvent{ModuleID: m.ID, Name: m.Name, Size: m.Size, KeyID: p.KeyID, CompileMS: compileMS}
	})
	return m, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// compile asks an executor to compile the stored module under supervision. It returns the
// worker time the compile took (also when the module was refused for it).
func (g *Server) compile(ctx context.Context, digest, tier string) (float64, error) {
	req, _ := json.Marshal(schemas.CompileRequest{ModuleID: schemas.ModuleID(digest), Tier: tier})
	cctx, cancel := context.WithTimeout(ctx, g.cfg.CompileTimeout)
	defer cancel()
	msg, err := g.nc.RequestWithContext(cctx, schemas.SubjectCompile, req)
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
	e, err := g.moduleRefs.Get(ctx, key)
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
	g.refCache.put(key, &m)
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

func (g *Server) restUploadModule(ctx context.Context, p *Principal, in *moduleUploadInput) (*moduleOutput, error) {
	m, err := g.uploadREST(ctx, p, in.Name, in.body)
	return &moduleOutput{Body: m}, err
}

// microUploadModule is modules.upload: the body is the module, its name a header.
func (g *Server) microUploadModule(ctx context.Context, p *Principal, req micro.Request) (any, error) {
	return g.uploadModule(ctx, p, req.Headers().Get(schemas.HeaderModuleName), req.Data())
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
