package test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/wasmwiz/wasmwiz/internal/fixtures"
)

// requireNode skips a test that needs node and npm where they are missing, except in CI (CI
// set), where it fails: .ci/run installs Debian's nodejs and npm.
func requireNode(t *testing.T) {
	t.Helper()
	for _, cmd := range []string{"node", "npm"} {
		if _, err := exec.LookPath(cmd); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s not found: CI must run the TypeScript client's tests (.ci/run installs Debian's nodejs and npm)", cmd)
			}
			t.Skipf("%s not found (apt-get install nodejs npm)", cmd)
		}
	}
}

var (
	tsOnce sync.Once
	tsErr  string
)

// buildTypeScript installs the pinned packages of the TypeScript client and of its example
// (npm ci, from their package-lock.json files) and compiles both with tsc; the compile is also
// the check that the example uses the generated types as they are.
func buildTypeScript(t *testing.T) {
	t.Helper()
	requireNode(t)
	tsOnce.Do(func() {
		for _, step := range []struct{ dir, cmd string }{
			{"../clients/typescript", "npm ci --no-audit --no-fund"},
			{"../clients/typescript", "npm run -s build"},
			{"../examples/clients/typescript", "npm ci --no-audit --no-fund"},
			{"../examples/clients/typescript", "npm run -s build"},
		} {
			f := strings.Fields(step.cmd)
			cmd := exec.Command(f[0], f[1:]...)
			cmd.Dir = step.dir
			if out, err := cmd.CombinedOutput(); err != nil {
				tsErr = step.dir + ": " + step.cmd + ": " + err.Error() + "\n" + string(out)
				return
			}
		}
	})
	if tsErr != "" {
		t.Fatal(tsErr)
	}
}

// TestTypeScriptClient_UpToDate regenerates the TypeScript client's types from the OpenAPI
// snapshot with the pinned openapi-typescript and fails when they differ from the committed
// src/schema.ts (the Go client's drift test is clients/go TestGenerated_UpToDate).
func TestTypeScriptClient_UpToDate(t *testing.T) {
	buildTypeScript(t)
	cmd := exec.Command("npm", "run", "-s", "check-generated")
	cmd.Dir = "../clients/typescript"
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}

// TestDev_Clients drives a real wasmwiz dev with the clients generated from the contract: the
// CLI's commands (which call the API through clients/go), and the Go and TypeScript client
// examples, each uploading a module, running it sync and async, listing keys and reading a
// problem+json error.
func TestDev_Clients(t *testing.T) {
	s := startDev(t, filepath.Join(t.TempDir(), "wasmwiz-data"))
	wasm := filepath.Join(t.TempDir(), "echo.wasm")
	if err := os.WriteFile(wasm, fixtures.Wasm("echo"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "WASMWIZ_URL="+s.URL, "WASMWIZ_KEY="+s.DevKey)

	t.Run("cli", func(t *testing.T) {
		auth := []string{"--url", s.URL, "--key", s.DevKey}
		out, errOut, code := cli(t, append([]string{"modules", "upload", wasm, "--name", "echo-cli", "--json"}, auth...)...)
		var m struct{ ID, Name string }
		if err := json.Unmarshal([]byte(out), &m); code != 0 || err != nil || !strings.HasPrefix(m.ID, "sha256:") || m.Name != "echo-cli" {
			t.Fatalf("modules upload: exit %d, %v, %q %q", code, err, out, errOut)
		}
		if out, errOut, code := cli(t, append([]string{"modules", "list"}, auth...)...); code != 0 || !strings.Contains(out, m.ID) {
			t.Errorf("modules list: exit %d, %q %q", code, out, errOut)
		}
		if out, errOut, code := cli(t, append([]string{"modules", "get", m.ID, "--json"}, auth...)...); code != 0 || !strings.Contains(out, `"echo-cli"`) {
			t.Errorf("modules get: exit %d, %q %q", code, out, errOut)
		}
		if out, errOut, code := cli(t, append(append([]string{"run"}, auth...), "--stdin", "from the CLI", m.ID)...); code != 0 || out != "from the CLI" {
			t.Errorf("run: exit %d, %q %q", code, out, errOut)
		}
		exit7 := filepath.Join(t.TempDir(), "exit7.wasm")
		if err := os.WriteFile(exit7, fixtures.Wasm("exit7"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, errOut, code := cli(t, append(append([]string{"run"}, auth...), exit7)...); code != 7 || !strings.Contains(errOut, "exit code 7") {
			t.Errorf("run of a module exiting 7: exit %d, %q", code, errOut)
		}
		if out, errOut, code := cli(t, append([]string{"modules", "delete", m.ID}, auth...)...); code != 0 || !strings.Contains(out, "deleted") {
			t.Errorf("modules delete: exit %d, %q %q", code, out, errOut)
		}
		if _, errOut, code := cli(t, append([]string{"modules", "get", m.ID}, auth...)...); code != 1 || !strings.Contains(errOut, "404 not_found") {
			t.Errorf("modules get after delete: exit %d, %q", code, errOut)
		}
	})

	t.Run("go", func(t *testing.T) {
		exe := filepath.Join(t.TempDir(), "example")
		if out, err := exec.Command("go", "build", "-o", exe, "../examples/clients/go").CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
		cmd := exec.Command(exe, wasm, "hello from Go")
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		checkExampleOutput(t, string(out), "hello from Go")
	})

	t.Run("typescript", func(t *testing.T) {
		buildTypeScript(t)
		cmd := exec.Command("node", "dist/main.js", wasm, "hello from TypeScript")
		cmd.Dir = "../examples/clients/typescript"
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		checkExampleOutput(t, string(out), "hello from TypeScript")
	})
}

// checkExampleOutput checks what a client example printed (both print the same lines).
func checkExampleOutput(t *testing.T, out, stdin string) {
	t.Helper()
	q, _ := json.Marshal(stdin)
	for _, want := range []string{
		`(?m)^uploaded echo\.wasm: sha256:[0-9a-f]{64} \(\d+ bytes, `,
		`(?m)^sync ex_\w+: succeeded, exit 0, .* stdout ` + regexp.QuoteMeta(string(q)) + `$`,
		`(?m)^async (ex_\w+): HTTP 202, (queued|running|succeeded), Location /v1/executions/ex_\w+$`,
		`(?m)^async ex_\w+: succeeded, exit 0, stdout ` + regexp.QuoteMeta(string(q)) + `$`,
		`(?m)^key key_\w+: ww_\w+…, tier pro`,
		`(?m)^unknown execution: 404 not_found$`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("no line matching %s in:\n%s", want, out)
		}
	}
}
