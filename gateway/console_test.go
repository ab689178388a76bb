package gateway

import (
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// /console is served from the binary with a strict CSP: only its own scripts, styles and API
// calls, no inline code, Trusted Types; every asset it references is served, nothing else is.
func TestConsole_Served(t *testing.T) {
	tg := startTestGateway(t, Config{})
	resp, body := tg.do(t, "GET", "/console", "")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /console: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'", "require-trusted-types-for 'script'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe") || strings.Contains(csp, "http") {
		t.Errorf("CSP %q allows inline code or another origin", csp)
	}
	html := string(body)
	if regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`).MatchString(html) || strings.Contains(html, " style=") || regexp.MustCompile(`\son[a-z]+=`).MatchString(html) {
		t.Error("/console has an inline script, style or event handler")
	}
	refs := regexp.MustCompile(`(?:src|href)="([^"]+)"`).FindAllStringSubmatch(html, -1)
	if len(refs) < 3 {
		t.Fatalf("/console references %d assets", len(refs))
	}
	for _, m := range refs {
		ref, err := url.Parse(m[1])
		if err != nil || ref.IsAbs() || !strings.HasPrefix(ref.Path, "/console/assets/") {
			t.Errorf("/console references %q, want one of its own assets", m[1])
			continue
		}
		r, b := tg.do(t, "GET", ref.RequestURI(), "")
		if r.StatusCode != 200 || len(b) < 100 {
			t.Errorf("GET %s: %d, %d bytes", m[1], r.StatusCode, len(b))
		}
		if strings.HasSuffix(ref.Path, ".js") {
			// Modules import each other by relative path; those must be served too.
			for _, imp := range regexp.MustCompile(`from "\./([a-z]+\.js)"`).FindAllStringSubmatch(string(b), -1) {
				if r, _ := tg.do(t, "GET", "/console/assets/"+imp[1], ""); r.StatusCode != 200 || !strings.Contains(r.Header.Get("Content-Type"), "javascript") {
					t.Errorf("GET /console/assets/%s (imported by %s): %d %s", imp[1], m[1], r.StatusCode, r.Header.Get("Content-Type"))
				}
			}
			if strings.Contains(string(b), "innerHTML") || strings.Contains(string(b), "eval(") {
				t.Errorf("%s uses innerHTML or eval", m[1])
			}
		}
	}
	for _, p := range []string{"/console/assets/", "/console/assets/missing.js", "/console/assets/index.html", "/console/assets/../console.go"} {
		if r, _ := tg.do(t, "GET", p, ""); r.StatusCode != 404 && r.StatusCode != 301 {
			t.Errorf("GET %s: %d, want 404", p, r.StatusCode)
		}
	}
}
