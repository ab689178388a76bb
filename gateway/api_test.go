package gateway

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmwiz/wasmwiz/internal/fixtures"
	"github.com/wasmwiz/wasmwiz/internal/history"
	"github.com/wasmwiz/wasmwiz/internal/natstest"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// The API suite: one gateway, every operation of the table (ops.go), driven through each
// transport that serves it (watermill's TestPubSub: one suite, every implementation). Which
// operations need which scope, which are admin-only and which are public is read from the
// table, so the tests cannot drift from what the gateway enforces.

// apiCall is one call of a table operation, said once for every transport.
type apiCall struct {
	id          string // the path's {id} (REST), or {"id": ...} as the body (NATS)
	path        string // download-output's {path}
	body        []byte // the JSON body, or an upload's bytes
	contentType string // REST; default application/json with a body
	name        string // an upload's name: ?name= (REST), Wasmwiz-Module/Bundle-Name (NATS)
	idem        string // Idempotency-Key
	tenant      string // usage: ?tenant= (REST), tenant_id (NATS)
}

// transport calls operations one way; serves reports whether it carries o at all.
type transport struct {
	name   string
	serves func(o *operation) bool
	do     func(t *testing.T, s *apiSuite, o *operation, key string, c apiCall) (status int, header http.Header, body []byte)
}

var transports = []transport{
	{name: "rest", serves: func(*operation) bool { return true }, do: restDo},
	{name: "nats", serves: func(o *operation) bool { return o.NATS != "" }, do: natsDo},
}

// call is do without the answer's headers.
func (tr transport) call(t *testing.T, s *apiSuite, o *operation, key string, c apiCall) (int, []byte) {
	t.Helper()
	status, _, body := tr.do(t, s, o, key, c)
	return status, body
}

func restCall(t *testing.T, s *apiSuite, o *operation, key string, c apiCall) (int, []byte) {
	t.Helper()
	return transports[0].call(t, s, o, key, c)
}

