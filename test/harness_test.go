// Package test holds WasmWiz's end-to-end tests: the real wasmwiz binary, started as real
// processes (dev mode, or the roles apart against embedded nats-servers), driven over REST and
// NATS exactly as users do.
package test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmwiz/wasmwiz/internal/natstest"
	"github.com/wasmwiz/wasmwiz/schemas"
)

var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "wasmwiz-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "wasmwiz")
	// Every wasmwiz the tests start keeps its client contexts here, never in the user's config
	// directory, and dev saves none unless a test asks (TestDev_Contexts).
	os.Setenv("WASMWIZ_CONFIG_DIR", filepath.Join(dir, "config"))
	os.Setenv("WASMWIZ_SAVE_CONTEXT", "false")
	// The slim worker binary beside it, as installed: executors start it as their workers.
	build := exec.Command("go", "build", "-o", dir, "../cmd/wasmwiz", "../cmd/wasmwiz-worker")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build wasmwiz:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// bin is the wasmwiz binary built for this run. Its first use looks at every file the binary is
// built from: go test caches a passing run keyed on the files the tests opened or looked at
// (from m.Run on), and the build is another process, so without this a change to the binary's
// sources would leave a stale "(cached)" pass.
func bin() string {
	sourcesOnce.Do(statSources)
	return binPath
}

var sourcesOnce sync.Once

func statSources() {
	_ = filepath.WalkDir("..", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() {
			if name := d.Name(); path != ".." && (strings.HasPrefix(name, ".") || name == "testdata" || name == "deploy" || name == "docs" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		switch filepath.Ext(path) {
		case ".go", ".mod", ".sum", ".wat", ".wasm", ".sql":
			_, _ = os.Stat(path)
		}
		return nil
	})
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// proc is a running wasmwiz process whose output is kept for failure reports.
type proc struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
	err  error
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// start runs the binary with args and env; it is stopped (SIGTERM, then SIGKILL) when the test ends.
func start(t testing.TB, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin(), args...), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop(t)
		if line := natsRefusal(p.output()); line != "" {
			t.Errorf("wasmwiz %s: the NATS server refused one of its roles something its work needs (natsroles): %s", strings.Join(args, " "), line)
		}
		if t.Failed() {
			t.Logf("output of wasmwiz %s:\n%s", strings.Join(args, " "), lastLines(p.output(), 60))
		}
	})
	return p
}

// natsRefusal is the first line of a role's log that says the NATS server refused it a publish
// or a subscription (a permissions violation, logged as "nats error"): a subject missing from
// the role's permissions, which the role may only wait out (a lost reply or ack).
func natsRefusal(out string) string {
	for line := range strings.Lines(out) {
		if strings.Contains(line, "nats error") && strings.Contains(strings.ToLower(line), "permissions violation") {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// stop sends SIGTERM and waits for a clean exit; it reports a process that will not stop.
func (p *proc) stop(t testing.TB) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		t.Errorf("wasmwiz %v did not stop within 30s of SIGTERM", p.cmd.Args[1:])
	}
}

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// system is a running WasmWiz reachable over HTTP (and NATS).
type system struct {
	URL      string
	NATSURL  string
	AdminKey string
	DevKey   string
	DataDir  string
	procs    []*proc
}

// startDev runs `wasmwiz dev` on free ports with dataDir and waits until it is ready.
func startDev(t testing.TB, dataDir string) *system {
	t.Helper()
	return startDevEnv(t, dataDir)
}

// startDevEnv is startDev with extra environment. A synchronous execution waits up to 90 s for
// its result (below the client's 2 minutes): on a loaded machine even a short guest's first run
// may take seconds, and a test's run insists on the 200.
func startDevEnv(t testing.TB, dataDir string, env ...string) *system {
	t.Helper()
	httpAddr, natsAddr := freeAddr(t), freeAddr(t)
	p := start(t, append([]string{
		"WASMWIZ_HTTP_ADDR=" + httpAddr, "WASMWIZ_NATS_ADDR=" + natsAddr, "WASMWIZ_DATA_DIR=" + dataDir,
		"WASMWIZ_WORKERS=2", "DATABASE_URL=", "WASMWIZ_SYNC_WAIT=90s",
	}, env...), "dev")
	s := &system{URL: "http://" + httpAddr, NATSURL: "nats://" + natsAddr, DataDir: dataDir, procs: []*proc{p}}
	waitReady(t, s.URL, p)
	// The API answers ready before dev has finished setting up for its user (the saved
	// contexts): dev says "ready:" once it has, and that is what a user waits for.
	natstest.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if !strings.Contains(p.output(), "ready: ") {
			return fmt.Errorf("dev has not said it is ready")
		}
		return nil
	})
	s.AdminKey = readKey(t, filepath.Join(dataDir, "admin-api-key"))
	s.DevKey = readKey(t, filepath.Join(dataDir, "dev-api-key"))
	return s
}

