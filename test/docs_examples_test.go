package test

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/wasmwiz/wasmwiz/internal/fixtures"
)

// TestDocs_Examples sends every curl example of the /docs overview (the OpenAPI description,
// gateway/docsassets/overview.md), as written, to a real wasmwiz dev with sh and curl, and checks
// the status the example promises (its "# → NNN" comment) and what the prose around it says.
func TestDocs_Examples(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("no curl on PATH")
		}
		t.Skip("no curl on PATH")
	}
	s := startDev(t, t.TempDir())
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "echo.wasm"), fixtures.Wasm("echo"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := s.do(t, http.MethodGet, "/openapi.json", "", "", nil)
	var doc struct {
		Info struct{ Description string } `json:"info"`
	}
	r.decode(t, &doc)
	md := doc.Info.Description
	if !strings.Contains(md, "## Idempotency") {
		t.Fatalf("the served OpenAPI description is not the overview:\n%s", md)
	}

	env := append(os.Environ(), "U="+s.URL, "KEY="+s.DevKey)
	blocks := regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(md, -1)
	statusRE := regexp.MustCompile(`\s+#\s*→\s*(\d{3})\s*$`)
	idRE := regexp.MustCompile(`"id":"(ex_[0-9a-z]+)"`)
	ran := 0
	var idempotent []string
	for _, b := range blocks {
		for _, line := range strings.Split(b[1], "\n") {
			if m := regexp.MustCompile(`^MOD=(\S+)`).FindStringSubmatch(line); m != nil {
				// The module id the overview names is the id of its upload: the same bytes, the same id.
				up := s.upload(t, s.DevKey, "echo", fixtures.Wasm("echo"))
				if m[1] != up.ID {
					t.Errorf("the overview's MOD is %s, the upload's id %s", m[1], up.ID)
				}
				env = append(env, "MOD="+up.ID)
				continue
			}
			if !strings.HasPrefix(line, "curl ") {
				continue
			}
			m := statusRE.FindStringSubmatch(line)
			if m == nil {
				t.Errorf("example without its status (# → NNN): %s", line)
				continue
			}
			cmdline := statusRE.ReplaceAllString(line, "") + ` -w '\n%{http_code}'`
			cmd := exec.Command("sh", "-c", cmdline)
			cmd.Dir, cmd.Env = dir, env
			out, err := cmd.Output()
			if err != nil {
				t.Errorf("%s: %v\n%s", line, err, out)
				continue
			}
			ran++
			text := strings.TrimRight(string(out), "\n")
			status := text[strings.LastIndex(text, "\n")+1:]
			body := strings.TrimSuffix(text, status)
			if status != m[1] {
				t.Errorf("%s\nanswered %s, the overview says %s:\n%s", line, status, m[1], body)
				continue
			}
			if id := idRE.FindStringSubmatch(body); id != nil {
				if strings.Contains(line, `"async":true`) {
					env = append(env, "EX="+id[1])
				}
				if strings.Contains(line, "Idempotency-Key") {
					idempotent = append(idempotent, id[1])
				}
			}
			if strings.Contains(line, "timeout_ms") {
				var p struct{ Code, Detail string }
				_ = json.Unmarshal([]byte(body), &p)
				if want := `"code":"` + p.Code + `","detail":"` + p.Detail + `"`; p.Code != "invalid" || !strings.Contains(md, want) {
					t.Errorf("the 422 example answered %s; the overview does not quote it (%s)", body, want)
				}
			}
			if strings.Contains(line, " -i ") && !strings.Contains(strings.ToLower(body), "ratelimit-remaining:") {
				t.Errorf("the rate-limit example's answer has no RateLimit-Remaining:\n%s", body)
			}
		}
	}
	if ran < 12 {
		t.Errorf("ran %d examples; the overview has more", ran)
	}
	if len(idempotent) != 2 || idempotent[0] != idempotent[1] {
		t.Errorf("the idempotent retries answered executions %v, want the same one twice", idempotent)
	}
}