func restDo(t *testing.T, s *apiSuite, o *operation, key string, c apiCall) (int, http.Header, []byte) {
	t.Helper()
	path := strings.Replace(o.Path, "{id}", url.PathEscape(c.id), 1)
	path = strings.Replace(path, "{path}", url.PathEscape(c.path), 1)
	q := url.Values{}
	if c.name != "" {
		q.Set("name", c.name)
	}
	if c.tenant != "" {
		q.Set("tenant", c.tenant)
	}
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	req, err := http.NewRequest(o.Method, s.url+path, bytes.NewReader(c.body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if c.idem != "" {
		req.Header.Set(schemas.HeaderIdempotencyKey, c.idem)
	}
	switch {
	case c.contentType != "":
		req.Header.Set("Content-Type", c.contentType)
	case c.body != nil:
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", o.Method, path, err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, resp.Header, b.Bytes()
}

func natsDo(t *testing.T, s *apiSuite, o *operation, key string, c apiCall) (int, http.Header, []byte) {
	t.Helper()
	msg := nats.NewMsg(schemas.APISubject(o.NATS))
	switch {
	case strings.Contains(o.Path, "{id}"):
		msg.Data, _ = json.Marshal(schemas.IDRequest{ID: c.id})
	case c.tenant != "":
		msg.Data, _ = json.Marshal(schemas.UsageRequest{TenantID: c.tenant})
	default:
		msg.Data = c.body
	}
	if key != "" {
		msg.Header.Set(schemas.HeaderAuthorization, "Bearer "+key)
	}
	if c.idem != "" {
		msg.Header.Set(schemas.HeaderIdempotencyKey, c.idem)
	}
	if c.name != "" {
		h := map[string]string{"upload-module": schemas.HeaderModuleName, "upload-bundle": schemas.HeaderBundleName}[o.ID]
		if h == "" {
			t.Fatalf("%s takes no name over NATS", o.ID)
		}
		msg.Header.Set(h, c.name)
	}
	resp, err := s.nc.RequestMsg(msg, 30*time.Second)
	if err != nil {
		t.Fatalf("nats %s: %v", o.NATS, err)
	}
	if code := resp.Header.Get("Nats-Service-Error-Code"); code != "" {
		n, err := strconv.Atoi(code)
		if err != nil {
			t.Fatalf("nats %s: error code %q", o.NATS, code)
		}
		return n, http.Header(resp.Header), resp.Data
	}
	return http.StatusOK, http.Header(resp.Header), resp.Data
}

// apiSuite is a running gateway with a stub executor (compiles succeed; an execution succeeds
// at once with its stdin as stdout, its result stored as the executor stores it) and a stub
// accounting role (it answers usage queries and remembers whose usage it was asked).
type apiSuite struct {
	*testGateway
	nc       *nats.Conn
	otherKey string // tenant "globex" (basic), every scope

	accounting *nats.Subscription // the stub accounting role

	mu      sync.Mutex
	runs    map[string]int // execution id -> deliveries the stub executor ran
	usageOf []string       // tenants accounting was asked about
}

func startAPISuite(t *testing.T) *apiSuite {
	t.Helper()
	jwtKey := filepath.Join(t.TempDir(), "jwt.pem")
	if _, err := LoadSigner(jwtKey, true); err != nil {
		t.Fatal(err)
	}
	tg := startTestGateway(t, Config{JWTKeyFile: jwtKey})
	s := &apiSuite{testGateway: tg, nc: natstest.Connect(t, tg.srv), runs: map[string]int{}}
	ctx := context.Background()
	if _, err := tg.g.admin().CreateTenant(ctx, "globex", schemas.TierBasic); err != nil {
		t.Fatal(err)
	}
	k, err := tg.g.admin().CreateKey(ctx, schemas.CreateKeyRequest{TenantID: "globex"})
	if err != nil {
		t.Fatal(err)
	}
	s.otherKey = k.Key

	ex := natstest.Connect(t, tg.srv)
	for subject, reply := range map[string]any{
		schemas.SubjectExecutorPing: struct{}{},
		schemas.SubjectCompile:      schemas.CompileReply{CompileMS: 1, NodeID: "stub"},
	} {
		b, _ := json.Marshal(reply)
		if _, err := ex.Subscribe(subject, func(m *nats.Msg) { _ = m.Respond(b) }); err != nil {
			t.Fatal(err)
		}
	}
	if s.accounting, err = ex.Subscribe(schemas.AccountingSubject(schemas.OpUsage), func(m *nats.Msg) {
		var req schemas.UsageRequest
		_ = json.Unmarshal(m.Data, &req)
		s.mu.Lock()
		s.usageOf = append(s.usageOf, req.TenantID)
		s.mu.Unlock()
		b, _ := json.Marshal(schemas.UsageResponse{GroupBy: req.GroupBy, Rows: []schemas.UsageRow{}})
		_ = m.Respond(b)
	}); err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(ex)
	if err != nil {
		t.Fatal(err)
	}
	results, err := js.KeyValue(ctx, schemas.BucketResults)
	if err != nil {
		t.Fatal(err)
	}
	run := func(m jetstream.Msg) {
		var er schemas.ExecRequest
		if err := json.Unmarshal(m.Data(), &er); err != nil {
			_ = m.Term()
			return
		}
		now := time.Now().UTC()
		r := schemas.Result{ID: er.ExecutionID, TenantID: er.TenantID, Tier: er.Tier, ModuleID: er.ModuleID,
			Status: schemas.StatusSucceeded, Stdout: er.Stdin, CreatedAt: now, StartedAt: &now, FinishedAt: &now, NodeID: "stub"}
		b, _ := json.Marshal(r)
		if _, err := results.Put(context.Background(), er.ExecutionID, b); err != nil {
			_ = m.Nak()
			return
		}
		// As the executor does, the end goes into the history too (a synchronous execution that
		// ends at once has no queued record from the gateway).
		if err := history.Publish(context.Background(), js, er.TenantID, schemas.SummaryOf(&r, er.ModuleName)); err != nil {
			_ = m.Nak()
			return
		}
		s.mu.Lock()
		s.runs[er.ExecutionID]++
		s.mu.Unlock()
		_ = ex.Publish(m.Headers().Get(schemas.HeaderReply), b)
		_ = m.Ack()
	}
	for tier := range schemas.DefaultTiers() {
		cons, err := js.Consumer(ctx, schemas.ExecStream(tier), schemas.ExecConsumer(tier))
		if err != nil {
			t.Fatal(err)
		}
		cc, err := cons.Consume(run)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cc.Stop)
	}
	natstest.CheckFor(t, 10*time.Second, poll, state(tg.g.Ready, func() string { return fmt.Sprintf("gateway not ready: %+v", tg.g.health()) }))
	return s
}

// op is the table's row id; the test fails if there is none.
func (s *apiSuite) op(t *testing.T, id string) *operation {
	t.Helper()
	o := s.g.opByID[id]
	if o == nil {
		t.Fatalf("no operation %s in the table", id)
	}
	return o
}

// keyWithout is a key of tenant acme holding every scope but scope.
func (s *apiSuite) keyWithout(t *testing.T, scope string) string {
	t.Helper()
	scopes := slices.DeleteFunc(slices.Clone(schemas.AllScopes), func(sc string) bool { return sc == scope })
	k, err := s.g.admin().CreateKey(context.Background(), schemas.CreateKeyRequest{TenantID: "acme", Scopes: scopes, Name: "without " + scope})
	if err != nil {
		t.Fatal(err)
	}
	return k.Key
}

// uploadModule uploads a fixture module for key's tenant over REST and returns its id. Modules
// are content-addressed: tenants that upload the same fixture hold the same id.
func (s *apiSuite) uploadModule(t *testing.T, key, fixture string) string {
	t.Helper()
	status, body := restCall(t, s, s.op(t, "upload-module"), key, apiCall{body: fixtures.Wasm(fixture), contentType: "application/wasm", name: fixture})
	var m schemas.Module
	if status != http.StatusCreated || json.Unmarshal(body, &m) != nil || m.ID == "" {
		t.Fatalf("upload: %d %s", status, body)
	}
	return m.ID
}

func tarOf(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for name, data := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		_, _ = tw.Write([]byte(data))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// tenantKey makes a tenant of tier and returns a key of it with every scope.
func (s *apiSuite) tenantKey(t *testing.T, id, tier string) string {
	t.Helper()
	if _, err := s.g.admin().CreateTenant(context.Background(), id, tier); err != nil {
		t.Fatal(err)
	}
	k, err := s.g.admin().CreateKey(context.Background(), schemas.CreateKeyRequest{TenantID: id})
	if err != nil {
		t.Fatal(err)
	}
	return k.Key
}

// newKey makes a key of acme with acme's scopes through POST /v1/keys, which this gateway
// applies at once (a key written to the store directly is listed once the watch brings it).
func (s *apiSuite) newKey(t *testing.T, name string) *schemas.CreatedKey {
	t.Helper()
	body, _ := json.Marshal(schemas.NewKeyRequest{Name: name})
	status, resp := restCall(t, s, s.op(t, "create-key"), s.key, apiCall{body: body})
	var k schemas.CreatedKey
	if status != http.StatusCreated || json.Unmarshal(resp, &k) != nil {
		t.Fatalf("create key: %d %s", status, resp)
	}
	return &k
}

// lastUsed is the last_used_at of one of acme's keys, as GET /v1/keys shows it.
func (s *apiSuite) lastUsed(t *testing.T, keyID string) *time.Time {
	t.Helper()
	status, body := restCall(t, s, s.op(t, "list-keys"), s.key, apiCall{})
	var l schemas.KeyList
	if status != http.StatusOK || json.Unmarshal(body, &l) != nil {
		t.Fatalf("list keys: %d %s", status, body)
	}
	for _, k := range l.Keys {
		if k.ID == keyID {
			return k.LastUsedAt
		}
	}
	t.Fatalf("key %s is not listed: %s", keyID, body)
	return nil
}

// ok reports a success status; NATS has one (200), REST several (200, 201, 202, 204).
func ok(status int) bool { return status/100 == 2 }

func TestAPI(t *testing.T) {
	s := startAPISuite(t)
	someID := "sha256:" + strings.Repeat("0", 64)
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			t.Run("Unauthenticated", func(t *testing.T) {
				for i := range s.g.ops {
					o := &s.g.ops[i]
					if o.Public || !tr.serves(o) {
						continue
					}
					if status, body := tr.call(t, s, o, "", apiCall{id: someID, path: "out"}); status != http.StatusUnauthorized {
						t.Errorf("%s without a key: %d %s, want 401", o.ID, status, body)
					}
					if status, body := tr.call(t, s, o, "ww_not-a-key", apiCall{id: someID, path: "out"}); status != http.StatusUnauthorized {
						t.Errorf("%s with a made-up key: %d %s, want 401", o.ID, status, body)
					}
				}
			})
			t.Run("Public", func(t *testing.T) {
				for i := range s.g.ops {
					o := &s.g.ops[i]
					if !o.Public || !tr.serves(o) {
						continue
					}
					if status, body := tr.call(t, s, o, "", apiCall{}); !ok(status) {
						t.Errorf("%s without a key: %d %s", o.ID, status, body)
					}
				}
			})
			// Every operation that needs a scope refuses a key without it, before its body.
			t.Run("Scopes", func(t *testing.T) {
				without := map[string]string{}
				n := 0
				for i := range s.g.ops {
					o := &s.g.ops[i]
					if o.Scope == "" || !tr.serves(o) {
						continue
					}
					if without[o.Scope] == "" {
						without[o.Scope] = s.keyWithout(t, o.Scope)
					}
					status, body := tr.call(t, s, o, without[o.Scope], apiCall{id: someID, path: "out", body: []byte("{}")})
					if status != http.StatusForbidden || !bytes.Contains(body, []byte(o.Scope)) {
						t.Errorf("%s with a key lacking %s: %d %s, want 403 naming the scope", o.ID, o.Scope, status, body)
					}
					n++
				}
				if n == 0 {
					t.Fatal("no operation of this transport needs a scope")
				}
			})
			t.Run("AdminOnly", func(t *testing.T) {
				for i := range s.g.ops {
					o := &s.g.ops[i]
					if !o.Admin || !tr.serves(o) {
						continue
					}
					// A tenant key with every scope: refused before the body is read.
					if status, body := tr.call(t, s, o, s.key, apiCall{id: "acme", body: []byte("not json")}); status != http.StatusForbidden {
						t.Errorf("%s with a tenant key: %d %s, want 403", o.ID, status, body)
					}
				}
			})
			t.Run("ModulesAndExecutions", func(t *testing.T) {
				up := s.op(t, "upload-module")
				status, body := tr.call(t, s, up, s.key, apiCall{body: fixtures.Wasm("echo"), contentType: "application/wasm", name: "echo-" + tr.name})
				var m schemas.Module
				if !ok(status) || json.Unmarshal(body, &m) != nil || m.TenantID != "acme" {
					t.Fatalf("upload: %d %s", status, body)
				}
				status, body = tr.call(t, s, s.op(t, "list-modules"), s.key, apiCall{})
				if !ok(status) || !bytes.Contains(body, []byte(m.ID)) {
					t.Errorf("list: %d %s, want it to hold %s", status, body, m.ID)
				}
				if status, body = tr.call(t, s, s.op(t, "get-module"), s.key, apiCall{id: m.ID}); !ok(status) || !bytes.Contains(body, []byte(m.ID)) {
					t.Errorf("get: %d %s", status, body)
				}
				req, _ := json.Marshal(schemas.ExecutionRequest{ModuleID: m.ID, Stdin: "hello " + tr.name})
				status, body = tr.call(t, s, s.op(t, "create-execution"), s.key, apiCall{body: req})
				var e schemas.Execution
				if !ok(status) || json.Unmarshal(body, &e) != nil || e.Status != schemas.StatusSucceeded || e.Stdout != "hello "+tr.name {
					t.Fatalf("execute: %d %s", status, body)
				}
				if status, body = tr.call(t, s, s.op(t, "get-execution"), s.key, apiCall{id: e.ID}); !ok(status) || !bytes.Contains(body, []byte(e.ID)) {
					t.Errorf("get execution: %d %s", status, body)
				}
				// The history is written in the background: the list shows it soon.
				natstest.CheckFor(t, 10*time.Second, poll, func() error {
					if status, body := tr.call(t, s, s.op(t, "list-executions"), s.key, apiCall{}); !ok(status) || !bytes.Contains(body, []byte(e.ID)) {
						return fmt.Errorf("list executions: %d %s, want it to hold %s", status, body, e.ID)
					}
					return nil
				})
				async, _ := json.Marshal(schemas.ExecutionRequest{ModuleID: m.ID, Stdin: "later", Async: true})
				if status, body = tr.call(t, s, s.op(t, "create-execution"), s.key, apiCall{body: async}); !ok(status) || !bytes.Contains(body, []byte(`"id"`)) {
					t.Errorf("async execute: %d %s", status, body)
				}
				bad, _ := json.Marshal(schemas.ExecutionRequest{ModuleID: "not-an-id"})
				if status, body = tr.call(t, s, s.op(t, "create-execution"), s.key, apiCall{body: bad}); ok(status) || status >= 500 {
					t.Errorf("execute with a malformed module id: %d %s, want a 4xx", status, body)
				}
				if status, body = tr.call(t, s, s.op(t, "delete-module"), s.key, apiCall{id: m.ID}); !ok(status) {
					t.Errorf("delete: %d %s", status, body)
				}
				if status, body = tr.call(t, s, s.op(t, "get-module"), s.key, apiCall{id: m.ID}); status != http.StatusNotFound {
					t.Errorf("get after delete: %d %s, want 404", status, body)
				}
			})
			t.Run("Bundles", func(t *testing.T) {
				status, body := tr.call(t, s, s.op(t, "upload-bundle"), s.key, apiCall{body: tarOf(t, map[string]string{"a.txt": tr.name}), contentType: "application/x-tar", name: "b-" + tr.name})
				var b schemas.Bundle
				if !ok(status) || json.Unmarshal(body, &b) != nil || b.Files != 1 {
					t.Fatalf("upload bundle: %d %s", status, body)
				}
				if status, body = tr.call(t, s, s.op(t, "list-bundles"), s.key, apiCall{}); !ok(status) || !bytes.Contains(body, []byte(b.ID)) {
					t.Errorf("list bundles: %d %s", status, body)
				}
				if status, body = tr.call(t, s, s.op(t, "get-bundle"), s.key, apiCall{id: b.ID}); !ok(status) || !bytes.Contains(body, []byte(b.ID)) {
					t.Errorf("get bundle: %d %s", status, body)
				}
				if status, body = tr.call(t, s, s.op(t, "delete-bundle"), s.key, apiCall{id: b.ID}); !ok(status) {
					t.Errorf("delete bundle: %d %s", status, body)
				}
				if status, body = tr.call(t, s, s.op(t, "get-bundle"), s.key, apiCall{id: b.ID}); status != http.StatusNotFound {
					t.Errorf("get bundle after delete: %d %s, want 404", status, body)
				}
			})
			// Another tenant's module, bundle and execution are not found, not forbidden.
			t.Run("Ownership", func(t *testing.T) {
				mod := s.uploadModule(t, s.otherKey, "hello") // a module acme never uploads
				req, _ := json.Marshal(schemas.ExecutionRequest{ModuleID: mod, Stdin: "theirs", Outputs: []string{"/out"}})
				status, body := restCall(t, s, s.op(t, "create-execution"), s.otherKey, apiCall{body: req})
				var e schemas.Execution
				if !ok(status) || json.Unmarshal(body, &e) != nil {
					t.Fatalf("globex execute: %d %s", status, body)
				}
				status, body = restCall(t, s, s.op(t, "upload-bundle"), s.otherKey, apiCall{body: tarOf(t, map[string]string{"x": "globex"}), contentType: "application/x-tar", name: "theirs"})
				var b schemas.Bundle
				if !ok(status) || json.Unmarshal(body, &b) != nil {
					t.Fatalf("globex bundle: %d %s", status, body)
				}
				for _, c := range []struct{ op, id string }{
					{"get-module", mod}, {"delete-module", mod}, {"get-execution", e.ID}, {"download-output", e.ID},
					{"get-bundle", b.ID}, {"delete-bundle", b.ID},
				} {
					o := s.op(t, c.op)
					if !tr.serves(o) {
						continue
					}
					if status, body := tr.call(t, s, o, s.key, apiCall{id: c.id, path: "out"}); status != http.StatusNotFound {
						t.Errorf("%s of globex's %s by acme: %d %s, want 404", c.op, c.id, status, body)
					}
				}
				natstest.CheckFor(t, 10*time.Second, poll, func() error {
					if status, body := restCall(t, s, s.op(t, "list-executions"), s.otherKey, apiCall{}); !ok(status) || !bytes.Contains(body, []byte(e.ID)) {
						return fmt.Errorf("globex lists executions: %d %s, want %s", status, body, e.ID)
					}
					return nil
				})
				if o := s.op(t, "list-executions"); tr.serves(o) {
					if status, body := tr.call(t, s, o, s.key, apiCall{}); !ok(status) || bytes.Contains(body, []byte(e.ID)) {
						t.Errorf("acme lists executions: %d %s, want none of globex's", status, body)
					}
				}
				// Still there for its owner.
				if status, body := restCall(t, s, s.op(t, "get-module"), s.otherKey, apiCall{id: mod}); !ok(status) {
					t.Errorf("globex's module after acme's delete: %d %s", status, body)
				}
				if status, body := restCall(t, s, s.op(t, "get-bundle"), s.otherKey, apiCall{id: b.ID}); !ok(status) {
					t.Errorf("globex's bundle after acme's delete: %d %s", status, body)
				}
			})
			t.Run("Idempotency", func(t *testing.T) {
				mod := s.uploadModule(t, s.key, "echo")
				create := s.op(t, "create-execution")
				idem := "idem-" + tr.name
				req, _ := json.Marshal(schemas.ExecutionRequest{ModuleID: mod, Stdin: "once"})
				var ids []string
				for range 2 {
					status, body := tr.call(t, s, create, s.key, apiCall{body: req, idem: idem})
					var e schemas.Execution
					if !ok(status) || json.Unmarshal(body, &e) != nil || e.Status != schemas.StatusSucceeded {
						t.Fatalf("execute with %s: %d %s", idem, status, body)
					}
					ids = append(ids, e.ID)
				}
				if ids[0] != ids[1] {
					t.Errorf("the same Idempotency-Key and body gave executions %v", ids)
				}
				s.mu.Lock()
				runs := s.runs[ids[0]]
				s.mu.Unlock()
				if runs != 1 {
					t.Errorf("execution %s ran %d times, want once", ids[0], runs)
				}
				// Formatting does not matter; the content does.
				spaced := append([]byte("  "), req...)
				if status, body := tr.call(t, s, create, s.key, apiCall{body: spaced, idem: idem}); !ok(status) || !bytes.Contains(body, []byte(ids[0])) {
					t.Errorf("the same body reformatted: %d %s, want %s", status, body, ids[0])
				}
				other, _ := json.Marshal(schemas.ExecutionRequest{ModuleID: mod, Stdin: "twice"})
				if status, body := tr.call(t, s, create, s.key, apiCall{body: other, idem: idem}); status != http.StatusConflict {
					t.Errorf("another body with %s: %d %s, want 409", idem, status, body)
				}
				// The key is the tenant's own: globex's same key is another execution.
				theirs := s.uploadModule(t, s.otherKey, "hello")
				req2, _ := json.Marshal(schemas.ExecutionRequest{ModuleID: theirs, Stdin: "once"})
				if status, body := tr.call(t, s, create, s.otherKey, apiCall{body: req2, idem: idem}); !ok(status) || bytes.Contains(body, []byte(ids[0])) {
					t.Errorf("globex with acme's key: %d %s, want a new execution", status, body)
				}
			})
			// The tier's rate limit refuses with 429, Retry-After and the RateLimit figures, as
			// headers on both transports.
			t.Run("RateLimited", func(t *testing.T) {
				tier := schemas.DefaultTiers()[schemas.TierFree]
				key := s.tenantKey(t, "free-"+tr.name, tier.Name)
				req, _ := json.Marshal(schemas.ExecutionRequest{ModuleID: s.uploadModule(t, key, "echo"), Stdin: "x"})
				create := s.op(t, "create-execution")
				for i := range tier.ExecPerMinute {
					if status, body := tr.call(t, s, create, key, apiCall{body: req}); !ok(status) {
						t.Fatalf("execution %d of the %d a minute the tier allows: %d %s", i+1, tier.ExecPerMinute, status, body)
					}
				}
				status, h, body := tr.do(t, s, create, key, apiCall{body: req})
				if status != http.StatusTooManyRequests || !bytes.Contains(body, []byte(schemas.CodeRateLimited)) {
					t.Fatalf("execution %d: %d %s, want 429 %s", tier.ExecPerMinute+1, status, body, schemas.CodeRateLimited)
				}
				if ra, err := strconv.Atoi(h.Get("Retry-After")); err != nil || ra < 1 || h.Get("RateLimit-Limit") != strconv.Itoa(tier.ExecPerMinute) || h.Get("RateLimit-Remaining") != "0" {
					t.Errorf("429 headers: %v, want Retry-After ≥ 1, RateLimit-Limit %d, RateLimit-Remaining 0", h, tier.ExecPerMinute)
				}
			})
			// A token from POST /v1/auth/token works on every transport, with its key's scopes.
			t.Run("Token", func(t *testing.T) {
				token := func(key string) string {
					status, body := restCall(t, s, s.op(t, "create-token"), key, apiCall{})
					var tok schemas.TokenResponse
					if status != http.StatusOK || json.Unmarshal(body, &tok) != nil || strings.Count(tok.Token, ".") != 2 {
						t.Fatalf("create token: %d %s", status, body)
					}
					return tok.Token
				}
				list := s.op(t, "list-modules")
				if status, body := tr.call(t, s, list, token(s.key), apiCall{}); !ok(status) {
					t.Errorf("list modules with a token: %d %s", status, body)
				}
				if status, body := tr.call(t, s, list, token(s.keyWithout(t, schemas.ScopeModulesRead)), apiCall{}); status != http.StatusForbidden {
					t.Errorf("list modules with a token of a key lacking %s: %d %s, want 403", schemas.ScopeModulesRead, status, body)
				}
				if status, body := tr.call(t, s, list, token(s.key)+"x", apiCall{}); status != http.StatusUnauthorized {
					t.Errorf("list modules with a tampered token: %d %s, want 401", status, body)
				}
			})
			// A call on any transport marks its key used (GET /v1/keys shows last_used_at).
			t.Run("LastUsed", func(t *testing.T) {
				k := s.newKey(t, "used-"+tr.name)
				if s.lastUsed(t, k.Record.ID) != nil {
					t.Fatal("a new key has been used")
				}
				if status, body := tr.call(t, s, s.op(t, "list-modules"), k.Key, apiCall{}); !ok(status) {
					t.Fatalf("list modules: %d %s", status, body)
				}
				if s.lastUsed(t, k.Record.ID) == nil {
					t.Errorf("key %s has no last_used_at after a call over %s", k.Record.ID, tr.name)
				}
			})
			t.Run("Usage", func(t *testing.T) {
				usage := s.op(t, "get-usage")
				asked := func() []string {
					s.mu.Lock()
					defer s.mu.Unlock()
					out := s.usageOf
					s.usageOf = nil
					return out
				}
				asked()
				if status, body := tr.call(t, s, usage, s.key, apiCall{}); !ok(status) || !bytes.Contains(body, []byte(`"rows":[]`)) {
					t.Errorf("own usage: %d %s", status, body)
				}
				if got := asked(); !slices.Equal(got, []string{"acme"}) {
					t.Errorf("accounting was asked about %v, want [acme]", got)
				}
				if status, body := tr.call(t, s, usage, s.key, apiCall{tenant: "globex"}); status != http.StatusForbidden {
					t.Errorf("a tenant key asking for globex's usage: %d %s, want 403", status, body)
				}
				if status, body := tr.call(t, s, usage, s.adminKey, apiCall{tenant: "globex"}); !ok(status) {
					t.Errorf("an admin asking for globex's usage: %d %s", status, body)
				}
				if status, body := tr.call(t, s, usage, s.adminKey, apiCall{tenant: "nobody"}); status != http.StatusNotFound {
					t.Errorf("an admin asking for an unknown tenant's usage: %d %s, want 404", status, body)
				}
				if got := asked(); !slices.Equal(got, []string{"globex"}) {
					t.Errorf("accounting was asked about %v, want [globex] (never for a refused caller)", got)
				}
			})
		})
	}

	// Accounting gone: usage is a 503 on both transports, naming only what is unavailable, with
	// Retry-After (a dependency that did not answer: the same 503 as a NATS cluster without
	// quorum gives, which had none).
	t.Run("UsageUnavailable", func(t *testing.T) {
		if err := s.accounting.Unsubscribe(); err != nil {
			t.Fatal(err)
		}
		for _, tr := range transports {
			status, h, body := tr.do(t, s, s.op(t, "get-usage"), s.key, apiCall{})
			if status != http.StatusServiceUnavailable || !bytes.Contains(body, []byte("accounting is unavailable")) {
				t.Errorf("%s: usage without accounting: %d %s, want 503 naming accounting", tr.name, status, body)
			}
			if ra := h.Get("Retry-After"); ra != strconv.Itoa(unavailableRetryAfter) {
				t.Errorf("%s: usage without accounting: Retry-After %q, want %d", tr.name, ra, unavailableRetryAfter)
			}
		}
	})

	// REST only: keys, tokens, events and the original API have no NATS twin.
	t.Run("rest/Keys", func(t *testing.T) {
		body, _ := json.Marshal(schemas.NewKeyRequest{Name: "ci", Scopes: []string{schemas.ScopeExecute}})
		status, resp := restCall(t, s, s.op(t, "create-key"), s.key, apiCall{body: body})
		var k schemas.CreatedKey
		if status != http.StatusCreated || json.Unmarshal(resp, &k) != nil || k.Record.TenantID != "acme" {
			t.Fatalf("create key: %d %s", status, resp)
		}
		if status, resp := restCall(t, s, s.op(t, "list-modules"), k.Key, apiCall{}); status != http.StatusForbidden {
			t.Errorf("an execute-only key lists modules: %d %s, want 403", status, resp)
		}
		if status, resp := restCall(t, s, s.op(t, "list-keys"), s.key, apiCall{}); !ok(status) || !bytes.Contains(resp, []byte(k.Record.ID)) || bytes.Contains(resp, []byte(k.Key)) {
			t.Errorf("list keys: %d %s, want the new key's id and never its secret", status, resp)
		}
		if status, resp := restCall(t, s, s.op(t, "list-keys"), s.otherKey, apiCall{}); !ok(status) || bytes.Contains(resp, []byte(k.Record.ID)) {
			t.Errorf("globex lists keys: %d %s, want none of acme's", status, resp)
		}
		if status, resp := restCall(t, s, s.op(t, "revoke-key"), s.otherKey, apiCall{id: k.Record.ID}); status != http.StatusNotFound {
			t.Errorf("globex revokes acme's key: %d %s, want 404", status, resp)
		}
		if status, resp := restCall(t, s, s.op(t, "revoke-key"), s.key, apiCall{id: k.Record.ID}); status != http.StatusNoContent {
			t.Fatalf("revoke: %d %s", status, resp)
		}
		if status, resp := restCall(t, s, s.op(t, "get-execution"), k.Key, apiCall{id: "ex_0123456789abcdefghjkmnpqrs"}); status != http.StatusUnauthorized {
			t.Errorf("a revoked key: %d %s, want 401", status, resp)
		}
	})
	t.Run("rest/Events", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, s.url+"/v1/events", nil)
		req.Header.Set("Authorization", "Bearer "+s.key)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		resp, err := http.DefaultClient.Do(req.WithContext(ctx))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		lines := bufio.NewScanner(resp.Body)
		if !lines.Scan() || !strings.HasPrefix(lines.Text(), ":") {
			t.Fatalf("the stream did not open with a comment: %q %v", lines.Text(), lines.Err())
		}
		// globex's event first: were the filter wrong, it would arrive before acme's.
		theirs, _ := json.Marshal(schemas.NewKeyRequest{Name: "theirs"})
		if status, resp := restCall(t, s, s.op(t, "create-key"), s.otherKey, apiCall{body: theirs}); status != http.StatusCreated {
			t.Fatalf("globex key: %d %s", status, resp)
		}
		ours, _ := json.Marshal(schemas.NewKeyRequest{Name: "ours"})
		status, body := restCall(t, s, s.op(t, "create-key"), s.key, apiCall{body: ours})
		var k schemas.CreatedKey
		if status != http.StatusCreated || json.Unmarshal(body, &k) != nil {
			t.Fatalf("acme key: %d %s", status, body)
		}
		var event string
		for lines.Scan() {
			l := lines.Text()
			if strings.Contains(l, "globex") {
				t.Fatalf("acme's stream carried globex's event: %s", l)
			}
			if v, found := strings.CutPrefix(l, "event: "); found {
				event = v
			}
			if v, found := strings.CutPrefix(l, "data: "); found && strings.Contains(v, k.Record.ID) {
				if event != schemas.EventKeyCreated {
					t.Errorf("acme's key came as event %q, want %s", event, schemas.EventKeyCreated)
				}
				return
			}
		}
		t.Fatalf("the stream ended before acme's key.created: %v", lines.Err())
	})
	t.Run("rest/Compat", func(t *testing.T) {
		var b bytes.Buffer
		mw := multipart.NewWriter(&b)
		fw, _ := mw.CreateFormFile("wasm", "echo.wasm")
		_, _ = fw.Write(fixtures.Wasm("echo"))
		_ = mw.WriteField("input", "from the original API")
		_ = mw.Close()
		o := s.op(t, "compat-execute")
		k := s.newKey(t, "compat")
		status, body := restCall(t, s, o, k.Key, apiCall{body: b.Bytes(), contentType: mw.FormDataContentType()})
		var out compatResponse
		if status != http.StatusOK || json.Unmarshal(body, &out) != nil || out.Output == nil || *out.Output != "from the original API" || out.Error != nil {
			t.Errorf("compat: %d %s", status, body)
		}
		if s.lastUsed(t, k.Record.ID) == nil {
			t.Errorf("the compat endpoint did not mark its key used")
		}
		// Its own answer shape for refusals, with the table's scope.
		status, body = restCall(t, s, o, s.keyWithout(t, schemas.ScopeModulesWrite), apiCall{body: b.Bytes(), contentType: mw.FormDataContentType()})
		if status != http.StatusForbidden || json.Unmarshal(body, &out) != nil || out.Error == nil {
			t.Errorf("compat without modules:write: %d %s, want 403 in the compat shape", status, body)
		}
	})
}

