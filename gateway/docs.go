package gateway

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

// docsViewerVersion is the vendored @stoplight/elements version (gateway/docsassets/README.md).
const docsViewerVersion = "9.0.15"

//go:embed docsassets/web-components.min.js docsassets/styles.min.css
var docsAssets embed.FS

// docsOverview is the OpenAPI document's description, the overview page of /docs: how to
// authenticate, errors, idempotency, rate limits and async executions, with examples that
// TestDocs_Examples (test/) sends to a running system.
//
//go:embed docsassets/overview.md
var docsOverview string

// docsCSP lets the docs page load its viewer and the OpenAPI document from the gateway itself
// and nothing else. The viewer sets inline styles, hence 'unsafe-inline' for styles only.
var docsCSP = strings.Join([]string{
	"default-src 'none'",
	"base-uri 'none'",
	"connect-src 'self'",
	"form-action 'none'",
	"frame-ancestors 'none'",
	"sandbox allow-same-origin allow-scripts",
	"script-src 'self'",
	"style-src 'self' 'unsafe-inline'",
	"img-src 'self' data:",
}, "; ")

const docsHTML = `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="referrer" content="no-referrer">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>WasmWiz API</title>
    <link rel="stylesheet" href="/docs/assets/styles.min.css?v=` + docsViewerVersion + `">
    <script src="/docs/assets/web-components.min.js?v=` + docsViewerVersion + `"></script>
  </head>
  <body style="height: 100vh;">
    <elements-api
      apiDescriptionUrl="/openapi.yaml"
      router="hash"
      layout="sidebar"
      tryItCredentialsPolicy="same-origin"
    ></elements-api>
  </body>
</html>
`

// docsRoutes serves /docs (an HTML page) and its viewer's assets from the binary: the page
// works without network access beyond the gateway.
func (g *Server) docsRoutes(mux *http.ServeMux) {
	mux.Handle("GET /docs", g.instrument("/docs", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", docsCSP)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(docsHTML))
	})))
	sub, err := fs.Sub(docsAssets, "docsassets")
	if err != nil {
		panic(err)
	}
	files := http.StripPrefix("/docs/assets/", http.FileServerFS(sub))
	mux.Handle("GET /docs/assets/", g.instrument("/docs/assets", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/docs/assets/")
		if st, err := fs.Stat(sub, name); err != nil || st.IsDir() { // no listings, problem+json 404s
			notFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=86400")
		files.ServeHTTP(w, r)
	})))
}
