package gateway

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/net/netutil"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// HTTP server defaults (Config fields of the same names override them).
const (
	DefaultMaxConnections    = 4096
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = time.Minute
	DefaultIdleTimeout       = time.Minute
	DefaultMaxHeaderBytes    = 32 << 10
)

// serverHeaderCap is how many header bytes net/http itself reads before it gives up with a
// plain-text 431 and closes the connection; requests with more than MaxHeaderBytes but less than
// this get the gateway's own 431 as problem+json.
func serverHeaderCap(maxHeaderBytes int) int { return max(8*maxHeaderBytes, 256<<10) }

// newServer makes the HTTP server with every timeout set: headers (ReadHeaderTimeout), header
// and body together (ReadTimeout; operations set shorter deadlines on their own bodies, and a
// handler's read deadline is lifted once its body is read, so long answers are not cut), and
// idle keep-alive connections (IdleTimeout).
func (g *Server) newServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: g.cfg.ReadHeaderTimeout,
		ReadTimeout:       g.cfg.ReadTimeout,
		IdleTimeout:       g.cfg.IdleTimeout,
		MaxHeaderBytes:    serverHeaderCap(g.cfg.MaxHeaderBytes),
	}
}

// listen opens the API listener (or takes Config.Listener), bounded to MaxConnections open
// connections: past that, new connections wait in the kernel's accept queue.
func (g *Server) listen() (net.Listener, error) {
	ln := g.cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", g.cfg.HTTPAddr); err != nil {
			return nil, err
		}
	}
	return netutil.LimitListener(ln, g.cfg.MaxConnections), nil
}

// secure wraps every response of the gateway: security headers (nosniff, no framing, a strict
// Content-Security-Policy that the HTML docs page replaces with its own, HSTS over TLS), and
// request headers bounded to MaxHeaderBytes with a problem+json 431.
func (g *Server) secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		h.Set("Referrer-Policy", "no-referrer")
		if r.TLS != nil {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		if headerBytes(r) > g.cfg.MaxHeaderBytes {
			w.Header().Set("Connection", "close")
			p := newProblem(http.StatusRequestHeaderFieldsTooLarge, fmt.Sprintf("request headers are over %d bytes", g.cfg.MaxHeaderBytes))
			p.Code = schemas.CodeTooLarge // no code has status 431; CodeForStatus would say internal
			writeProblem(w, p)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// headerBytes is about what a request's line and headers took on the wire.
func headerBytes(r *http.Request) int {
	n := len(r.Method) + len(r.RequestURI) + 12
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

func writeProblem(w http.ResponseWriter, p *Problem) {
	for k, v := range p.headers {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// pathIDRE is what every id in a URL path looks like (tenants, keys, modules, executions): a
// parameter outside it names nothing, and must not reach a store as a key.
var pathIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_:-]{0,127}$`)

// checkPathIDs answers 404 for an operation whose path parameters cannot be ids (for example
// "../x"), before any handler looks them up.
func checkPathIDs(api huma.API) func(huma.Context, func(huma.Context)) {
	return func(ctx huma.Context, next func(huma.Context)) {
		for _, p := range ctx.Operation().Parameters {
			if p.In != "path" || p.Name == "path" { // a guest file's path (files.go), never a store key
				continue
			}
			if v := ctx.Param(p.Name); !pathIDRE.MatchString(v) {
				_ = huma.WriteErr(api, ctx, http.StatusNotFound, "no such "+strings.TrimSuffix(resourceName(ctx.Operation().Path), "s")+": "+truncateID(v))
				return
			}
		}
		next(ctx)
	}
}

// resourceName is the collection a path's id belongs to: /v1/admin/tenants/{id} → tenants.
func resourceName(path string) string {
	parts := strings.Split(path, "/")
	for i, p := range parts {
		if strings.HasPrefix(p, "{") && i > 0 {
			return parts[i-1]
		}
	}
	return "resource"
}

// certReloader serves the certificate in certFile/keyFile and reads the pair again when either
// file changes, so a renewed certificate needs no restart.
type certReloader struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	modTime time.Time
	checked time.Time
}

func newCertReloader(certFile, keyFile string) (*certReloader, error) {
	c := &certReloader{certFile: certFile, keyFile: keyFile}
	if err := c.load(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *certReloader) newest() time.Time {
	var t time.Time
	for _, f := range []string{c.certFile, c.keyFile} {
		if fi, err := os.Stat(f); err == nil && fi.ModTime().After(t) {
			t = fi.ModTime()
		}
	}
	return t
}

func (c *certReloader) load() error {
	mod := c.newest()
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("TLS certificate: %w", err)
	}
	c.cert, c.modTime = &cert, mod
	return nil
}

// get is tls.Config.GetCertificate: the current pair, read again (at most every 10 s) if the
// files changed; a pair that does not load keeps the previous one.
func (c *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.checked) >= 10*time.Second {
		c.checked = time.Now()
		if c.newest().After(c.modTime) {
			_ = c.load()
		}
	}
	return c.cert, nil
}

func (c *certReloader) tlsConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: c.get, NextProtos: []string{"h2", "http/1.1"}}
}

// metricsListener opens the metrics listener when /metrics has one of its own (nil otherwise).
func (g *Server) metricsListener() (net.Listener, error) {
	if g.cfg.MetricsListener != nil {
		return g.cfg.MetricsListener, nil
	}
	if g.cfg.MetricsAddr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", g.cfg.MetricsAddr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener: %w", err)
	}
	return ln, nil
}

// separateMetrics reports whether /metrics is served apart from the API.
func (g *Server) separateMetrics() bool {
	return g.cfg.MetricsAddr != "" || g.cfg.MetricsListener != nil
}

// metricsHandler serves /metrics (and liveness) on the metrics listener.
func (g *Server) metricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g.cfg.Gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /health/live", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	mux.HandleFunc("/", notFound)
	return g.secure(mux)
}

// notFound is the problem+json 404 of paths no route serves.
func notFound(w http.ResponseWriter, r *http.Request) {
	writeProblem(w, newProblem(http.StatusNotFound, "no such endpoint: "+r.Method+" "+truncateID(r.URL.Path)+"; see /openapi.json"))
}
