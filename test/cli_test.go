package test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/internal/fixtures"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// cliIn runs the wasmwiz binary in dir with extra environment; stdin is empty.
func cliIn(t *testing.T, dir string, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin(), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

// TestDev_CLIContexts uses the CLI as a person does: dev saves contexts, and every client
// command then works from another directory on dev's real port, with tables, --json, login,
// context switching and `--` before guest arguments (completion: completion_test.go).
func TestDev_CLIContexts(t *testing.T) {
	cfgDir := t.TempDir()
	env := []string{"WASMWIZ_CONFIG_DIR=" + cfgDir}
	s := startDevEnv(t, filepath.Join(t.TempDir(), "wasmwiz-data"), append(env, "WASMWIZ_SAVE_CONTEXT=true")...)
	home := t.TempDir() // no wasmwiz-data here: everything comes from the contexts
	for _, f := range []string{"hello", "exit7", "clock"} {
		if err := os.WriteFile(filepath.Join(home, f+".wasm"), fixtures.Wasm(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cli := func(args ...string) (string, string, int) { t.Helper(); return cliIn(t, home, env, args...) }

	out, errOut, code := cli("context", "list", "--json")
	var ctxs []struct {
		Name, URL string
		Current   bool
	}
	if err := json.Unmarshal([]byte(out), &ctxs); code != 0 || err != nil || len(ctxs) != 2 ||
		ctxs[0].Name != "dev" || !ctxs[0].Current || ctxs[0].URL != s.URL || ctxs[1].Name != "dev-admin" || ctxs[1].URL != s.URL {
		t.Fatalf("contexts saved by dev: exit %d %v\n%s%s", code, err, out, errOut)
	}
	if st, err := os.Stat(filepath.Join(cfgDir, "config.json")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("config.json: %v %v", st, err)
	}

	out, errOut, code = cli("modules", "upload", "hello.wasm")
	if code != 0 || !strings.HasPrefix(out, "ID ") || !strings.Contains(out, "sha256:") || !strings.Contains(out, "hello.wasm") {
		t.Fatalf("modules upload from another directory: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = cli("modules", "list", "--json")
	var ml schemas.ModuleList
	if err := json.Unmarshal([]byte(out), &ml); code != 0 || err != nil || len(ml.Modules) != 1 || ml.Modules[0].Name != "hello.wasm" {
		t.Errorf("modules list --json: exit %d %v\n%s%s", code, err, out, errOut)
	}
	if out, errOut, code = cli("keys", "tenants", "--context", "dev-admin"); code != 0 || !strings.Contains(out, "dev ") {
		t.Errorf("keys tenants --context dev-admin: exit %d\n%s%s", code, out, errOut)
	}
	if _, errOut, code = cli("keys", "tenants"); code != 1 || !strings.Contains(errOut, "403") {
		t.Errorf("keys tenants with tenant dev's key: exit %d %s", code, errOut)
	}
	// --url of an API no context knows: its key is not sent there.
	if _, errOut, code = cli("modules", "list", "--url", "http://127.0.0.1:1"); code != 2 || !strings.Contains(errOut, "no API key") {
		t.Errorf("--url without a context: exit %d %s", code, errOut)
	}

	// run: exit codes pass through, and after `--` a flag is the guest's.
	if _, errOut, code = cli("run", "exit7.wasm"); code != 7 {
		t.Errorf("run exit7.wasm: exit %d %s", code, errOut)
	}
	out, errOut, code = cli("run", "hello.wasm", "--", "--json")
	if code != 0 || out == "" || strings.HasPrefix(out, "{") {
		t.Errorf("run hello.wasm -- --json: the guest's output, not JSON: exit %d\n%s%s", code, out, errOut)
	}
	// --clock and --seed are the request's clock and seed: a JavaScript engine seeds Math.random
	// from the clock, so under the fixed clock its numbers repeat; --clock real varies them.
	clock := func(args ...string) (stamp, random string) {
		t.Helper()
		out, errOut, code := cli(append(append([]string{"run"}, args...), "clock.wasm")...)
		stamp, random, ok := strings.Cut(strings.TrimSpace(out), " ")
		if code != 0 || !ok {
			t.Fatalf("run %v clock.wasm: exit %d\n%s%s", args, code, out, errOut)
		}
		return stamp, random
	}
	fixed, _ := clock()
	if real, _ := clock("--clock", "real"); real <= fixed || real < fmt.Sprintf("%016x", time.Now().Add(-time.Hour).UnixNano()) {
		t.Errorf("run --clock real: wall clock %s, the fixed one %s", real, fixed)
	}
	if _, r1 := clock("--seed", "7"); func() bool { _, r2 := clock("--seed", "7"); return r1 != r2 }() {
		t.Errorf("run --seed 7 twice: other random bytes")
	}
	if _, errOut, code := cli("run", "--clock", "slow", "clock.wasm"); code != 2 || !strings.Contains(errOut, "fixed or real") {
		t.Errorf("run --clock slow: exit %d %s", code, errOut)
	}
	out, errOut, code = cli("run", "--async", "hello.wasm")
	var ex schemas.Execution
	if err := json.Unmarshal([]byte(out), &ex); code != 0 || err != nil || ex.ID == "" {
		t.Fatalf("run --async: exit %d %v\n%s%s", code, err, out, errOut)
	}
	out, errOut, code = cli("executions", "wait", ex.ID)
	if code != 0 || !strings.Contains(out, "STATUS       succeeded") || !strings.Contains(out, "--- stdout") {
		t.Errorf("executions wait, for people: exit %d\n%s%s", code, out, errOut)
	}

	// The operator commands dial NATS with the context's URL and identity: dev-admin's is the
	// admin role's, which reads the events; the current context dev's is tenant dev's, which
	// the servers refuse there (at once, not after a minute of retries); a flag's wins.
	out, errOut, code = cli("events", "tail", "--context", "dev-admin", "--follow=false", "--type", "execution.*")
	if code != 0 || !strings.Contains(out, `"execution_id":"`+ex.ID+`"`) {
		t.Errorf("events tail --context dev-admin: exit %d\n%s%s", code, out, errOut)
	}
	if out, errOut, code = cli("dlq", "list", "--context", "dev-admin"); code != 0 || !strings.Contains(out, "0 dead letters") {
		t.Errorf("dlq list --context dev-admin: exit %d\n%s%s", code, out, errOut)
	}
	if out, errOut, code = cli("accounting", "reconcile", "--context", "dev-admin", "--results=false"); code == 2 || !strings.Contains(out, "events ") {
		t.Errorf("accounting reconcile --context dev-admin: exit %d\n%s%s", code, out, errOut)
	}
	if _, errOut, code = cli("events", "tail", "--follow=false"); code != 1 || !strings.Contains(errOut, "context dev") ||
		!strings.Contains(errOut, "--context dev-admin") || strings.Contains(errOut, "no progress") {
		t.Errorf("events tail as tenant dev: exit %d %s", code, errOut)
	}
	adminSeed := filepath.Join(s.DataDir, "nats", "nats-admin.nk")
	if _, errOut, code = cli("dlq", "list", "--nats-nkey", adminSeed); code != 0 {
		t.Errorf("dlq list --nats-nkey (admin) with context dev's URL: exit %d %s", code, errOut)
	}

	// load finds the key of the context saved for its --url, too.
	if out, errOut, code = cli("load", "--url", s.URL, "--module", "hello.wasm", "--requests", "3", "--concurrency", "1"); code != 0 || !strings.Contains(out, "3 requests") {
		t.Errorf("load with the dev context's key: exit %d\n%s%s", code, out, errOut)
	}

	// login checks the key and makes a current context of it.
	out, errOut, code = cli("login", "--url", s.URL, "--key", s.DevKey, "--name", "mine")
	if code != 0 || !strings.Contains(out, "as tenant dev") {
		t.Errorf("login: exit %d\n%s%s", code, out, errOut)
	}
	if _, errOut, code = cli("login", "--url", s.URL, "--key", "ww_"+strings.Repeat("A", 43)+"_AAAAAA", "--name", "bad"); code != 1 || !strings.Contains(errOut, "refused the key") {
		t.Errorf("login with an unknown key: exit %d %s", code, errOut)
	}
	if out, _, _ = cli("context", "show"); !strings.Contains(out, "context  mine") {
		t.Errorf("context show after login:\n%s", out)
	}
	// login --nats-url saves a NATS identity with the context (after connecting with it).
	out, errOut, code = cli("login", "--url", s.URL, "--key", s.AdminKey, "--name", "ops", "--nats-url", s.NATSURL, "--nats-nkey", adminSeed)
	if code != 0 {
		t.Errorf("login --nats-url: exit %d\n%s%s", code, out, errOut)
	}
	if out, errOut, code = cli("dlq", "list"); code != 0 || !strings.Contains(out, "0 dead letters") {
		t.Errorf("dlq list with context ops: exit %d\n%s%s", code, out, errOut)
	}
	if _, errOut, code = cli("login", "--url", s.URL, "--key", s.AdminKey, "--name", "ops2", "--nats-url", "nats://127.0.0.1:1"); code != 1 || !strings.Contains(errOut, "connect to NATS") {
		t.Errorf("login with a NATS URL nothing listens on: exit %d %s", code, errOut)
	}
}
