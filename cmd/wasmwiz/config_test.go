package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestContexts_Resolve(t *testing.T) {
	dir := t.TempDir()
	env := envOf(map[string]string{"WASMWIZ_CONFIG_DIR": dir})
	// No contexts: the default URL, and no key (this test's directory has no wasmwiz-data).
	if _, err := resolveTarget(env, "", "", ""); err == nil || !strings.Contains(err.Error(), "wasmwiz login") {
		t.Errorf("no context, no key: %v", err)
	}
	if tg, err := resolveTarget(env, "", "k0", ""); err != nil || tg.URL != defaultAPIURL || tg.Key != "k0" || tg.Context != "" {
		t.Errorf("--key only: %+v %v", tg, err)
	}
	if _, err := saveContext(env, "prod", cliContext{URL: "https://api.example.com", Key: "kp"}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := saveContext(env, "local", cliContext{URL: "http://127.0.0.1:8181", Key: "kl"}, false); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name               string
		url, key, ctx      string
		wantURL, wantKey   string
		wantCtx, wantError string
	}{
		{name: "the first saved context became current", wantURL: "https://api.example.com", wantKey: "kp", wantCtx: "prod"},
		{name: "--context", ctx: "local", wantURL: "http://127.0.0.1:8181", wantKey: "kl", wantCtx: "local"},
		{name: "--key overrides the context's", key: "mine", wantURL: "https://api.example.com", wantKey: "mine", wantCtx: "prod"},
		{name: "--url of a saved context takes its key", url: "http://127.0.0.1:8181/", wantURL: "http://127.0.0.1:8181/", wantKey: "kl", wantCtx: "local"},
		{name: "--url of no context: no key is sent there", url: "http://elsewhere:9", wantError: "no API key"},
		{name: "--url and --key", url: "http://elsewhere:9", key: "k", wantURL: "http://elsewhere:9", wantKey: "k"},
		{name: "--context with another --url keeps the context's key to itself", ctx: "prod", url: "http://elsewhere:9", wantError: "no API key"},
		{name: "unknown context", ctx: "nope", wantError: `no context "nope"`},
	} {
		tg, err := resolveTarget(env, tc.url, tc.key, tc.ctx)
		if tc.wantError != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantError) {
				t.Errorf("%s: %+v %v, want an error with %q", tc.name, tg, err, tc.wantError)
			}
			continue
		}
		if err != nil || tg.URL != tc.wantURL || tg.Key != tc.wantKey || tg.Context != tc.wantCtx {
			t.Errorf("%s: %+v %v; want %s %s %q", tc.name, tg, err, tc.wantURL, tc.wantKey, tc.wantCtx)
		}
	}

	// The file holds keys: 0600 in a 0700 directory.
	st, err := os.Stat(filepath.Join(dir, "config.json"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("config.json: %v %v", st.Mode(), err)
	}
	sub := filepath.Join(dir, "new")
	if _, err := saveContext(envOf(map[string]string{"WASMWIZ_CONFIG_DIR": sub}), "x", cliContext{URL: "http://a:1", Key: "k"}, true); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(sub); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("config dir: %v %v", st.Mode(), err)
	}
	// XDG_CONFIG_HOME is honoured when WASMWIZ_CONFIG_DIR is not set.
	if d, _ := configDir(envOf(map[string]string{"XDG_CONFIG_HOME": "/x"})); d != "/x/wasmwiz" {
		t.Errorf("configDir with XDG_CONFIG_HOME: %s", d)
	}
}

