package gateway

import (
	"context"
	"net/http"

	"github.com/danielgtaylor/huma/v2"
	"github.com/nats-io/nats.go/micro"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// operation is one operation of the API. Every fact about it lives in its row of operations():
// bindREST registers the rows with Huma, startMicro those with a NATS name with the micro
// service, and authorize reads the scope and the admin flag from the row on both transports,
// so neither can differ between REST and NATS.
//
// To add an operation: write the service method beside its resource (func (g *Server)
// getThing(ctx, p, ...) (*schemas.Thing, error)) with its Huma input/output types, then add a
// row below: rest: handle(g, ...) and, for the direct NATS API, a NATS name (a schemas.Op*
// constant) and micro: natsJSON(...).
type operation struct {
	ID     string // OpenAPI operationId; the op of logs and REST metrics
	Method string
	Path   string
	NATS   string // direct NATS operation, subject wasmwiz.api.v1.<NATS>; "" for REST only
	Scope  string // the scope a key needs ("" none; admin keys hold every scope)
	Admin  bool   // admin keys only, refused before the body is read
	Public bool   // no API key (health, JWKS)
	Stream bool   // long-lived (SSE): not counted in the tenant's concurrent requests
	// BodyLimit is the most bytes a caller of tier t may send (0 or nil: Huma's MaxBodyBytes).
	BodyLimit func(t schemas.Tier) int64
	// BodyLimitSetting names the tier setting BodyLimit is, when it is one ("module_size"): a
	// body over it is refused naming it and the tiers that allow it.
	BodyLimitSetting string
	// Doc is what the OpenAPI document says beyond the fields above: tags, summary,
	// description, statuses, request body media types.
	Doc huma.Operation

	rest  func(api huma.API, op huma.Operation) // registers the REST handler (handle, mostly)
	micro microHandler                          // the NATS handler; nil without a NATS name
}

// microHandler serves one direct NATS operation for an authorized caller.
type microHandler func(ctx context.Context, p *Principal, req micro.Request) (any, error)

// huma is the row's OpenAPI operation.
func (o *operation) huma() huma.Operation {
	op := o.Doc
	op.OperationID, op.Method, op.Path = o.ID, o.Method, o.Path
	if !o.Public {
		op.Security = bearer
	}
	return op
}

// operations is the API, one row per operation, in the order of the OpenAPI document.
func (g *Server) operations() []operation {
	maxModule := maxModuleBytes(g.cfg.Tiers)
	binary := &huma.Schema{Type: "string", Format: "binary"}
	return []operation{
		// Executions (executions.go, files.go).
		{ID: "create-execution", Method: http.MethodPost, Path: "/v1/executions", NATS: schemas.OpExecutionsCreate, Scope: schemas.ScopeExecute,
			BodyLimit: executionBodyLimit,
			Doc: huma.Operation{Tags: []string{"executions"}, Summary: "Run a module",
				Description: "Runs a module with stdin, args and env. Answers 200 with the result, or 202 when async is set or the wait ran out (the execution goes on; poll GET /v1/executions/{id}). " +
					"An inline module (module_base64) is stored as one of your modules and needs the modules:write scope. " +
					"A request refused with 429 claims nothing: sent again with the same Idempotency-Key it is checked again; only an admitted execution is replayed.",
				MaxBodyBytes: maxExecutionBody(g.cfg.Tiers),
				Responses:    map[string]*huma.Response{"202": {Description: "Accepted: queued or still running"}},
				Errors:       []int{401, 403, 404, 409, 413, 422, 429, 503}},
			rest: handle(g, g.restCreateExecution), micro: g.microCreateExecution},
		{ID: "get-execution", Method: http.MethodGet, Path: "/v1/executions/{id}", NATS: schemas.OpExecutionsGet, Scope: schemas.ScopeExecute,
			Doc:  huma.Operation{Tags: []string{"executions"}, Summary: "Get an execution", Errors: []int{401, 404, 503}},
			rest: handle(g, g.restGetExecution), micro: natsID(g.getExecution)},
		{ID: "list-executions", Method: http.MethodGet, Path: "/v1/executions", NATS: schemas.OpExecutionsList, Scope: schemas.ScopeExecute,
			Doc: huma.Operation{Tags: []string{"executions"}, Summary: "List your executions",
				Description: "Your executions, newest first, while their results are kept (24 hours by default): status, module, exit code, duration and memory, without output (GET /v1/executions/{id} has it). " +
					"Filter by status, module and creation time; page with limit and next_cursor. Over NATS (executions.list) the body holds the same fields.",
				Errors: []int{401, 403, 422, 503}},
			rest: handle(g, g.restListExecutions), micro: g.microListExecutions}, // history.go
		{ID: "download-output", Method: http.MethodGet, Path: "/v1/executions/{id}/files/{path}", Scope: schemas.ScopeExecute,
			Doc: huma.Operation{Tags: []string{"executions"}, Summary: "Download an output file",
				Description: "The bytes of one of an execution's output files (`outputs`), as its result holds them (the result's `files` has the same, as text or base64), " +
					"until the result expires. `Wasmwiz-File-Truncated: true` says only the first bytes came back (the tier's `outputs_bytes`).",
				Errors: []int{401, 404},
				Responses: map[string]*huma.Response{"200": {Description: "the file", Content: map[string]*huma.MediaType{
					"application/octet-stream": {Schema: &huma.Schema{Type: "string", Format: "binary"}}}}}},
			rest: handle(g, g.restOutputFile)},
		{ID: "get-execution-stdout", Method: http.MethodGet, Path: "/v1/executions/{id}/stdout", NATS: schemas.OpExecutionsOutput, Scope: schemas.ScopeExecute,
			Doc: huma.Operation{Tags: []string{"executions"}, Summary: "Download an execution's whole stdout",
				Description: "All of stdout as the guest wrote it (up to the tier's stdout_max), while the result lasts. A result carries at most 1 MiB of stdout itself; " +
					"when there was more, its `stdout_url` points here. Over NATS, `executions.output` (`{id, stream, offset, length}`) returns it in pieces of up to 4 MiB.",
				Errors: []int{401, 404, 503},
				Responses: map[string]*huma.Response{"200": {Description: "stdout", Content: map[string]*huma.MediaType{
					"application/octet-stream": {Schema: &huma.Schema{Type: "string", Format: "binary"}}}}}},
			rest: handle(g, g.restOutput(schemas.StreamStdout)), micro: natsJSON(g.outputChunk)},
		{ID: "get-execution-stderr", Method: http.MethodGet, Path: "/v1/executions/{id}/stderr", Scope: schemas.ScopeExecute,
			Doc: huma.Operation{Tags: []string{"executions"}, Summary: "Download an execution's whole stderr",
				Description: "As the stdout download, for stderr (`stderr_url`).",
				Errors:      []int{401, 404, 503},
				Responses: map[string]*huma.Response{"200": {Description: "stderr", Content: map[string]*huma.MediaType{
					"application/octet-stream": {Schema: &huma.Schema{Type: "string", Format: "binary"}}}}}},
			rest: handle(g, g.restOutput(schemas.StreamStderr))},

		// Modules (modules.go, uploads.go).
		{ID: "upload-module", Method: http.MethodPost, Path: "/v1/modules", NATS: schemas.OpModulesUpload, Scope: schemas.ScopeModulesWrite,
			BodyLimit: func(t schemas.Tier) int64 { return t.ModuleSize }, BodyLimitSetting: "module_size",
			Doc: huma.Operation{Tags: []string{"modules"}, Summary: "Upload a module",
				Description: "Validates a WASI preview 1 command module, stores it content-addressed and compiles it on an executor (within the tier's compile budget: a base plus some time per MiB). The same bytes return the same id. " +
					"Answers 201 with the module once compiled; a compile still running after 30 s is answered 202 with `status: compiling` and a Location to poll (GET /v1/modules/{id} says `ready`, or `failed` with `error`); `?wait=true` waits for the compile however long its budget. " +
					"A module using a WebAssembly proposal the runtime does not support (exception handling, threads, tail calls, memory64, GC, …) is a 422 naming the proposal.",
				DefaultStatus: http.StatusCreated, MaxBodyBytes: maxModule + 1,
				RequestBody: &huma.RequestBody{Required: true, Content: map[string]*huma.MediaType{"application/wasm": {Schema: &huma.Schema{
					Type: "string", Format: "binary", // marshalled with contentMediaType application/octet-stream
				}}}},
				Responses: map[string]*huma.Response{"202": {Description: "Accepted: stored, still compiling"}},
				Errors:    []int{401, 413, 422, 429, 503}},
			rest: handle(g, g.restUploadModule), micro: g.microUploadModule},
		{ID: "list-modules", Method: http.MethodGet, Path: "/v1/modules", NATS: schemas.OpModulesList, Scope: schemas.ScopeModulesRead,
			Doc:  huma.Operation{Tags: []string{"modules"}, Summary: "List your modules", Errors: []int{401, 503}},
			rest: handle(g, g.restListModules), micro: natsNone(g.listModules)},
		{ID: "get-module", Method: http.MethodGet, Path: "/v1/modules/{id}", NATS: schemas.OpModulesGet, Scope: schemas.ScopeModulesRead,
			Doc:  huma.Operation{Tags: []string{"modules"}, Summary: "Get a module", Errors: []int{401, 404}},
			rest: handle(g, g.restGetModule), micro: natsID(g.getModule)},
		{ID: "delete-module", Method: http.MethodDelete, Path: "/v1/modules/{id}", NATS: schemas.OpModulesDelete, Scope: schemas.ScopeModulesWrite,
			Doc:  huma.Operation{Tags: []string{"modules"}, Summary: "Delete a module", DefaultStatus: http.StatusNoContent, Errors: []int{401, 404}},
			rest: handle(g, g.restDeleteModule), micro: natsID(deleted(g.deleteModule))},

		// Bundles (bundles.go).
		{ID: "upload-bundle", Method: http.MethodPost, Path: "/v1/bundles", NATS: schemas.OpBundlesUpload, Scope: schemas.ScopeModulesWrite,
			Doc: huma.Operation{Tags: []string{"bundles"}, Summary: "Upload a bundle",
				Description: "Stores a tar archive (optionally gzip-compressed) or a zip archive of files that executions mount read-only (`mounts`). " +
					"Paths must be relative without `..`; only regular files, directories and symbolic links that stay inside the archive are accepted; " +
					"the tier bounds the file data (`bundle_bytes`) and the entries (`bundle_files`). The same archive returns the same id.",
				DefaultStatus: http.StatusCreated,
				RequestBody: &huma.RequestBody{Required: true, Content: map[string]*huma.MediaType{
					"application/x-tar": {Schema: binary}, "application/gzip": {Schema: binary}, "application/zip": {Schema: binary},
				}},
				Errors: []int{401, 403, 413, 422, 503}},
			rest: handle(g, g.restUploadBundle), micro: g.microUploadBundle},
		{ID: "list-bundles", Method: http.MethodGet, Path: "/v1/bundles", NATS: schemas.OpBundlesList, Scope: schemas.ScopeModulesRead,
			Doc:  huma.Operation{Tags: []string{"bundles"}, Summary: "List your bundles", Errors: []int{401, 503}},
			rest: handle(g, g.restListBundles), micro: natsNone(g.listBundles)},
		{ID: "get-bundle", Method: http.MethodGet, Path: "/v1/bundles/{id}", NATS: schemas.OpBundlesGet, Scope: schemas.ScopeModulesRead,
			Doc:  huma.Operation{Tags: []string{"bundles"}, Summary: "Get a bundle", Errors: []int{401, 404}},
			rest: handle(g, g.restGetBundle), micro: natsID(g.getBundle)},
		{ID: "delete-bundle", Method: http.MethodDelete, Path: "/v1/bundles/{id}", NATS: schemas.OpBundlesDelete, Scope: schemas.ScopeModulesWrite,
			Doc: huma.Operation{Tags: []string{"bundles"}, Summary: "Delete a bundle", Description: "Executions already queued that mount it fail with \"bundle not found\".",
				DefaultStatus: http.StatusNoContent, Errors: []int{401, 404}},
			rest: handle(g, g.restDeleteBundle), micro: natsID(deleted(g.deleteBundle))},

		// Keys and tokens (keys_api.go, tokens.go). Key management checks keys:manage itself
		// (manager), after reading the caller's key again from the store.
		{ID: "list-keys", Method: http.MethodGet, Path: "/v1/keys", Scope: schemas.ScopeKeysManage,
			Doc:  huma.Operation{Tags: []string{"keys"}, Summary: "List your tenant's keys (never their secrets)", Errors: []int{401, 403}},
			rest: handle(g, g.restListKeys)},
		{ID: "create-key", Method: http.MethodPost, Path: "/v1/keys", Scope: schemas.ScopeKeysManage,
			Doc: huma.Operation{Tags: []string{"keys"}, Summary: "Create a key for your tenant (tier, scopes and expiry at most yours; shown once)",
				DefaultStatus: 201, Errors: []int{401, 403, 409, 422}},
			rest: handle(g, g.restNewKey)},
		{ID: "revoke-key", Method: http.MethodDelete, Path: "/v1/keys/{id}", Scope: schemas.ScopeKeysManage,
			Doc: huma.Operation{Tags: []string{"keys"}, Summary: "Revoke a key (and every token made from it), at once on every gateway; not an admin key",
				DefaultStatus: 204, Errors: []int{401, 403, 404, 409}},
			rest: handle(g, g.restRevokeKey(false))},
		{ID: "rotate-key", Method: http.MethodPost, Path: "/v1/keys/{id}/rotate", Scope: schemas.ScopeKeysManage,
			Doc: huma.Operation{Tags: []string{"keys"}, Summary: "Rotate a key (tier, scopes and expiry at most yours; not an admin key): a new key now, the old one valid for a grace (default 1 h, at most 7 days) in which it manages no keys",
				DefaultStatus: 201, Errors: []int{401, 403, 404, 409, 422}},
			rest: handle(g, g.restRotateKey(false))},
		{ID: "create-token", Method: http.MethodPost, Path: "/v1/auth/token",
			Doc:  huma.Operation{Tags: []string{"keys"}, Summary: "Trade an API key for a short-lived JWT (EdDSA)", Errors: []int{401, 403, 503}},
			rest: handle(g, g.restIssueToken)},
		{ID: "jwks", Method: http.MethodGet, Path: "/.well-known/jwks.json", Public: true,
			Doc:  huma.Operation{Tags: []string{"keys"}, Summary: "The public keys that verify WasmWiz tokens"},
			rest: handle(g, g.restJWKS)},

		// Administration (tenants.go, keys_api.go).
		{ID: "admin-create-tenant", Method: http.MethodPost, Path: "/v1/admin/tenants", Admin: true,
			Doc: huma.Operation{Tags: []string{"admin"}, Summary: "Create a tenant (admin)", DefaultStatus: http.StatusCreated,
				Errors: []int{401, 403, 409, 422}},
			rest: handle(g, g.restCreateTenant)},
		{ID: "admin-list-tenants", Method: http.MethodGet, Path: "/v1/admin/tenants", Admin: true,
			Doc:  huma.Operation{Tags: []string{"admin"}, Summary: "List tenants (admin)", Errors: []int{401, 403}},
			rest: handle(g, g.restListTenants)},
		{ID: "admin-update-tenant", Method: http.MethodPatch, Path: "/v1/admin/tenants/{id}", Admin: true,
			Doc:  huma.Operation{Tags: []string{"admin"}, Summary: "Change a tenant's tier or suspend it (admin)", Errors: []int{401, 403, 404, 409, 422}},
			rest: handle(g, g.restUpdateTenant)},
		{ID: "admin-create-key", Method: http.MethodPost, Path: "/v1/admin/keys", Admin: true,
			Doc: huma.Operation{Tags: []string{"admin"}, Summary: "Create an API key for a tenant (admin); the key is shown once",
				DefaultStatus: http.StatusCreated, Errors: []int{401, 403, 404, 409, 422}},
			rest: handle(g, g.restCreateKey)},
		{ID: "admin-list-keys", Method: http.MethodGet, Path: "/v1/admin/keys", Admin: true,
			Doc:  huma.Operation{Tags: []string{"admin"}, Summary: "List keys of any tenant (admin)", Errors: []int{401, 403}},
			rest: handle(g, g.restAdminListKeys)},
		{ID: "admin-revoke-key", Method: http.MethodDelete, Path: "/v1/admin/keys/{id}", Admin: true,
			Doc: huma.Operation{Tags: []string{"admin"}, Summary: "Revoke any tenant's key, admin keys included (admin)",
				DefaultStatus: 204, Errors: []int{401, 403, 404, 409}},
			rest: handle(g, g.restRevokeKey(true))},
		{ID: "admin-rotate-key", Method: http.MethodPost, Path: "/v1/admin/keys/{id}/rotate", Admin: true,
			Doc: huma.Operation{Tags: []string{"admin"}, Summary: "Rotate any tenant's key, admin keys included (admin); the new key expires no later than the calling credential",
				DefaultStatus: 201, Errors: []int{401, 403, 404, 409, 422}},
			rest: handle(g, g.restRotateKey(true))},

		// Usage and events (usage.go, events.go). Both check usage:read themselves (scopeTenant):
		// an admin may name another tenant.
		{ID: "get-usage", Method: http.MethodGet, Path: "/v1/usage", NATS: schemas.OpUsage, Scope: schemas.ScopeUsageRead,
			Doc: huma.Operation{Tags: []string{"usage"}, Summary: "Usage of your tenant",
				Description: "What your executions cost in [from, to), by finish time, grouped by UTC day, module or API key. Each execution is counted once however often it was delivered; killed executions count as failed. Answered by the accounting role; 503 while it is unreachable.",
				Errors:      []int{401, 403, 404, 422, 503}},
			rest: handle(g, g.restUsage), micro: g.microUsage},
		{ID: "stream-events", Method: http.MethodGet, Path: "/v1/events", Scope: schemas.ScopeUsageRead, Stream: true,
			Doc: huma.Operation{Tags: []string{"events"}, Summary: "Stream your tenant's events (Server-Sent Events)",
				Description: "Your tenant's events, live, as text/event-stream: each message has `id:` (the stream sequence, for resuming), `event:` (the event type) and `data:` (the event as JSON, one line). " +
					"Without since_seq or since it starts with the next event. Idle streams get a comment every 15 s. A tenant only ever sees its own events.",
				Errors: []int{401, 403, 404, 422, 429, 503}},
			rest: g.restEvents},

		// Health (health.go) and the original API (compat.go).
		{ID: "health", Method: http.MethodGet, Path: "/health", Public: true,
			Doc:  huma.Operation{Tags: []string{"health"}, Summary: "Health and dependency status"},
			rest: handle(g, g.restHealth(false))},
		{ID: "health-ready", Method: http.MethodGet, Path: "/health/ready", Public: true,
			Doc: huma.Operation{Tags: []string{"health"}, Summary: "Ready: 503 until NATS, streams, keys and an executor are reachable",
				Responses: map[string]*huma.Response{"503": {Description: "not ready"}}},
			rest: handle(g, g.restHealth(true))},
		{ID: "health-live", Method: http.MethodGet, Path: "/health/live", Public: true,
			Doc:  huma.Operation{Tags: []string{"health"}, Summary: "Alive"},
			rest: handle(g, restLive)},
		{ID: "compat-execute", Method: http.MethodPost, Path: "/api/execute", Scope: schemas.ScopeExecute,
			Doc: compatDoc(), rest: g.restCompat},
	}
}

// handle binds a service call to Huma: it hands the call the caller (nil on public
// operations) and turns its error into the problem Huma writes.
func handle[I, O any](g *Server, call func(ctx context.Context, p *Principal, in *I) (*O, error)) func(huma.API, huma.Operation) {
	return func(api huma.API, op huma.Operation) {
		huma.Register(api, op, func(ctx context.Context, in *I) (*O, error) {
			out, err := call(ctx, principalFrom(ctx), in)
			if err != nil {
				return nil, g.fail(ctx, op.OperationID, err)
			}
			return out, nil
		})
	}
}

// natsID is a NATS handler whose body is schemas.IDRequest.
func natsID[O any](call func(ctx context.Context, p *Principal, id string) (O, error)) microHandler {
	return func(ctx context.Context, p *Principal, req micro.Request) (any, error) {
		var body schemas.IDRequest
		if err := decodeJSON(req.Data(), &body); err != nil {
			return nil, err
		}
		return call(ctx, p, body.ID)
	}
}

// natsJSON is a NATS handler whose body is the JSON of an I.
func natsJSON[I, O any](call func(ctx context.Context, p *Principal, in *I) (O, error)) microHandler {
	return func(ctx context.Context, p *Principal, req micro.Request) (any, error) {
		var body I
		if err := decodeJSON(req.Data(), &body); err != nil {
			return nil, err
		}
		return call(ctx, p, &body)
	}
}

// natsNone is a NATS handler that reads no body.
func natsNone[O any](call func(ctx context.Context, p *Principal) (O, error)) microHandler {
	return func(ctx context.Context, p *Principal, _ micro.Request) (any, error) { return call(ctx, p) }
}

// deleted answers a deletion with an empty object on NATS.
func deleted(del func(ctx context.Context, p *Principal, id string) error) func(context.Context, *Principal, string) (struct{}, error) {
	return func(ctx context.Context, p *Principal, id string) (struct{}, error) {
		return struct{}{}, del(ctx, p, id)
	}
}

// bindREST registers every operation with Huma.
func (g *Server) bindREST(api huma.API) {
	for _, o := range g.ops {
		o.rest(api, o.huma())
	}
}

// opsByID indexes the table for the middleware and the NATS service.
func opsByID(ops []operation) map[string]*operation {
	m := make(map[string]*operation, len(ops))
	for i := range ops {
		m[ops[i].ID] = &ops[i]
	}
	return m
}

// authorize authenticates a caller of o and checks the row's admin flag and scope.
func (g *Server) authorize(ctx context.Context, o *operation, authorization string) (*Principal, error) {
	p, err := g.keyring.authenticate(ctx, authorization)
	if err != nil {
		return nil, err
	}
	if o.Admin && !p.Admin {
		return nil, errNeedsAdmin
	}
	if o.Scope != "" {
		if err := p.require(o.Scope); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// admitCaller is how every transport lets a caller of o in: authorize, note the key's use
// (last_used_at), and take one of its tenant's concurrent request slots (not for long-lived
// streams, which have a bound of their own); release gives the slot back.
func (g *Server) admitCaller(ctx context.Context, o *operation, authorization string) (p *Principal, release func(), err error) {
	if p, err = g.authorize(ctx, o, authorization); err != nil {
		return nil, nil, err
	}
	g.keyUsage.touch(p.KeyID)
	if o.Stream {
		return p, func() {}, nil
	}
	if release, err = g.limitConcurrent(ctx, p); err != nil {
		return nil, nil, err
	}
	return p, release, nil
}

var errNeedsAdmin = schemas.Errorf(schemas.CodeForbidden, "this endpoint needs an admin key")
