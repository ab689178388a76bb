package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wasmwiz/wasmwiz/schemas"
)

type principalKey struct{}

func principalFrom(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}

// APIVersion is the version of the REST contract in the OpenAPI document.
const APIVersion = "1.0.0"

// NewAPI builds the Huma API on mux. Handlers are bound to g; with g == nil it only describes
// the API (used to write the OpenAPI snapshot).
func newAPI(mux *http.ServeMux) huma.API {
	config := huma.DefaultConfig("WasmWiz API", APIVersion)
	config.Info.Description = "Run untrusted WebAssembly (WASI preview 1) modules as a service."
	config.CreateHooks = nil // no $schema links in bodies: REST and NATS bodies are identical
	config.OpenAPIPath = "/openapi"
	config.DocsPath = "" // served by docsRoutes from embedded assets, not from a CDN
	config.Servers = contractServers
	config.OnAddOperation = append(config.OnAddOperation, fixContract) // openapi.go
	config.Components.SecuritySchemes = map[string]*huma.SecurityScheme{
		"bearer": {Type: "http", Scheme: "bearer", Description: "an API key (ww_...)"},
	}
	return humago.New(mux, config)
}

var bearer = []map[string][]string{{"bearer": {}}}

func (g *Gateway) routes() http.Handler {
	mux := http.NewServeMux()
	api := newAPI(mux)
	api.UseMiddleware(g.observe(api), g.traced(api), g.authenticate(api), g.limitBody(api), checkPathIDs(api))
	g.register(api)
	if !g.separateMetrics() {
		mux.Handle("GET /metrics", promhttp.HandlerFor(g.cfg.Gatherer, promhttp.HandlerOpts{}))
	}
	mux.Handle("POST /api/execute", g.instrument("/api/execute", http.HandlerFunc(g.compatExecute)))
	g.docsRoutes(mux)
	mux.HandleFunc("/", notFound)
	return g.secure(mux)
}

// OpenAPI returns the gateway's OpenAPI document (for the committed snapshot and clients).
func OpenAPI() *huma.OpenAPI {
	mux := http.NewServeMux()
	api := newAPI(mux)
	(&Gateway{cfg: Config{Tiers: schemas.DefaultTiers()}}).register(api)
	return api.OpenAPI()
}

func (g *Gateway) authenticate(api huma.API) func(huma.Context, func(huma.Context)) {
	return func(ctx huma.Context, next func(huma.Context)) {
		if len(ctx.Operation().Security) == 0 {
			next(ctx)
			return
		}
		p, err := g.keyring.authenticate(ctx.Context(), ctx.Header("Authorization"))
		if err != nil {
			se := g.publicError(ctx.Context(), "authenticate", err)
			_ = huma.WriteErr(api, ctx, se.Code.Status(), se.Message)
			return
		}
		op := ctx.Operation().OperationID
		// Admin operations refuse tenant keys before reading the body: a tenant learns nothing.
		if strings.HasPrefix(op, "admin-") && !p.Admin {
			_ = huma.WriteErr(api, ctx, http.StatusForbidden, "this endpoint needs an admin key")
			return
		}
		if scope := operationScopes[op]; scope != "" {
			if err := p.require(scope); err != nil {
				se := g.publicError(ctx.Context(), "authenticate", err)
				_ = huma.WriteErr(api, ctx, se.Code.Status(), se.Message)
				return
			}
		}
		g.keyUsage.touch(p.KeyID)
		// Event streams are long-lived and have a bound of their own (maxEventStreams).
		if op != "stream-events" {
			release, err := g.limitConcurrent(ctx.Context(), p)
			if err != nil {
				se := g.publicError(ctx.Context(), "authenticate", err)
				ctx.SetHeader("Retry-After", strconv.Itoa(se.RetryAfter))
				_ = huma.WriteErr(api, ctx, se.Code.Status(), se.Message)
				return
			}
			defer release()
		}
		next(huma.WithValue(ctx, principalKey{}, p))
	}
}