// wasmwiz context list|use|remove|show, as a person and a script see them.
func TestContexts_Command(t *testing.T) {
	env := envOf(map[string]string{"WASMWIZ_CONFIG_DIR": t.TempDir()})
	cli := func(args ...string) (string, string, int) {
		var out, errOut bytes.Buffer
		code := run(context.Background(), args, env, &out, &errOut)
		return out.String(), errOut.String(), code
	}
	if _, err := saveContext(env, "a", cliContext{URL: "http://127.0.0.1:1", Key: "ww_secretsecretsecret"}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := saveContext(env, "b", cliContext{URL: "http://127.0.0.1:2", Key: "ww_othersecretsecret"}, false); err != nil {
		t.Fatal(err)
	}
	out, _, code := cli("context", "list")
	if code != 0 || !strings.Contains(out, "*        a") || !strings.Contains(out, "http://127.0.0.1:2") || strings.Contains(out, "secretsecret") {
		t.Errorf("context list: %d\n%s", code, out)
	}
	if _, _, code := cli("context", "use", "b"); code != 0 {
		t.Fatalf("context use b: %d", code)
	}
	out, _, _ = cli("context", "list", "--json")
	var rows []struct {
		Name    string
		URL     string
		Current bool
	}
	if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != 2 || rows[0].Current || !rows[1].Current || strings.Contains(out, "secretsecret") {
		t.Errorf("context list --json after use b: %v\n%s", err, out)
	}
	if out, _, code := cli("context", "show"); code != 0 || !strings.Contains(out, "http://127.0.0.1:2") || !strings.Contains(out, "context  b") {
		t.Errorf("context show: %d\n%s", code, out)
	}
	if _, errOut, code := cli("context", "use", "zzz"); code != 2 || !strings.Contains(errOut, `no context "zzz"`) {
		t.Errorf("context use of an unknown name: %d %s", code, errOut)
	}
	if _, _, code := cli("context", "remove", "b"); code != 0 {
		t.Fatalf("context remove b: %d", code)
	}
	out, _, _ = cli("context", "list")
	if strings.Contains(out, "127.0.0.1:2") || strings.Contains(out, "*") {
		t.Errorf("after remove b (the current one), no context is current and b is gone:\n%s", out)
	}
}

func TestRun_SplitArgs(t *testing.T) {
	for _, tc := range []struct {
		in     []string
		module string
		guest  []string
		ok     bool
	}{
		{[]string{"m.wasm"}, "m.wasm", []string{}, true},
		{[]string{"m.wasm", "a", "b"}, "m.wasm", []string{"a", "b"}, true},
		{[]string{"m.wasm", "--", "-v", "--json"}, "m.wasm", []string{"-v", "--json"}, true},
		{[]string{"m.wasm", "--", "--", "x"}, "m.wasm", []string{"--", "x"}, true},
		{[]string{"m.wasm", "a", "--", "b"}, "m.wasm", []string{"a", "--", "b"}, true},
		{nil, "", nil, false},
	} {
		m, g, ok := splitRunArgs(tc.in)
		if m != tc.module || ok != tc.ok || (ok && !slices.Equal(g, tc.guest)) {
			t.Errorf("splitRunArgs(%q) = %q %q %v", tc.in, m, g, ok)
		}
	}
	// Through the flag parser: "run -- m.wasm x" ends the flags before the module.
	fs := newFlagSet("run", envOf(nil), &bytes.Buffer{})
	_ = fs.Bool("json", false, "")
	if err := fs.Parse([]string{"--json", "--", "m.wasm", "--", "x"}); err != nil {
		t.Fatal(err)
	}
	if m, g, _ := splitRunArgs(fs.Args()); m != "m.wasm" || !slices.Equal(g, []string{"x"}) {
		t.Errorf("after the parser: %q %q", m, g)
	}
}

func TestCompletion_Candidates(t *testing.T) {
	env := envOf(map[string]string{"WASMWIZ_CONFIG_DIR": t.TempDir()})
	if _, err := saveContext(env, "staging", cliContext{URL: "http://s:1", Key: "k"}, false); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		words []string
		want  []string // each must be offered
		not   []string // none of these may be
	}{
		{[]string{"mo"}, []string{"modules"}, []string{"run"}},
		{[]string{""}, []string{"run", "dev", "login", "context", "completion"}, []string{"__complete", "worker"}},
		{[]string{"modules", ""}, []string{"upload", "list", "get", "delete"}, nil},
		{[]string{"modules", "list", "--j"}, []string{"--json"}, []string{"--url"}},
		{[]string{"run", "--"}, []string{"--stdin", "--json", "--url", "--key", "--context", "--mount"}, nil},
		{[]string{"dev", "--save"}, []string{"--save-context"}, nil},
		{[]string{"context", "use", ""}, []string{"staging"}, nil},
		{[]string{"keys", "list", "--context", "st"}, []string{"staging"}, nil},
		{[]string{"completion", ""}, []string{"bash", "zsh"}, nil},
		{[]string{"run", "prog.wasm"}, nil, []string{"prog.wasm"}}, // files: left to the shell
	} {
		var out bytes.Buffer
		if code := run(context.Background(), append([]string{"__complete"}, tc.words...), env, &out, &out); code != 0 {
			t.Fatalf("__complete %q: exit %d", tc.words, code)
		}
		got := strings.Fields(out.String())
		for _, w := range tc.want {
			if !slices.Contains(got, w) {
				t.Errorf("__complete %q: %q missing from %q", tc.words, w, got)
			}
		}
		for _, w := range tc.not {
			if slices.Contains(got, w) {
				t.Errorf("__complete %q: %q offered: %q", tc.words, w, got)
			}
		}
	}
	for _, shell := range []string{"bash", "zsh"} {
		var out bytes.Buffer
		if code := run(context.Background(), []string{"completion", shell}, env, &out, &out); code != 0 || !strings.Contains(out.String(), "__complete") {
			t.Errorf("completion %s: exit %d\n%s", shell, code, out.String())
		}
	}
}