// connectNATS connects to a dev system's NATS as tenant dev, with the nkey seed dev made in its
// data dir (dev's NATS refuses anonymous connections).
func (s *system) connectNATS(opts ...nats.Option) (*nats.Conn, error) {
	return s.connectNATSAs("nats-tenant-dev.nk", opts...)
}

// connectNATSAs connects with one of the seeds dev made (nats-<role>.nk, nats-tenant-<id>.nk);
// a system without a data dir (roles on a test server without authentication) anonymously.
func (s *system) connectNATSAs(seedFile string, opts ...nats.Option) (*nats.Conn, error) {
	if s.DataDir != "" {
		seed, err := nats.NkeyOptionFromSeed(filepath.Join(s.DataDir, "nats", seedFile))
		if err != nil {
			return nil, err
		}
		opts = append([]nats.Option{seed}, opts...)
	}
	return nats.Connect(s.NATSURL, opts...)
}

// adminJetStream is JetStream on a connection of dev's admin role, closed when t ends.
func (s *system) adminJetStream(t testing.TB) jetstream.JetStream {
	t.Helper()
	nc, err := s.connectNATSAs("nats-admin.nk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// objectStoreState is the state of the stream behind the object store bucket.
func objectStoreState(t testing.TB, js jetstream.JetStream, bucket string) jetstream.StreamState {
	t.Helper()
	ctx := context.Background()
	st, err := js.Stream(ctx, "OBJ_"+bucket)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State
}

// natsRoleEnv is what a role process needs to join a dev system's NATS as role (gateway,
// executor, accounting or admin).
func (s *system) natsRoleEnv(role string) []string {
	return []string{"WASMWIZ_NATS_URL=" + s.NATSURL, "WASMWIZ_NATS_NKEY=" + filepath.Join(s.DataDir, "nats", "nats-"+role+".nk")}
}

func readKey(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", path, fi.Mode().Perm())
	}
	return strings.TrimSpace(string(b))
}

func waitReady(t testing.TB, url string, procs ...*proc) {
	t.Helper()
	natstest.CheckFor(t, 90*time.Second, 100*time.Millisecond, func() error {
		for _, p := range procs {
			if !p.alive() {
				t.Fatalf("wasmwiz %v exited before it was ready: %v\n%s", p.cmd.Args[1:], p.err, lastLines(p.output(), 40))
			}
		}
		resp, err := http.Get(url + "/health/ready")
		if err != nil {
			return fmt.Errorf("%s not ready: %w", url, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("%s not ready: %s", url, resp.Status)
		}
		return nil
	})
}

// response is an HTTP answer.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r *response) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

// problem decodes a problem+json body.
func (r *response) problem(t testing.TB) (code string, detail string) {
	t.Helper()
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Errorf("error response has Content-Type %q, want application/problem+json; body %s", ct, r.Body)
	}
	var p struct {
		Code   string `json:"code"`
		Detail string `json:"detail"`
	}
	r.decode(t, &p)
	return p.Code, p.Detail
}

func (s *system) do(t testing.TB, method, path, key, contentType string, body []byte, headers ...string) *response {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return &response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// upload uploads and waits for the compile, however long its budget (?wait=true, as the CLI
// does): a loaded machine may take longer than the gateway's default 30 s wait for a large
// module, and the caller wants the 201. TestDev_CompilingModule covers the 202.
func (s *system) upload(t testing.TB, key, name string, wasm []byte) *schemas.Module {
	t.Helper()
	r := s.do(t, http.MethodPost, "/v1/modules?wait=true&name="+name, key, "application/wasm", wasm)
	if r.Status != http.StatusCreated {
		t.Fatalf("upload %s: %d %s", name, r.Status, r.Body)
	}
	var m schemas.Module
	r.decode(t, &m)
	return &m
}

func (s *system) execute(t testing.TB, key string, req schemas.ExecutionRequest, headers ...string) (*response, *schemas.Execution) {
	t.Helper()
	body, _ := json.Marshal(req)
	r := s.do(t, http.MethodPost, "/v1/executions", key, "application/json", body, headers...)
	var e schemas.Execution
	if r.Status == 200 || r.Status == 202 {
		r.decode(t, &e)
	}
	return r, &e
}

// run executes and insists on a 200.
func (s *system) run(t testing.TB, key string, req schemas.ExecutionRequest) *schemas.Execution {
	t.Helper()
	r, e := s.execute(t, key, req)
	if r.Status != 200 {
		t.Fatalf("execute: %d %s", r.Status, r.Body)
	}
	return e
}

// newTenant creates a tenant on tier with a key, through the admin API.
func (s *system) newTenant(t testing.TB, id, tier string) string {
	t.Helper()
	b, _ := json.Marshal(schemas.CreateTenantRequest{ID: id, Tier: tier})
	if r := s.do(t, http.MethodPost, "/v1/admin/tenants", s.AdminKey, "application/json", b); r.Status != 201 {
		t.Fatalf("create tenant: %d %s", r.Status, r.Body)
	}
	b, _ = json.Marshal(schemas.CreateKeyRequest{TenantID: id})
	r := s.do(t, http.MethodPost, "/v1/admin/keys", s.AdminKey, "application/json", b)
	if r.Status != 201 {
		t.Fatalf("create key: %d %s", r.Status, r.Body)
	}
	var k schemas.CreatedKey
	r.decode(t, &k)
	return k.Key
}

func scanLines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func b64URL(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// bootstrap runs `wasmwiz admin bootstrap` with env (streams, buckets, a first admin key) and
// returns the admin key it wrote into dir.
func bootstrap(t testing.TB, env []string, dir string) string {
	t.Helper()
	boot := start(t, env, "admin", "bootstrap", "--key-file", filepath.Join(dir, "admin-key"))
	<-boot.done
	if boot.err != nil {
		t.Fatalf("admin bootstrap: %v\n%s", boot.err, boot.output())
	}
	return readKey(t, filepath.Join(dir, "admin-key"))
}

// startCore bootstraps, then runs one gateway and one executor process with env (which names
// the NATS server) and waits until the gateway is ready. Accounting is the caller's to start.
func startCore(t testing.TB, env []string, dir string) *system {
	t.Helper()
	adminKey := bootstrap(t, env, dir)
	httpAddr := freeAddr(t)
	gw := start(t, append(env, "WASMWIZ_HTTP_ADDR="+httpAddr), "gateway")
	ex := start(t, append(env, "WASMWIZ_CACHE_DIR="+filepath.Join(dir, "cache"), "WASMWIZ_WORKERS=2", "WASMWIZ_METRICS_ADDR="+freeAddr(t)), "executor")
	s := &system{URL: "http://" + httpAddr, AdminKey: adminKey, procs: []*proc{gw, ex}}
	waitReady(t, s.URL, gw, ex)
	return s
}

// storedResult reads an execution's result from the results bucket: nil while there is none
// (or it cannot be read or decoded).
func storedResult(kv jetstream.KeyValue, id string) *schemas.Result {
	entry, err := kv.Get(context.Background(), id)
	if err != nil {
		return nil
	}
	var res schemas.Result
	if json.Unmarshal(entry.Value(), &res) != nil {
		return nil
	}
	return &res
}
