package gateway

import (
	"context"
	"net/http"
	"strconv"
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

// newAPI builds the Huma API on mux, with no operations yet (bindREST adds the table's).
func newAPI(mux *http.ServeMux) huma.API {
	config := huma.DefaultConfig("WasmWiz API", APIVersion)
	config.Info.Description = docsOverview // docsassets/overview.md: the narrative on /docs
	config.CreateHooks = nil               // no $schema links in bodies: REST and NATS bodies are identical
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

// routes is the gateway's HTTP handler: the table's operations behind the middleware (metrics,
// tracing, authorization, tier body limits, path ids), /metrics, the docs, and a problem+json 404.
func (g *Server) routes() http.Handler {
	mux := http.NewServeMux()
	api := newAPI(mux)
	api.UseMiddleware(g.observe(api), g.traced(api), g.authenticate(api), g.limitBody(api), checkPathIDs(api))
	g.bindREST(api)
	if !g.separateMetrics() {
		mux.Handle("GET /metrics", promhttp.HandlerFor(g.cfg.Gatherer, promhttp.HandlerOpts{}))
	}
	g.docsRoutes(mux)
	g.consoleRoutes(mux) // console.go
	mux.HandleFunc("/", notFound)
	return g.secure(mux)
}

// OpenAPI returns the gateway's OpenAPI document (for the committed snapshot and clients): the
// table bound to an API that serves nothing, with the default tiers' body limits.
func OpenAPI() *huma.OpenAPI {
	mux := http.NewServeMux()
	api := newAPI(mux)
	g := &Server{cfg: Config{Tiers: schemas.DefaultTiers()}}
	g.ops = g.operations()
	g.bindREST(api)
	return api.OpenAPI()
}

// authenticate is the middleware that lets the caller of a table operation in (admitCaller,
// ops.go) before Huma reads the body: a tenant key on an admin operation, a key without the
// row's scope, or a tenant over its concurrent requests is refused having sent only headers.
func (g *Server) authenticate(api huma.API) func(huma.Context, func(huma.Context)) {
	return func(ctx huma.Context, next func(huma.Context)) {
		o := g.opByID[ctx.Operation().OperationID]
		if o == nil || o.Public {
			next(ctx)
			return
		}
		p, release, err := g.admitCaller(ctx.Context(), o, ctx.Header("Authorization"))
		if err != nil {
			se := g.publicError(ctx.Context(), "authenticate", err)
			for k, v := range limitHeaders(se, err) {
				ctx.SetHeader(k, v[0])
			}
			_ = huma.WriteErr(api, ctx, se.Code.Status(), se.Message)
			return
		}
		defer release()
		next(huma.WithValue(ctx, principalKey{}, p))
	}
}

func (g *Server) observe(api huma.API) func(huma.Context, func(huma.Context)) {
	return func(ctx huma.Context, next func(huma.Context)) {
		start := time.Now()
		next(ctx)
		route := ctx.Operation().Path
		g.metrics.httpRequests.WithLabelValues(ctx.Operation().Method, route, strconv.Itoa(ctx.Status())).Inc()
		g.metrics.httpDuration.WithLabelValues(ctx.Operation().Method, route).Observe(time.Since(start).Seconds())
	}
}

// instrument counts a plain net/http handler in the same metrics as Huma's operations.
func (g *Server) instrument(route string, h http.Handler) http.Handler {
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
func (g *Server) fail(ctx context.Context, op string, err error) error {
	se := g.publicError(ctx, op, err)
	p := problemFrom(se)
	p.headers = limitHeaders(se, err)
	return p
}
