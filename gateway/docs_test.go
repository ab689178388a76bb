package gateway

import (
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// /docs works offline: the page references only assets the gateway serves itself (embedded in
// the binary), names no http(s) URL elsewhere, and its CSP allows nothing but 'self'.
func TestDocs_Offline(t *testing.T) {
	tg := startTestGateway(t, Config{})
	resp, body := tg.do(t, "GET", "/docs", "")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /docs: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	html := string(body)
	self, _ := url.Parse(tg.url)
	for _, u := range regexp.MustCompile(`(?i)(?:https?:)?//[^\s"'<>)]+`).FindAllString(html, -1) {
		if p, err := url.Parse(u); err != nil || p.Host != self.Host {
			t.Errorf("/docs references %q outside the server", u)
		}
	}
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"script-src 'self'", "frame-ancestors 'none'", "default-src 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "http") {
		t.Errorf("CSP %q allows an external origin", csp)
	}

	refs := regexp.MustCompile(`(?:src|href|apiDescriptionUrl)="([^"]+)"`).FindAllStringSubmatch(html, -1)
	wantTypes := map[string]string{".js": "javascript", ".css": "text/css", ".yaml": "yaml"}
	seen := map[string]bool{}
	for _, m := range refs {
		ref, err := url.Parse(m[1])
		if err != nil || ref.IsAbs() || !strings.HasPrefix(ref.Path, "/") {
			t.Errorf("/docs references %q, want a path on this server", m[1])
			continue
		}
		r, b := tg.do(t, "GET", ref.RequestURI(), "")
		if r.StatusCode != 200 || len(b) < 100 {
			t.Errorf("GET %s (referenced by /docs): %d, %d bytes", m[1], r.StatusCode, len(b))
		}
		for ext, ct := range wantTypes {
			if strings.HasSuffix(ref.Path, ext) {
				seen[ext] = true
				if !strings.Contains(r.Header.Get("Content-Type"), ct) {
					t.Errorf("GET %s: Content-Type %q, want %s", m[1], r.Header.Get("Content-Type"), ct)
				}
			}
		}
	}
	for ext := range wantTypes {
		if !seen[ext] {
			t.Errorf("/docs references no %s asset: %s", ext, html)
		}
	}
	// The asset route serves only the vendored files, with problem+json for the rest.
	for _, p := range []string{"/docs/assets/", "/docs/assets/missing.js", "/docs/assets/../server.go"} {
		if r, _ := tg.do(t, "GET", p, ""); r.StatusCode != 404 && r.StatusCode != 301 {
			t.Errorf("GET %s: %d, want 404", p, r.StatusCode)
		}
	}
}