// operationScopes is the scope each tenant operation needs (admin keys hold all). Key
// management checks keys:manage itself, admin operations check the admin flag.
var operationScopes = map[string]string{
	"upload-module":    schemas.ScopeModulesWrite,
	"delete-module":    schemas.ScopeModulesWrite,
	"list-modules":     schemas.ScopeModulesRead,
	"get-module":       schemas.ScopeModulesRead,
	"upload-bundle":    schemas.ScopeModulesWrite,
	"delete-bundle":    schemas.ScopeModulesWrite,
	"list-bundles":     schemas.ScopeModulesRead,
	"get-bundle":       schemas.ScopeModulesRead,
	"create-execution": schemas.ScopeExecute,
	"get-execution":    schemas.ScopeExecute,
	"download-output":  schemas.ScopeExecute,
	"compat-execute":   schemas.ScopeExecute,
}

func (g *Gateway) observe(api huma.API) func(huma.Context, func(huma.Context)) {
	return func(ctx huma.Context, next func(huma.Context)) {
		start := time.Now()
		next(ctx)
		route := ctx.Operation().Path
		g.metrics.httpRequests.WithLabelValues(ctx.Operation().Method, route, strconv.Itoa(ctx.Status())).Inc()
		g.metrics.httpDuration.WithLabelValues(ctx.Operation().Method, route).Observe(time.Since(start).Seconds())
	}
}

// instrument counts a plain net/http handler in the same metrics as Huma's operations.
func (g *Gateway) instrument(route string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(sw, r)
		g.metrics.httpRequests.WithLabelValues(r.Method, route, strconv.Itoa(sw.status)).Inc()
		g.metrics.httpDuration.WithLabelValues(r.Method, route).Observe(time.Since(start).Seconds())
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) { w.status = code; w.ResponseWriter.WriteHeader(code) }