// TestOperations_Table checks the table itself: one row per id, per method and path, and per
// NATS operation; every NATS operation has a handler and every row a REST binding.
func TestOperations_Table(t *testing.T) {
	g := &Server{cfg: Config{Tiers: schemas.DefaultTiers()}}
	ops := g.operations()
	ids, routes, nats := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, o := range ops {
		route := o.Method + " " + o.Path
		switch {
		case ids[o.ID]:
			t.Errorf("operation %s twice", o.ID)
		case routes[route]:
			t.Errorf("%s twice", route)
		case o.NATS != "" && nats[o.NATS]:
			t.Errorf("NATS operation %s twice", o.NATS)
		case o.rest == nil:
			t.Errorf("%s has no REST binding", o.ID)
		case (o.NATS != "") != (o.micro != nil):
			t.Errorf("%s: a NATS name needs a NATS handler and a handler a name", o.ID)
		case o.Public && (o.Scope != "" || o.Admin):
			t.Errorf("%s is public yet needs a scope or an admin key", o.ID)
		case o.NATS != "" && o.Scope == "" && !o.Admin:
			t.Errorf("%s is on NATS with no scope", o.ID)
		}
		ids[o.ID], routes[route], nats[o.NATS] = true, true, true
		if o.Scope != "" && !slices.Contains(schemas.AllScopes, o.Scope) {
			t.Errorf("%s needs unknown scope %q", o.ID, o.Scope)
		}
		if _, err := schemas.ParseAPISubject(schemas.APISubject(o.NATS)); o.NATS != "" && err != nil {
			t.Errorf("%s: %v", o.ID, err)
		}
	}
}