// Every command and subcommand answers -h with its usage, exit 0, and runs nothing.
func TestHelp_EveryCommand(t *testing.T) {
	env := envOf(map[string]string{"WASMWIZ_CONFIG_DIR": t.TempDir()})
	for _, cmd := range slices.Sorted(mapKeys(commandTree)) {
		paths := [][]string{{cmd}}
		for _, sub := range commandTree[cmd] {
			paths = append(paths, []string{cmd, sub})
		}
		for _, p := range paths {
			var out bytes.Buffer
			code := run(context.Background(), append(slices.Clone(p), "-h"), env, &out, &out)
			if code != 0 || !strings.Contains(strings.ToLower(out.String()), "usage") {
				t.Errorf("wasmwiz %s -h: exit %d\n%s", strings.Join(p, " "), code, out.String())
			}
		}
	}
}

// The progress line counts what the upload has read, then says what the server is doing; off a
// terminal there is none.
func TestProgress_Line(t *testing.T) {
	if p := startProgress(&bytes.Buffer{}, "m.wasm", 10, "compiling"); p != nil {
		t.Fatal("a progress line on a buffer, not a terminal")
	}
	p := &progress{label: "m.wasm", after: "compiling", total: 3 << 20}
	r := p.reader(bytes.NewReader(make([]byte, 3<<20)))
	if _, err := r.Read(make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	if got := p.line(); got != "m.wasm: uploading 1.0 MiB / 3.0 MiB (33%)" {
		t.Errorf("after 1 MiB: %q", got)
	}
	if _, err := io.ReadAll(r); err != nil {
		t.Fatal(err)
	}
	if got := p.line(); !strings.HasPrefix(got, "m.wasm: uploaded 3.0 MiB; compiling… ") {
		t.Errorf("after all of it: %q", got)
	}
}

// dev points dev and dev-admin at its URL, and takes the current context only when there is none.
func TestContexts_DevSaves(t *testing.T) {
	dir := t.TempDir()
	env := envOf(map[string]string{"WASMWIZ_CONFIG_DIR": filepath.Join(dir, "cfg")})
	devKey, adminKey := filepath.Join(dir, "dev-api-key"), filepath.Join(dir, "admin-api-key")
	if err := os.WriteFile(devKey, []byte("ww_dev\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(adminKey, []byte("ww_admin\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, cur, err := saveDevContexts(env, "http://127.0.0.1:1234", devKey, adminKey, "nats://127.0.0.1:5678", filepath.Join(dir, "nats")); err != nil || cur != "dev" {
		t.Fatalf("first dev: current %q, %v", cur, err)
	}
	if _, err := saveContext(env, "prod", cliContext{URL: "https://p", Key: "kp"}, true); err != nil {
		t.Fatal(err)
	}
	// A restart on another port updates both, and leaves prod current.
	if _, cur, err := saveDevContexts(env, "http://127.0.0.1:4321", devKey, adminKey, "nats://127.0.0.1:8765", filepath.Join(dir, "nats")); err != nil || cur != "prod" {
		t.Fatalf("dev after login: current %q, %v", cur, err)
	}
	if tg, err := resolveTarget(env, "", "", "dev-admin"); err != nil || tg.URL != "http://127.0.0.1:4321" || tg.Key != "ww_admin" {
		t.Errorf("dev-admin after the restart: %+v %v", tg, err)
	}
	if tg, err := resolveTarget(env, "http://127.0.0.1:4321", "", ""); err != nil || tg.Key != "ww_dev" || tg.Context != "dev" {
		t.Errorf("--url of dev's API: %+v %v", tg, err)
	}
	// NATS: the new port, and the admin role's seed for dev-admin, tenant dev's for dev.
	cfg, err := loadConfig(filepath.Join(dir, "cfg"))
	if err != nil {
		t.Fatal(err)
	}
	for name, seed := range map[string]string{"dev": "nats-tenant-dev.nk", "dev-admin": "nats-admin.nk"} {
		if n := cfg.Contexts[name].NATS; n == nil || n.URL != "nats://127.0.0.1:8765" || n.NKey != filepath.Join(dir, "nats", seed) {
			t.Errorf("context %s: NATS %+v", name, n)
		}
	}
}

// The operator commands' NATS URL and identity: flags and environment first, else the context's,
// whose identity is only offered to its own NATS URL.
func TestContexts_OperatorNATS(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"WASMWIZ_CONFIG_DIR": dir}
	resolve := func(args ...string) (*opsNATS, string, error) {
		t.Helper()
		fs := newFlagSet("events tail", envOf(env), io.Discard)
		o := opsNATSFlags(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		url, err := o.resolve()
		return o, url, err
	}
	// No context: the default URL, no identity.
	if o, url, err := resolve(); err != nil || url != nats.DefaultURL || *o.auth.nkey != "" || o.from != "" {
		t.Errorf("no context: %q nkey %q from %q %v", url, *o.auth.nkey, o.from, err)
	}
	ops := &natsContext{URL: "nats://10.0.0.1:4222", NKey: "/s/admin.nk", TLSCA: "/s/ca.pem"}
	if _, err := saveContext(envOf(env), "ops", cliContext{URL: "https://api", Key: "k", NATS: ops}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := saveContext(envOf(env), "plain", cliContext{URL: "https://api2", Key: "k2"}, false); err != nil {
		t.Fatal(err)
	}
	o, url, err := resolve()
	if err != nil || url != ops.URL || *o.auth.nkey != ops.NKey || *o.auth.tlsCA != ops.TLSCA || o.from != "ops" {
		t.Errorf("current context: %q nkey %q ca %q from %q %v", url, *o.auth.nkey, *o.auth.tlsCA, o.from, err)
	}
	// The same URL given: the context's identity still; another URL: none of it.
	if o, url, err := resolve("--nats-url", ops.URL+"/"); err != nil || url != ops.URL+"/" || *o.auth.nkey != ops.NKey {
		t.Errorf("--nats-url of the context: %q nkey %q %v", url, *o.auth.nkey, err)
	}
	if o, url, err := resolve("--nats-url", "nats://evil:4222"); err != nil || url != "nats://evil:4222" || *o.auth.nkey != "" || *o.auth.tlsCA != "" || o.from != "" {
		t.Errorf("--nats-url of another server: %q nkey %q ca %q from %q %v", url, *o.auth.nkey, *o.auth.tlsCA, o.from, err)
	}
	// A flag's (or variable's) identity wins, and the context's TLS stays.
	env["WASMWIZ_NATS_CREDS"] = "/mine.creds"
	if o, url, err := resolve(); err != nil || url != ops.URL || *o.auth.nkey != "" || *o.auth.creds != "/mine.creds" || *o.auth.tlsCA != ops.TLSCA || o.from != "" {
		t.Errorf("$WASMWIZ_NATS_CREDS: %q nkey %q creds %q ca %q from %q %v", url, *o.auth.nkey, *o.auth.creds, *o.auth.tlsCA, o.from, err)
	}
	delete(env, "WASMWIZ_NATS_CREDS")
	// --context picks another; one without NATS settings needs --nats-url.
	if _, _, err := resolve("--context", "plain"); err == nil || !strings.Contains(err.Error(), "no NATS settings") {
		t.Errorf("--context plain: %v", err)
	}
	if o, url, err := resolve("--context", "plain", "--nats-url", "nats://n:1"); err != nil || url != "nats://n:1" || *o.auth.nkey != "" {
		t.Errorf("--context plain --nats-url: %q %q %v", url, *o.auth.nkey, err)
	}
	if _, _, err := resolve("--context", "nope"); err == nil || !strings.Contains(err.Error(), `no context "nope"`) {
		t.Errorf("--context nope: %v", err)
	}
	// load --nats finds the context saved for its URL.
	if c, ok := contextForNATS(envOf(env), ops.URL); !ok || c.Key != "k" || c.NATS.NKey != ops.NKey {
		t.Errorf("contextForNATS: %+v %v", c, ok)
	}
	if _, ok := contextForNATS(envOf(env), "nats://other:4222"); ok {
		t.Error("contextForNATS of an unknown URL found one")
	}
}