// fail converts a service error into the Problem Huma writes.
func (g *Gateway) fail(ctx context.Context, op string, err error) error {
	se := g.publicError(ctx, op, err)
	p := problemFrom(se)
	p.headers = limitHeaders(se, err)
	return p
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

type executionInput struct {
	IdempotencyKey string `header:"Idempotency-Key" maxLength:"255" doc:"the same key with the same body returns the same execution, never running it twice"`
	Body           schemas.ExecutionRequest
}

type executionOutput struct {
	Status             int
	Location           string `header:"Location"`
	RateLimitLimit     string `header:"RateLimit-Limit" doc:"executions allowed in the tightest window (absent on unlimited tiers)"`
	RateLimitRemaining string `header:"RateLimit-Remaining" doc:"executions left in that window"`
	RateLimitReset     string `header:"RateLimit-Reset" doc:"seconds until one more execution is available"`
	Body               *schemas.Execution
}

type executionIDInput struct {
	ID string `path:"id"`
}

type tenantInput struct {
	Body schemas.CreateTenantRequest
}

type tenantOutput struct {
	Body *schemas.Tenant
}

type keyInput struct {
	Body schemas.CreateKeyRequest
}

type keyOutput struct {
	Body *schemas.CreatedKey
}

type healthOutput struct {
	Status int
	Body   *HealthStatus
}

// HealthStatus is the body of the health endpoints.
type HealthStatus struct {
	Status    string `json:"status" enum:"ok,unavailable"`
	NATS      bool   `json:"nats"`
	Streams   bool   `json:"streams"`
	Keys      bool   `json:"keys"`
	Executors bool   `json:"executors"`
}

// maxUploadBytes is the largest module any tier may upload; the tier's own limit is checked after.
func maxModuleBytes(tiers map[string]schemas.Tier) int64 {
	var m int64
	for _, t := range tiers {
		m = max(m, t.ModuleSize)
	}
	return m
}

func (g *Gateway) register(api huma.API) {
	g.registerBundles(api) // bundles.go
	maxModule := maxModuleBytes(g.cfg.Tiers)
	huma.Register(api, huma.Operation{
		OperationID: "upload-module", Method: http.MethodPost, Path: "/v1/modules", Tags: []string{"modules"},
		Summary:     "Upload a module",
		Description: "Validates a WASI preview 1 command module, compiles it once on an executor, and stores it content-addressed. The same bytes return the same id.",
		Security:    bearer, DefaultStatus: http.StatusCreated, MaxBodyBytes: maxModule + 1,
		RequestBody: &huma.RequestBody{Required: true, Content: map[string]*huma.MediaType{"application/wasm": {Schema: &huma.Schema{
			Type: "string", Format: "binary", // marshalled with contentMediaType application/octet-stream
		}}}},
		Errors: []int{401, 413, 422, 429, 503},
	}, func(ctx context.Context, in *moduleUploadInput) (*moduleOutput, error) {
		m, err := g.uploadREST(ctx, principalFrom(ctx), in.Name, in.body)
		if err != nil {
			return nil, g.fail(ctx, "upload-module", err)
		}
		return &moduleOutput{Body: m}, nil
	})
	huma.Register(api, huma.Operation{
		OperationID: "list-modules", Method: http.MethodGet, Path: "/v1/modules", Tags: []string{"modules"},
		Summary: "List your modules", Security: bearer, Errors: []int{401, 503},
	}, func(ctx context.Context, _ *struct{}) (*moduleListOutput, error) {
		l, err := g.listModules(ctx, principalFrom(ctx))
		if err != nil {
			return nil, g.fail(ctx, "list-modules", err)
		}
		return &moduleListOutput{Body: l}, nil
	})
	huma.Register(api, huma.Operation{
		OperationID: "get-module", Method: http.MethodGet, Path: "/v1/modules/{id}", Tags: []string{"modules"},
		Summary: "Get a module", Security: bearer, Errors: []int{401, 404},
	}, func(ctx context.Context, in *moduleIDInput) (*moduleOutput, error) {
		m, err := g.getModule(ctx, principalFrom(ctx), in.ID)
		if err != nil {
			return nil, g.fail(ctx, "get-module", err)
		}
		return &moduleOutput{Body: m}, nil
	})
	huma.Register(api, huma.Operation{
		OperationID: "delete-module", Method: http.MethodDelete, Path: "/v1/modules/{id}", Tags: []string{"modules"},
		Summary: "Delete a module", Security: bearer, DefaultStatus: http.StatusNoContent, Errors: []int{401, 404},
	}, func(ctx context.Context, in *moduleIDInput) (*struct{}, error) {
		if err := g.deleteModule(ctx, principalFrom(ctx), in.ID); err != nil {
			return nil, g.fail(ctx, "delete-module", err)
		}
		return nil, nil
	})
	huma.Register(api, huma.Operation{
		OperationID: "create-execution", Method: http.MethodPost, Path: "/v1/executions", Tags: []string{"executions"},
		Summary: "Run a module",
		Description: "Runs a module with stdin, args and env. Answers 200 with the result, or 202 when async is set or the wait ran out (the execution goes on; poll GET /v1/executions/{id}). " +
			"An inline module (module_base64) is stored as one of your modules and needs the modules:write scope. " +
			"A request refused with 429 claims nothing: sent again with the same Idempotency-Key it is checked again; only an admitted execution is replayed.",
		Security: bearer, MaxBodyBytes: maxModule*4/3 + 4<<20,
		Responses: map[string]*huma.Response{"202": {Description: "Accepted: queued or still running"}},
		Errors:    []int{401, 403, 404, 409, 413, 422, 429, 503},
	}, func(ctx context.Context, in *executionInput) (*executionOutput, error) {
		p := principalFrom(ctx)
		out, err := g.createExecution(ctx, p, &in.Body, in.IdempotencyKey)
		if err != nil {
			return nil, g.fail(ctx, "create-execution", err)
		}
		status := http.StatusOK
		if out.Accepted {
			status = http.StatusAccepted
		}
		o := &executionOutput{Status: status, Location: "/v1/executions/" + out.Execution.ID, Body: out.Execution}
		o.RateLimitLimit, o.RateLimitRemaining, o.RateLimitReset = out.Limit.headers()
		return o, nil
	})
	huma.Register(api, huma.Operation{
		OperationID: "get-execution", Method: http.MethodGet, Path: "/v1/executions/{id}", Tags: []string{"executions"},
		Summary: "Get an execution", Security: bearer, Errors: []int{401, 404, 503},
	}, func(ctx context.Context, in *executionIDInput) (*executionOutput, error) {
		e, err := g.getExecution(ctx, principalFrom(ctx), in.ID)
		if err != nil {
			return nil, g.fail(ctx, "get-execution", err)
		}
		return &executionOutput{Status: http.StatusOK, Body: e}, nil
	})
	huma.Register(api, huma.Operation{
		OperationID: "admin-create-tenant", Method: http.MethodPost, Path: "/v1/admin/tenants", Tags: []string{"admin"},
		Summary: "Create a tenant (admin)", Security: bearer, DefaultStatus: http.StatusCreated, Errors: []int{401, 403, 409, 422},
	}, func(ctx context.Context, in *tenantInput) (*tenantOutput, error) {
		t, err := g.createTenant(ctx, principalFrom(ctx), &in.Body)
		if err != nil {
			return nil, g.fail(ctx, "admin-create-tenant", err)
		}
		return &tenantOutput{Body: t}, nil
	})
	huma.Register(api, huma.Operation{
		OperationID: "admin-create-key", Method: http.MethodPost, Path: "/v1/admin/keys", Tags: []string{"admin"},
		Summary: "Create an API key for a tenant (admin); the key is shown once", Security: bearer, DefaultStatus: http.StatusCreated, Errors: []int{401, 403, 404, 409, 422},
	}, func(ctx context.Context, in *keyInput) (*keyOutput, error) {
		k, err := g.createKey(ctx, principalFrom(ctx), &in.Body)
		if err != nil {
			return nil, g.fail(ctx, "admin-create-key", err)
		}
		return &keyOutput{Body: k}, nil
	})
	health := func(ready bool) func(context.Context, *struct{}) (*healthOutput, error) {
		return func(ctx context.Context, _ *struct{}) (*healthOutput, error) {
			h := g.health()
			status := http.StatusOK
			if ready && h.Status != "ok" {
				status = http.StatusServiceUnavailable
			}
			return &healthOutput{Status: status, Body: h}, nil
		}
	}
	huma.Register(api, huma.Operation{OperationID: "health", Method: http.MethodGet, Path: "/health", Tags: []string{"health"}, Summary: "Health and dependency status"}, health(false))
	huma.Register(api, huma.Operation{OperationID: "health-ready", Method: http.MethodGet, Path: "/health/ready", Tags: []string{"health"}, Summary: "Ready: 503 until NATS, streams, keys and an executor are reachable", Responses: map[string]*huma.Response{"503": {Description: "not ready"}}}, health(true))
	huma.Register(api, huma.Operation{OperationID: "health-live", Method: http.MethodGet, Path: "/health/live", Tags: []string{"health"}, Summary: "Alive"},
		func(ctx context.Context, _ *struct{}) (*healthOutput, error) {
			return &healthOutput{Status: http.StatusOK, Body: &HealthStatus{Status: "ok"}}, nil
		})
	g.registerKeys(api)
	api.OpenAPI().AddOperation(compatOperation())
	g.registerUsage(api)
}

func (g *Gateway) health() *HealthStatus {
	if g.nc == nil {
		return &HealthStatus{Status: "unavailable"}
	}
	h := &HealthStatus{
		NATS: g.nc.IsConnected(), Streams: g.streamsOK.Load(), Keys: g.keyring.isSynced(),
		Executors: time.Since(time.Unix(0, g.lastPing.Load())) < 10*time.Second,
	}
	h.Status = "unavailable"
	if g.Ready() {
		h.Status = "ok"
	}
	return h
}

// requestHash identifies an execution request's content for Idempotency-Key checks; it hashes
// the decoded request, so formatting differences in the JSON do not matter.
func requestHash(req *schemas.ExecutionRequest) string {
	c := *req
	c.Async = false // how the caller waits is not part of what runs
	b, _ := json.Marshal(&c)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
