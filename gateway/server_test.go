package gateway

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmwiz/wasmwiz/internal/natstest"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// testGateway is a running gateway on an embedded JetStream server (no executor: nothing here
// runs a guest), with a tenant key and an admin key.
type testGateway struct {
	g        *Server
	srv      *server.Server // the embedded NATS server
	url      string
	addr     string
	client   *http.Client
	key      string // tenant "acme", all scopes
	adminKey string
}

// startTestGateway starts one; setup, if any, changes the opened gateway before it serves.
func startTestGateway(t *testing.T, cfg Config, setup ...func(*Server)) *testGateway {
	t.Helper()
	srv := natstest.RunJetStream(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listener = ln
	cfg.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	cfg.Registerer, cfg.Gatherer = reg, reg
	ctx := context.Background()
	g, err := New(cfg, natstest.Connect(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.open(ctx); err != nil { // the stores, for the keys below
		t.Fatal(err)
	}
	tg := &testGateway{g: g, srv: srv, addr: ln.Addr().String(), url: "http://" + ln.Addr().String(), client: &http.Client{Timeout: 30 * time.Second}}
	for _, tenant := range []struct {
		id    string
		admin bool
		key   *string
	}{{"acme", false, &tg.key}, {"admin", true, &tg.adminKey}} {
		if _, err := g.admin().CreateTenant(ctx, tenant.id, schemas.TierBasic); err != nil {
			t.Fatal(err)
		}
		k, err := g.admin().CreateKey(ctx, schemas.CreateKeyRequest{TenantID: tenant.id, Admin: tenant.admin})
		if err != nil {
			t.Fatal(err)
		}
		*tenant.key = k.Key
	}
	for _, f := range setup {
		f(g)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- g.Run(rctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return tg
}

// do sends a request and returns the response with its body read.
func (tg *testGateway) do(t *testing.T, method, path, authorization string, headers ...string) (*http.Response, []byte) {
	t.Helper()
	return tg.doBody(t, method, path, authorization, "", headers...)
}

func (tg *testGateway) doBody(t *testing.T, method, path, authorization, body string, headers ...string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, tg.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	// The listener is open before Run serves it: a first request waits in its backlog.
	resp, err := tg.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func problemCode(t *testing.T, resp *http.Response, body []byte) string {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Errorf("%d answered with Content-Type %q, want application/problem+json: %s", resp.StatusCode, ct, body)
	}
	var p Problem
	_ = json.Unmarshal(body, &p)
	return string(p.Code)
}

// Every response carries the security headers: API answers, errors, 404s and the docs page
// (which sets its own Content-Security-Policy); HSTS only over TLS (TestGateway_TLS).
func TestSecurity_HeadersOnEveryResponse(t *testing.T) {
	tg := startTestGateway(t, Config{})
	for _, c := range []struct{ method, path, auth string }{
		{"GET", "/health", ""},
		{"GET", "/v1/modules", "Bearer " + tg.key},
		{"GET", "/v1/modules", ""},
		{"GET", "/nowhere", ""},
		{"GET", "/openapi.json", ""},
		{"GET", "/docs", ""},
		{"GET", "/metrics", ""},
		{"POST", "/api/execute", ""},
	} {
		resp, _ := tg.do(t, c.method, c.path, c.auth)
		h := resp.Header
		if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("X-Frame-Options") != "DENY" || !strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
			t.Errorf("%s %s (%d): security headers missing: %v", c.method, c.path, resp.StatusCode, h)
		}
		if h.Get("Strict-Transport-Security") != "" {
			t.Errorf("%s %s: HSTS over plain HTTP", c.method, c.path)
		}
		if c.path != "/docs" && !strings.HasPrefix(h.Get("Content-Security-Policy"), "default-src 'none'") {
			t.Errorf("%s %s: CSP %q, want the strict one", c.method, c.path, h.Get("Content-Security-Policy"))
		}
	}
}

// An idle keep-alive connection, and one that never sends its headers, are closed.
func TestSecurity_IdleConnectionsTimeOut(t *testing.T) {
	tg := startTestGateway(t, Config{IdleTimeout: 300 * time.Millisecond, ReadHeaderTimeout: 300 * time.Millisecond})
	tg.do(t, "GET", "/health/live", "") // the server is up

	silent, err := net.Dial("tcp", tg.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	idle, err := net.Dial("tcp", tg.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if _, err := io.WriteString(idle, "GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(idle)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	// Both connections must be closed by the server; 10 s is far beyond the timeouts.
	for name, r := range map[string]io.Reader{"silent": silent, "idle keep-alive": br} {
		c := map[string]net.Conn{"silent": silent, "idle keep-alive": idle}[name]
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := r.Read(make([]byte, 1))
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("%s connection still open after 10 s", name)
		}
	}
}

// The open connections are bounded: past MaxConnections a new one is not served until one closes.
func TestGateway_MaxConnections(t *testing.T) {
	tg := startTestGateway(t, Config{MaxConnections: 1})
	tg.do(t, "GET", "/health/live", "")
	tg.client.CloseIdleConnections()
	holder, err := net.Dial("tcp", tg.addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(holder, "GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(holder), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// holder keeps the only slot: another client is not answered.
	other := &http.Client{Timeout: 500 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
	if resp, err := other.Get(tg.url + "/health/live"); err == nil {
		resp.Body.Close()
		t.Fatalf("a second connection was served past MaxConnections=1: %d", resp.StatusCode)
	}
	holder.Close()
	other.Timeout = 10 * time.Second
	resp, err = other.Get(tg.url + "/health/live")
	if err != nil {
		t.Fatalf("after the first connection closed: %v", err)
	}
	resp.Body.Close()
}

// Request headers over MaxHeaderBytes get a problem+json 431.
func TestSecurity_HeaderTooLargeIsProblemJSON(t *testing.T) {
	tg := startTestGateway(t, Config{})
	resp, body := tg.do(t, "GET", "/v1/modules", "Bearer "+tg.key, "X-Big", strings.Repeat("a", DefaultMaxHeaderBytes+1))
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	// The code says what is wrong: too_large, not internal (a server fault clients may retry),
	// which it was while the code came from the status (no code has 431).
	if code := problemCode(t, resp, body); code != string(schemas.CodeTooLarge) {
		t.Errorf("431 with code %q, want %q: %s", code, schemas.CodeTooLarge, body)
	}
}

// The bearer scheme is case-insensitive (RFC 9110 §11.1).
func TestSecurity_BearerSchemeCaseInsensitive(t *testing.T) {
	tg := startTestGateway(t, Config{})
	for _, scheme := range []string{"Bearer", "bearer", "BEARER", "bEaReR"} {
		if resp, body := tg.do(t, "GET", "/v1/modules", scheme+" "+tg.key); resp.StatusCode != 200 {
			t.Errorf("%q: %d %s", scheme, resp.StatusCode, body)
		}
	}
	if resp, _ := tg.do(t, "GET", "/v1/modules", "Basic "+tg.key); resp.StatusCode != 401 {
		t.Errorf("Basic scheme: %d, want 401", resp.StatusCode)
	}
}

// A Last-Event-ID past any sequence is a 400, not a 503 from the server refusing the consumer.
func TestSecurity_LastEventIDOverflow(t *testing.T) {
	tg := startTestGateway(t, Config{})
	for _, id := range []string{"18446744073709551615", "18446744073709551616", "-1", "x"} {
		resp, body := tg.do(t, "GET", "/v1/events", "Bearer "+tg.key, "Last-Event-ID", id)
		if resp.StatusCode != 400 || problemCode(t, resp, body) != string(schemas.CodeBadRequest) {
			t.Errorf("Last-Event-ID %s: %d %s, want 400", id, resp.StatusCode, body)
		}
	}
}

// Ids from a path that cannot be ids ("../x") are a 404, not a 503 from the store refusing the
// key; for every operation with an id in its path.
func TestSecurity_PathIDTraversal(t *testing.T) {
	tg := startTestGateway(t, Config{})
	for _, c := range []struct{ method, path, key, body string }{
		{"PATCH", "/v1/admin/tenants/..%2Fx", tg.adminKey, `{"tier":"basic"}`},
		{"PATCH", "/v1/admin/tenants/a.b", tg.adminKey, `{"suspended":true}`},
		{"DELETE", "/v1/admin/keys/..%2Fx", tg.adminKey, ""},
		{"DELETE", "/v1/keys/..%2F..", tg.key, ""},
		{"POST", "/v1/keys/a..b/rotate", tg.key, `{}`},
		{"GET", "/v1/modules/sha256:..%2Fx", tg.key, ""},
		{"DELETE", "/v1/modules/%2E%2E", tg.key, ""},
		{"GET", "/v1/executions/ex_..%2Fx", tg.key, ""},
	} {
		resp, body := tg.doBody(t, c.method, c.path, "Bearer "+c.key, c.body, "Content-Type", "application/json")
		if resp.StatusCode != 404 && resp.StatusCode != 400 {
			t.Errorf("%s %s: %d %s, want 404", c.method, c.path, resp.StatusCode, body)
		}
	}
}

// With MetricsAddr, /metrics moves to its own listener and the API port answers 404 there.
func TestGateway_MetricsListener(t *testing.T) {
	mln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tg := startTestGateway(t, Config{MetricsListener: mln})
	if resp, _ := tg.do(t, "GET", "/metrics", ""); resp.StatusCode != 404 {
		t.Errorf("/metrics on the API port: %d, want 404", resp.StatusCode)
	}
	resp, err := tg.client.Get("http://" + mln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "wasmwiz_") {
		t.Errorf("/metrics on the metrics listener: %d %.200s", resp.StatusCode, b)
	}
}

// With a certificate the API is served over TLS, with HSTS; a renewed certificate is picked
// up without a restart.
func TestGateway_TLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	pool := x509.NewCertPool()
	pool.AddCert(writeSelfSigned(t, certFile, keyFile, 1))
	tg := startTestGateway(t, Config{TLSCertFile: certFile, TLSKeyFile: keyFile})
	tg.url = "https://" + tg.addr
	tg.client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	resp, body := tg.do(t, "GET", "/v1/modules", "Bearer "+tg.key)
	if resp.StatusCode != 200 || resp.TLS == nil {
		t.Fatalf("over TLS: %d %s", resp.StatusCode, body)
	}
	if !strings.HasPrefix(resp.Header.Get("Strict-Transport-Security"), "max-age=") {
		t.Errorf("no HSTS over TLS: %v", resp.Header)
	}
	if resp.ProtoMajor != 2 {
		t.Errorf("protocol %s, want HTTP/2", resp.Proto)
	}
	plain := &http.Client{Timeout: 5 * time.Second}
	if resp, err := plain.Get("http://" + tg.addr + "/health/live"); err == nil {
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Errorf("plain HTTP on the TLS port: %d", resp.StatusCode)
		}
	}

	// Renewal: a new pair in the same files is served within the reload interval.
	renewed := writeSelfSigned(t, certFile, keyFile, 2)
	future := time.Now().Add(time.Minute)
	_ = os.Chtimes(certFile, future, future)
	tg.g.certs.mu.Lock()
	tg.g.certs.checked = time.Time{} // do not wait for the 10 s check interval
	tg.g.certs.mu.Unlock()
	pool.AddCert(renewed)
	conn, err := tls.Dial("tcp", tg.addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := conn.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(renewed.SerialNumber) != 0 {
		t.Errorf("served serial %v after renewal, want %v", got, renewed.SerialNumber)
	}
}

func writeSelfSigned(t *testing.T, certFile, keyFile string, serial int64) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "wasmwiz test " + strconv.FormatInt(serial, 10)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// /api/execute's form must arrive within its read timeout: a client that stops sending gets a
// 408 instead of holding the connection and its request slot.
func TestSecurity_CompatBodyReadTimeout(t *testing.T) {
	tg := startTestGateway(t, Config{ReadTimeout: 500 * time.Millisecond})
	tg.do(t, "GET", "/health/live", "")
	conn, err := net.Dial("tcp", tg.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	head := "POST /api/execute HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tg.key +
		"\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n--b\r\nContent-Disposition: form-data; name=\"wasm\"\r\n\r\n\x00asm"
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	// ... and nothing more. 10 s is far beyond the timeout.
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("stalled body: %d %s, want 408", resp.StatusCode, b)
	}
}

// ReadTimeout bounds reading a request, not answering it: an event stream (no body) outlives it
// several times over and keeps delivering.
func TestGateway_EventStreamOutlivesReadTimeout(t *testing.T) {
	const readTimeout = 200 * time.Millisecond
	tg := startTestGateway(t, Config{ReadTimeout: readTimeout})
	req, err := http.NewRequest("GET", tg.url+"/v1/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tg.key)
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("events: %d", resp.StatusCode)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	opened := time.Now()
	for i := 0; time.Since(opened) < 5*readTimeout; i++ {
		id := "test.event:" + strconv.Itoa(i)
		tg.g.publishEvent(context.Background(), schemas.EventModuleDeleted, "acme", id, func(e *schemas.Event) {
			e.Module = &schemas.ModuleEvent{ModuleID: "sha256:" + strings.Repeat("0", 64)}
		})
		deadline := time.After(10 * time.Second)
		for got := false; !got; {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("the stream ended %v after it opened (ReadTimeout %v), at event %d", time.Since(opened), readTimeout, i)
				}
				got = strings.HasPrefix(l, "data: ") && strings.Contains(l, id)
			case <-deadline:
				t.Fatalf("event %d not delivered", i)
			}
		}
	}
}
