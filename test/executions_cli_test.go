package test

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/wasmwiz/wasmwiz/internal/fixtures"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// cli runs the built wasmwiz binary and returns its stdout, stderr and exit code.
func cli(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	return cliIn(t, "", nil, args...)
}

// `wasmwiz version` names the toolchain and, for a binary built from a git checkout, the
// revision; `wasmwiz executions get|wait` read and wait for an async execution on a real system.
func TestDev_ExecutionsCLI(t *testing.T) {
	out, errOut, code := cli(t, "version")
	if code != 0 || !strings.HasPrefix(out, "wasmwiz ") || !strings.Contains(out, runtime.Version()) {
		t.Errorf("version: exit %d, %q %q", code, out, errOut)
	}
	out, _, _ = cli(t, "version", "--json")
	var v struct{ Version, Revision, Go string }
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Go != runtime.Version() || v.Version == "" {
		t.Errorf("version --json: %q %v", out, err)
	}
	// The same build information `go version -m` reads from the binary (the revision is there
	// only when the build stamped it: -buildvcs).
	info, err := exec.Command("go", "version", "-m", bin()).Output()
	if err != nil {
		t.Fatal(err)
	}
	wantRev := ""
	for _, l := range strings.Split(string(info), "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && f[0] == "mod" && f[1] == "github.com/wasmwiz/wasmwiz" && f[2] != v.Version {
			t.Errorf("version --json: %q, go version -m: %q", v.Version, f[2])
		}
		if len(f) == 2 && f[0] == "build" && strings.HasPrefix(f[1], "vcs.revision=") {
			wantRev = strings.TrimPrefix(f[1], "vcs.revision=")
		}
	}
	if v.Revision != wantRev {
		t.Errorf("version --json revision %q, go version -m %q", v.Revision, wantRev)
	}
	for _, sub := range []string{"get", "wait"} {
		if _, help, code := cli(t, "executions", sub, "-h"); code != 0 || !strings.Contains(help, "-url") {
			t.Errorf("executions %s -h: exit %d, %q", sub, code, help)
		}
	}

	s := startDev(t, filepath.Join(t.TempDir(), "wasmwiz-data"))
	auth := []string{"--url", s.URL, "--key", s.DevKey}
	hello := s.upload(t, s.DevKey, "hello", fixtures.Wasm("hello"))
	r, e := s.execute(t, s.DevKey, schemas.ExecutionRequest{ModuleID: hello.ID, Async: true})
	if r.Status != 202 {
		t.Fatalf("async execute: %d %s", r.Status, r.Body)
	}
	out, errOut, code = cli(t, append([]string{"executions", "wait", e.ID, "--timeout", "2m", "--json"}, auth...)...)
	var got schemas.Execution
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil || got.ID != e.ID || got.Status != schemas.StatusSucceeded || got.Stdout == "" {
		t.Fatalf("executions wait: exit %d, %v, %+v\n%s", code, err, got, errOut)
	}
	out, errOut, code = cli(t, append([]string{"executions", "get", e.ID, "--json"}, auth...)...)
	var again schemas.Execution
	if err := json.Unmarshal([]byte(out), &again); code != 0 || err != nil || again.ID != e.ID || again.Status != got.Status || again.Stdout != got.Stdout {
		t.Errorf("executions get: exit %d, %v, %+v\n%s", code, err, again, errOut)
	}
	if _, errOut, code := cli(t, append([]string{"executions", "get", "ex_nosuch"}, auth...)...); code != 1 || !strings.Contains(errOut, "404") {
		t.Errorf("executions get of an unknown id: exit %d, %q", code, errOut)
	}

	// A guest that loops until its 3 s wall limit: a 100 ms wait gives up and says so, exit 1;
	// a wait without a short timeout sees it end.
	loop := s.upload(t, s.DevKey, "loop", fixtures.Wasm("loop"))
	r, e = s.execute(t, s.DevKey, schemas.ExecutionRequest{ModuleID: loop.ID, Async: true, TimeoutMS: 3000})
	if r.Status != 202 {
		t.Fatalf("async execute: %d %s", r.Status, r.Body)
	}
	if out, errOut, code := cli(t, append([]string{"executions", "wait", e.ID, "--timeout", "100ms"}, auth...)...); code != 1 || !strings.Contains(errOut, "still") || out != "" {
		t.Errorf("executions wait --timeout 100ms on a looping guest: exit %d, %q %q", code, out, errOut)
	}
	out, errOut, code = cli(t, append([]string{"executions", "wait", e.ID, "--json"}, auth...)...)
	got = schemas.Execution{}
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil || !got.Status.Final() || got.Status == schemas.StatusSucceeded {
		t.Errorf("executions wait on the looping guest: exit %d, %v, %+v\n%s", code, err, got, errOut)
	}
}
