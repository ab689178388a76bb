package test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/internal/fixtures"
	"github.com/wasmwiz/wasmwiz/schemas"
)

func (s *system) newKey(t testing.TB, key string, req schemas.NewKeyRequest) *schemas.CreatedKey {
	t.Helper()
	b, _ := json.Marshal(req)
	r := s.do(t, http.MethodPost, "/v1/keys", key, "application/json", b)
	if r.Status != 201 {
		t.Fatalf("create key: %d %s", r.Status, r.Body)
	}
	var k schemas.CreatedKey
	r.decode(t, &k)
	return &k
}

var executionsTotalRE = regexp.MustCompile(`(?m)^wasmwiz_executions_total\{[^}]*\} (\d+)`)

// executionsRun sums wasmwiz_executions_total: what executors ran.
func (s *system) executionsRun(t testing.TB) int {
	t.Helper()
	r := s.do(t, http.MethodGet, "/metrics", "", "", nil)
	n := 0
	for _, m := range executionsTotalRE.FindAllStringSubmatch(string(r.Body), -1) {
		v, _ := strconv.Atoi(m[1])
		n += v
	}
	return n
}

func TestDev_KeysTokensIsolation(t *testing.T) {
	s := startDev(t, t.TempDir())
	nc, err := s.connectNATS()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	a := s.newTenant(t, "tenant-a", "basic")
	b := s.newTenant(t, "tenant-b", "basic")
	modA := s.upload(t, a, "hello", fixtures.Wasm("hello"))
	exA := s.run(t, a, schemas.ExecutionRequest{ModuleID: modA.ID})
	var keysA schemas.KeyList
	s.do(t, http.MethodGet, "/v1/keys", a, "", nil).decode(t, &keysA)
	if len(keysA.Keys) != 1 || keysA.Keys[0].TenantID != "tenant-a" || strings.Contains(string(mustJSON(keysA)), a) {
		t.Fatalf("keys of A: %+v", keysA)
	}
	keyIDA := keysA.Keys[0].ID

	t.Run("scopes and tiers of self-service keys", func(t *testing.T) {
		execOnly := s.newKey(t, a, schemas.NewKeyRequest{Name: "ci", Scopes: []string{schemas.ScopeExecute}})
		if r := s.do(t, http.MethodPost, "/v1/modules", execOnly.Key, "application/wasm", fixtures.Wasm("hello")); r.Status != 403 {
			t.Errorf("upload without modules:write: %d %s", r.Status, r.Body)
		}
		if r := s.do(t, http.MethodGet, "/v1/modules", execOnly.Key, "", nil); r.Status != 403 {
			t.Errorf("list without modules:read: %d", r.Status)
		}
		if e := s.run(t, execOnly.Key, schemas.ExecutionRequest{ModuleID: modA.ID}); e.Status != schemas.StatusSucceeded {
			t.Errorf("execute with execute scope: %+v", e)
		}
		if st, _ := natsCall(t, nc, schemas.OpModulesList, execOnly.Key, nil); st != "403" {
			t.Errorf("NATS list without modules:read: %s", st)
		}
		b1, _ := json.Marshal(schemas.NewKeyRequest{Scopes: []string{schemas.ScopeModulesWrite}})
		if r := s.do(t, http.MethodPost, "/v1/keys", execOnly.Key, "application/json", b1); r.Status != 403 {
			t.Errorf("key without keys:manage made a key: %d", r.Status)
		}
		for _, tier := range []string{"pro", "unlimited"} {
			b2, _ := json.Marshal(schemas.NewKeyRequest{Tier: tier})
			if r := s.do(t, http.MethodPost, "/v1/keys", a, "application/json", b2); r.Status != 403 {
				t.Errorf("basic tenant minted a %s key: %d %s", tier, r.Status, r.Body)
			}
		}
		if k := s.newKey(t, a, schemas.NewKeyRequest{Tier: "free"}); k.Record.Tier != "free" {
			t.Errorf("lower tier key: %+v", k.Record)
		}
	})

	t.Run("tokens", func(t *testing.T) {
		r := s.do(t, http.MethodGet, "/.well-known/jwks.json", "", "", nil)
		var jwks struct {
			Keys []map[string]string `json:"keys"`
		}
		r.decode(t, &jwks)
		if len(jwks.Keys) != 1 || jwks.Keys[0]["alg"] != "EdDSA" || jwks.Keys[0]["crv"] != "Ed25519" {
			t.Fatalf("jwks: %s", r.Body)
		}
		temp := s.newKey(t, a, schemas.NewKeyRequest{Name: "temp"})
		r = s.do(t, http.MethodPost, "/v1/auth/token", temp.Key, "", nil)
		var tok schemas.TokenResponse
		r.decode(t, &tok)
		if r.Status != 200 || tok.Token == "" || time.Until(tok.ExpiresAt) > 16*time.Minute || time.Until(tok.ExpiresAt) < 14*time.Minute {
			t.Fatalf("token: %d %s", r.Status, r.Body)
		}
		if e := s.run(t, tok.Token, schemas.ExecutionRequest{ModuleID: modA.ID}); e.Status != schemas.StatusSucceeded {
			t.Errorf("execute with a token: %+v", e)
		}
		if st, _ := natsCall(t, nc, schemas.OpModulesList, tok.Token, nil); st != "200" {
			t.Errorf("NATS with a token: %s", st)
		}
		if r := s.do(t, http.MethodPost, "/v1/auth/token", tok.Token, "", nil); r.Status != 403 {
			t.Errorf("token for a token: %d", r.Status)
		}
		tampered := tok.Token[:len(tok.Token)-4] + flip(tok.Token[len(tok.Token)-4:])
		parts := strings.Split(tok.Token, ".")
		forged := parts[0] + "." + strings.TrimRight(b64URL(`{"tenant":"tenant-b","tier":"pro","kid_key":"`+temp.Record.ID+`","iss":"wasmwiz","exp":9999999999}`), "=") + "." + parts[2]
		for _, bad := range []string{tampered, forged, "a.b.c"} {
			if r := s.do(t, http.MethodGet, "/v1/modules", bad, "", nil); r.Status != 401 {
				t.Errorf("tampered token: %d", r.Status)
			}
			if st, _ := natsCall(t, nc, schemas.OpModulesList, bad, nil); st != "401" {
				t.Errorf("tampered token over NATS: %s", st)
			}
		}
		// Revoking the key kills the key and its tokens at once.
		if r := s.do(t, http.MethodDelete, "/v1/keys/"+temp.Record.ID, a, "", nil); r.Status != 204 {
			t.Fatalf("revoke: %d %s", r.Status, r.Body)
		}
		for _, k := range []string{temp.Key, tok.Token} {
			if r := s.do(t, http.MethodGet, "/v1/modules", k, "", nil); r.Status != 401 {
				t.Errorf("revoked credential: %d", r.Status)
			}
		}
	})

	t.Run("rotation and expiry", func(t *testing.T) {
		old := s.newKey(t, a, schemas.NewKeyRequest{Name: "rotating"})
		body, _ := json.Marshal(schemas.RotateKeyRequest{OldKeyExpiresIn: 1})
		r := s.do(t, http.MethodPost, "/v1/keys/"+old.Record.ID+"/rotate", a, "application/json", body)
		var fresh schemas.CreatedKey
		r.decode(t, &fresh)
		if r.Status != 201 || fresh.Key == old.Key || fresh.Record.Name != "rotating" {
			t.Fatalf("rotate: %d %s", r.Status, r.Body)
		}
		if r := s.do(t, http.MethodGet, "/v1/modules", fresh.Key, "", nil); r.Status != 200 {
			t.Errorf("new key: %d", r.Status)
		}
		deadline := time.Now().Add(10 * time.Second)
		for s.do(t, http.MethodGet, "/v1/modules", old.Key, "", nil).Status == 200 && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		r = s.do(t, http.MethodGet, "/v1/modules", old.Key, "", nil)
		if _, detail := r.problem(t); r.Status != 401 || !strings.Contains(detail, "expired") {
			t.Errorf("old key after its grace: %d %s", r.Status, r.Body)
		}
	})

	t.Run("tenant isolation over REST and NATS", func(t *testing.T) {
		before := s.executionsRun(t)
		restIDs := []struct{ method, path string }{
			{http.MethodGet, "/v1/modules/" + modA.ID},
			{http.MethodDelete, "/v1/modules/" + modA.ID},
			{http.MethodGet, "/v1/executions/" + exA.ID},
			{http.MethodDelete, "/v1/keys/" + keyIDA},
			{http.MethodPost, "/v1/keys/" + keyIDA + "/rotate"},
		}
		for _, c := range restIDs {
			r := s.do(t, c.method, c.path, b, "application/json", []byte("{}"))
			if code, _ := r.problem(t); r.Status != 404 || code != "not_found" {
				t.Errorf("B %s %s: %d %s", c.method, c.path, r.Status, r.Body)
			}
		}
		if r, _ := s.execute(t, b, schemas.ExecutionRequest{ModuleID: modA.ID}); r.Status != 404 {
			t.Errorf("B runs A's module: %d", r.Status)
		}
		mod, _ := json.Marshal(schemas.IDRequest{ID: modA.ID})
		ex, _ := json.Marshal(schemas.IDRequest{ID: exA.ID})
		run, _ := json.Marshal(schemas.ExecutionRequest{ModuleID: modA.ID})
		for _, c := range []struct {
			op   string
			body []byte
		}{{schemas.OpModulesGet, mod}, {schemas.OpModulesDelete, mod}, {schemas.OpExecutionsGet, ex}, {schemas.OpExecutionsCreate, run}} {
			if st, data := natsCall(t, nc, c.op, b, c.body); st != "404" {
				t.Errorf("B over NATS %s: %s %s", c.op, st, data)
			}
		}
		var keysB schemas.KeyList
		s.do(t, http.MethodGet, "/v1/keys", b, "", nil).decode(t, &keysB)
		for _, k := range keysB.Keys {
			if k.TenantID != "tenant-b" {
				t.Errorf("B sees key %+v", k)
			}
		}
		// Admin endpoints refuse tenant keys.
		for _, c := range []struct{ method, path string }{
			{http.MethodGet, "/v1/admin/tenants"}, {http.MethodPost, "/v1/admin/tenants"}, {http.MethodPatch, "/v1/admin/tenants/tenant-b"},
			{http.MethodGet, "/v1/admin/keys"}, {http.MethodPost, "/v1/admin/keys"}, {http.MethodDelete, "/v1/admin/keys/" + keyIDA},
		} {
			if r := s.do(t, c.method, c.path, b, "application/json", []byte("{}")); r.Status != 403 {
				t.Errorf("tenant key on %s %s: %d %s", c.method, c.path, r.Status, r.Body)
			}
		}
		// Bad credentials, over REST and NATS.
		badKeys := map[string]string{
			"malformed":      "not-a-key",
			"truncated":      a[:len(a)-3],
			"wrong checksum": a[:len(a)-1] + flip(a[len(a)-1:]),
			"unknown":        "ww_" + strings.Repeat("A", 43) + "_AAAAAA",
		}
		for name, bad := range badKeys {
			if r := s.do(t, http.MethodGet, "/v1/modules", bad, "", nil); r.Status != 401 {
				t.Errorf("%s key over REST: %d", name, r.Status)
			}
			if st, _ := natsCall(t, nc, schemas.OpExecutionsCreate, bad, run); st != "401" {
				t.Errorf("%s key over NATS: %s", name, st)
			}
		}
		if after := s.executionsRun(t); after != before {
			t.Errorf("refused requests reached the executor: executions %d -> %d", before, after)
		}
	})

	t.Run("admin", func(t *testing.T) {
		var l schemas.TenantList
		s.do(t, http.MethodGet, "/v1/admin/tenants", s.AdminKey, "", nil).decode(t, &l)
		ids := map[string]bool{}
		for _, tn := range l.Tenants {
			ids[tn.ID] = true
		}
		if !ids["tenant-a"] || !ids["tenant-b"] || !ids["dev"] {
			t.Errorf("tenants: %+v", l)
		}
		yes, no := true, false
		patch, _ := json.Marshal(schemas.UpdateTenantRequest{Suspended: &yes})
		if r := s.do(t, http.MethodPatch, "/v1/admin/tenants/tenant-b", s.AdminKey, "application/json", patch); r.Status != 200 {
			t.Fatalf("suspend: %d %s", r.Status, r.Body)
		}
		waitStatus(t, s, b, 403)
		patch, _ = json.Marshal(schemas.UpdateTenantRequest{Suspended: &no, Tier: "free"})
		s.do(t, http.MethodPatch, "/v1/admin/tenants/tenant-b", s.AdminKey, "application/json", patch)
		waitStatus(t, s, b, 200)
		// B's basic key is now capped at the tenant's free tier.
		r, _ := s.execute(t, b, schemas.ExecutionRequest{ModuleBase64: b64(fixtures.Wasm("hello"))})
		if r.Header.Get("RateLimit-Limit") != "10" {
			t.Errorf("after the downgrade RateLimit-Limit is %q, want the free tier's 10", r.Header.Get("RateLimit-Limit"))
		}
		var kl schemas.KeyList
		s.do(t, http.MethodGet, "/v1/admin/keys?tenant_id=tenant-a", s.AdminKey, "", nil).decode(t, &kl)
		if len(kl.Keys) < 2 || kl.Keys[0].LastUsedAt == nil {
			t.Errorf("admin key list: %+v", kl)
		}
	})
}

func waitStatus(t *testing.T, s *system, key string, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if s.do(t, http.MethodGet, "/v1/modules", key, "", nil).Status == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("status never became %d", want)
}

func flip(s string) string {
	b := []byte(s)
	if b[0] == 'A' {
		b[0] = 'B'
	} else {
		b[0] = 'A'
	}
	return string(b)
}

func mustJSON(v any) []byte { b, _ := json.Marshal(v); return b }
