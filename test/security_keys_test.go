package test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// TestSecurity_Keys closes the key-management holes of issue 12 (holes 2, 3, 4, 5 and the
// unlimited keys per tenant), one subtest each, named after the hole, against the real binary:
// `wasmwiz dev` plus a second `wasmwiz gateway` process on its NATS. Key management has no direct
// NATS operations; where a hole's result is a credential, the subtest also uses it over NATS.
// Run: go test ./test -run TestSecurity_Keys -v
func TestSecurity_Keys(t *testing.T) {
	// free tenants may hold 4 live keys, so that the cap is reached quickly.
	tiersFile := filepath.Join(t.TempDir(), "tiers.json")
	if err := os.WriteFile(tiersFile, []byte(`{"free": {"max_keys": 4}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startDevEnv(t, t.TempDir(), "WASMWIZ_TIERS_FILE="+tiersFile)
	addr := freeAddr(t)
	gw2 := start(t, append(s.natsRoleEnv("gateway"), "WASMWIZ_HTTP_ADDR="+addr, "WASMWIZ_TIERS_FILE="+tiersFile), "gateway")
	waitReady(t, "http://"+addr, gw2)
	s2 := &system{URL: "http://" + addr}
	nc, err := s.connectNATS()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	// Hole 2: a key that rotates itself with a long grace while its owner revokes it used to
	// come back: rotation wrote the old record back without checking that it still existed.
	// Here the leaked key rotates itself through the second gateway while the owner revokes it
	// through the first, at the same moment, twenty times; no revoked key may work afterwards,
	// over REST on either gateway or over NATS. (A replacement made by a rotation that won the
	// race is a new key, listed with the owner's keys; the revocation was of the old one.)
	t.Run("Hole2_RevocationDoesNotStick", func(t *testing.T) {
		owner := s.newTenant(t, "hole2", "basic")
		var revoked []*schemas.CreatedKey
		outcomes := map[[2]int]int{}
		for range 20 {
			leaked := s.newKey(t, owner, schemas.NewKeyRequest{Name: "leaked"})
			revoked = append(revoked, leaked)
			var rot, del int
			var wg sync.WaitGroup
			wg.Go(func() {
				rot = s2.do(t, http.MethodPost, "/v1/keys/"+leaked.Record.ID+"/rotate", leaked.Key, "application/json", mustJSON(map[string]int{"old_key_expires_in_seconds": 604800})).Status
			})
			wg.Go(func() {
				del = s.do(t, http.MethodDelete, "/v1/keys/"+leaked.Record.ID, owner, "", nil).Status
			})
			wg.Wait()
			outcomes[[2]int{rot, del}]++
			if del != 204 {
				t.Errorf("the owner's revocation answered %d", del)
			}
		}
		t.Logf("(rotate, revoke) outcomes: %v", outcomes)
		// Let both gateways' watches catch up: a key made now is seen by the second gateway's
		// watch only after everything written before it.
		sentinel := s.newKey(t, owner, schemas.NewKeyRequest{Name: "sentinel"})
		waitKeyListed(t, s2, owner, sentinel.Record.ID)
		for _, k := range revoked {
			for _, sys := range []*system{s, s2} {
				if r := sys.do(t, http.MethodGet, "/v1/keys", k.Key, "", nil); r.Status != 401 {
					t.Errorf("revoked key %s answered %d on %s: the revocation did not stick", k.Record.ID, r.Status, sys.URL)
				}
			}
			if st, _ := natsCall(t, nc, schemas.OpModulesList, k.Key, nil); st != "401" {
				t.Errorf("revoked key %s over NATS: %s", k.Record.ID, st)
			}
		}
		var l schemas.KeyList
		s.do(t, http.MethodGet, "/v1/keys", owner, "", nil).decode(t, &l)
		for _, k := range l.Keys {
			if slices.ContainsFunc(revoked, func(r *schemas.CreatedKey) bool { return r.Record.ID == k.ID }) {
				t.Errorf("revoked key %s is listed again", k.ID)
			}
		}
	})

	// Hole 3: a keys:manage key rotated an admin key of its own tenant and received a new admin
	// key. Now /v1/keys never creates, rotates or revokes an admin key (even for an admin caller);
	// /v1/admin/keys does, with an admin key. And a key rotates only keys of a tier at most its own.
	t.Run("Hole3_PrivilegeEscalationToPlatformAdmin", func(t *testing.T) {
		manager := s.newKey(t, s.AdminKey, schemas.NewKeyRequest{Name: "tenant-side manager"})
		if manager.Record.Admin {
			t.Fatalf("/v1/keys made an admin key: %+v", manager.Record)
		}
		var target schemas.CreatedKey
		s.do(t, http.MethodPost, "/v1/admin/keys", s.AdminKey, "application/json", mustJSON(schemas.CreateKeyRequest{TenantID: "admin", Admin: true, Name: "second operator"})).decode(t, &target)
		if !target.Record.Admin {
			t.Fatalf("admin key: %+v", target.Record)
		}
		for _, who := range []struct{ name, key string }{{"a keys:manage key", manager.Key}, {"an admin key", s.AdminKey}} {
			r := s.do(t, http.MethodPost, "/v1/keys/"+target.Record.ID+"/rotate", who.key, "application/json", []byte(`{}`))
			if code, _ := r.problem(t); r.Status != 403 || code != "forbidden" {
				t.Errorf("%s rotated an admin key through /v1/keys: %d %s", who.name, r.Status, r.Body)
			}
			r = s.do(t, http.MethodDelete, "/v1/keys/"+target.Record.ID, who.key, "", nil)
			if r.Status != 403 {
				t.Errorf("%s revoked an admin key through /v1/keys: %d %s", who.name, r.Status, r.Body)
			}
		}
		r := s.do(t, http.MethodPost, "/v1/keys", manager.Key, "application/json", []byte(`{"name": "sneaky", "admin": true}`))
		var made schemas.CreatedKey
		if r.Status == 201 {
			r.decode(t, &made)
		}
		if made.Record.Admin {
			t.Errorf("/v1/keys made an admin key from {\"admin\": true}: %s", r.Body)
		}
		if r := s.do(t, http.MethodPost, "/v1/admin/keys/"+target.Record.ID+"/rotate", manager.Key, "application/json", []byte(`{}`)); r.Status != 403 {
			t.Errorf("a tenant key on /v1/admin/keys/{id}/rotate: %d %s", r.Status, r.Body)
		}
		// The operator's way: /v1/admin/keys with an admin key.
		r = s.do(t, http.MethodPost, "/v1/admin/keys/"+target.Record.ID+"/rotate", s.AdminKey, "application/json", []byte(`{}`))
		var rotated schemas.CreatedKey
		if r.Status == 201 {
			r.decode(t, &rotated)
		}
		if r.Status != 201 || !rotated.Record.Admin {
			t.Errorf("admin rotation of an admin key: %d %s", r.Status, r.Body)
		} else if r := s.do(t, http.MethodGet, "/v1/admin/tenants", rotated.Key, "", nil); r.Status != 200 {
			t.Errorf("the rotated admin key: %d", r.Status)
		}
		if r := s.do(t, http.MethodDelete, "/v1/admin/keys/"+rotated.Record.ID, s.AdminKey, "", nil); r.Status != 204 {
			t.Errorf("admin revocation of an admin key: %d %s", r.Status, r.Body)
		}

		// Tier: a free key made by a pro key cannot rotate the pro key into a new pro key.
		pro := s.newTenant(t, "hole3", "pro")
		low := s.newKey(t, pro, schemas.NewKeyRequest{Name: "low", Tier: "free"})
		var proKeys schemas.KeyList
		s.do(t, http.MethodGet, "/v1/keys", pro, "", nil).decode(t, &proKeys)
		proID := proKeys.Keys[0].ID
		r = s.do(t, http.MethodPost, "/v1/keys/"+proID+"/rotate", low.Key, "application/json", []byte(`{}`))
		if r.Status != 403 {
			t.Errorf("a free key rotated a pro key: %d %s", r.Status, r.Body)
		}
	})

	// Hole 4: "scopes": [] made a key with every scope (an empty list was stored as "none
	// given"). Now an empty list is a 422 with code empty_scopes; an absent field means the
	// caller's own scopes; and a narrower key cannot rotate a broader one into its hands.
	t.Run("Hole4_EmptyScopesMakeAnAllScopesKey", func(t *testing.T) {
		full := s.newTenant(t, "hole4", "basic")
		r := s.do(t, http.MethodPost, "/v1/keys", full, "application/json", []byte(`{"name": "none", "scopes": []}`))
		if code, detail := r.problem(t); r.Status != 422 || code != "empty_scopes" {
			t.Errorf(`POST /v1/keys {"scopes": []}: %d %s %s`, r.Status, code, detail)
			if r.Status == 201 {
				var k schemas.CreatedKey
				r.decode(t, &k)
				if st, _ := natsCall(t, nc, schemas.OpModulesList, k.Key, nil); st == "200" {
					t.Errorf("and the key made from an empty scope list lists modules over NATS")
				}
			}
		}
		r = s.do(t, http.MethodPost, "/v1/admin/keys", s.AdminKey, "application/json", []byte(`{"tenant_id": "hole4", "scopes": []}`))
		if code, _ := r.problem(t); r.Status != 422 || code != "empty_scopes" {
			t.Errorf(`POST /v1/admin/keys {"scopes": []}: %d %s`, r.Status, r.Body)
		}
		narrow := s.newKey(t, full, schemas.NewKeyRequest{Name: "narrow", Scopes: []string{schemas.ScopeKeysManage}})
		child := s.newKey(t, narrow.Key, schemas.NewKeyRequest{Name: "child"})
		if !slices.Equal(child.Record.Scopes, []string{schemas.ScopeKeysManage}) {
			t.Errorf("absent scopes gave %v, want the caller's [keys:manage]", child.Record.Scopes)
		}
		if st, _ := natsCall(t, nc, schemas.OpModulesList, child.Key, nil); st != "403" {
			t.Errorf("the keys:manage-only child lists modules over NATS: %s", st)
		}
		var l schemas.KeyList
		s.do(t, http.MethodGet, "/v1/keys", full, "", nil).decode(t, &l)
		fullID := l.Keys[0].ID
		r = s.do(t, http.MethodPost, "/v1/keys/"+fullID+"/rotate", narrow.Key, "application/json", []byte(`{}`))
		if r.Status != 403 {
			t.Errorf("a keys:manage-only key rotated an all-scopes key: %d %s", r.Status, r.Body)
			if r.Status == 201 {
				var k schemas.CreatedKey
				r.decode(t, &k)
				if st, _ := natsCall(t, nc, schemas.OpModulesList, k.Key, nil); st == "200" {
					t.Errorf("and the narrower key now holds a key that lists modules over NATS")
				}
			}
		}
	})

	// Hole 5: a 15-minute token or a 1-hour key made keys that never expire; rotation left the
	// old key a day (up to 30 days) in which it could rotate or revoke its replacement. Now a key
	// made by a credential expires no later than it, the grace defaults to an hour and is at
	// most 7 days, and a key in its grace manages no key but itself.
	t.Run("Hole5_ShortLivedCredentialsMintPermanentKeys", func(t *testing.T) {
		main := s.newTenant(t, "hole5", "basic")
		var tok schemas.TokenResponse
		s.do(t, http.MethodPost, "/v1/auth/token", main, "", nil).decode(t, &tok)
		fromToken := s.newKey(t, tok.Token, schemas.NewKeyRequest{Name: "from a token"})
		if e := fromToken.Record.ExpiresAt; e == nil || e.After(tok.ExpiresAt) {
			t.Errorf("a key made by a token expiring at %s expires at %v", tok.ExpiresAt, e)
		}
		later := time.Now().Add(30 * 24 * time.Hour).UTC()
		if r := s.do(t, http.MethodPost, "/v1/keys", tok.Token, "application/json", mustJSON(schemas.NewKeyRequest{ExpiresAt: &later})); r.Status != 403 {
			t.Errorf("a token made a key that outlives it: %d %s", r.Status, r.Body)
		}
		hour := time.Now().Add(time.Hour).UTC()
		hourKey := s.newKey(t, main, schemas.NewKeyRequest{Name: "an hour", ExpiresAt: &hour})
		child := s.newKey(t, hourKey.Key, schemas.NewKeyRequest{Name: "child of an hour"})
		if e := child.Record.ExpiresAt; e == nil || e.After(hour.Add(time.Second)) {
			t.Errorf("a key made by a key expiring at %s expires at %v", hour, e)
		}
		var l schemas.KeyList
		s.do(t, http.MethodGet, "/v1/keys", main, "", nil).decode(t, &l)
		mainID := l.Keys[0].ID
		if r := s.do(t, http.MethodPost, "/v1/keys/"+mainID+"/rotate", hourKey.Key, "application/json", []byte(`{}`)); r.Status != 403 {
			t.Errorf("an hour key rotated a permanent key (into a permanent key): %d %s", r.Status, r.Body)
		}

		// The grace: an hour by default, at most 7 days.
		spare := s.newKey(t, main, schemas.NewKeyRequest{Name: "spare"})
		r := s.do(t, http.MethodPost, "/v1/keys/"+spare.Record.ID+"/rotate", main, "application/json", []byte(`{}`))
		if r.Status != 201 {
			t.Fatalf("rotate: %d %s", r.Status, r.Body)
		}
		s.do(t, http.MethodGet, "/v1/keys", main, "", nil).decode(t, &l)
		for _, k := range l.Keys {
			if k.ID == spare.Record.ID && (k.ExpiresAt == nil || time.Until(*k.ExpiresAt) > 61*time.Minute || time.Until(*k.ExpiresAt) < 55*time.Minute) {
				t.Errorf("default grace: the old key expires at %v, want in an hour", k.ExpiresAt)
			}
		}
		other := s.newKey(t, main, schemas.NewKeyRequest{Name: "other"})
		r = s.do(t, http.MethodPost, "/v1/keys/"+other.Record.ID+"/rotate", main, "application/json", []byte(`{"old_key_expires_in_seconds": 691200}`))
		if r.Status != 422 {
			t.Errorf("an 8-day grace: %d %s", r.Status, r.Body)
		}

		// A key in its grace finishes in-flight work and manages nothing but itself.
		old := s.newKey(t, main, schemas.NewKeyRequest{Name: "rotating itself"})
		r = s.do(t, http.MethodPost, "/v1/keys/"+old.Record.ID+"/rotate", old.Key, "application/json", []byte(`{}`))
		var fresh schemas.CreatedKey
		r.decode(t, &fresh)
		if r.Status != 201 {
			t.Fatalf("self-rotation: %d %s", r.Status, r.Body)
		}
		if r := s.do(t, http.MethodGet, "/v1/modules", old.Key, "", nil); r.Status != 200 {
			t.Errorf("the old key in its grace: %d", r.Status)
		}
		if st, _ := natsCall(t, nc, schemas.OpModulesList, old.Key, nil); st != "200" {
			t.Errorf("the old key in its grace over NATS: %s", st)
		}
		for _, c := range []struct{ what, method, path, body string }{
			{"rotate its replacement", http.MethodPost, "/v1/keys/" + fresh.Record.ID + "/rotate", `{}`},
			{"revoke its replacement", http.MethodDelete, "/v1/keys/" + fresh.Record.ID, ``},
			{"revoke another key", http.MethodDelete, "/v1/keys/" + other.Record.ID, ``},
			{"create a key", http.MethodPost, "/v1/keys", `{"name": "persist"}`},
		} {
			if r := s.do(t, c.method, c.path, old.Key, "application/json", []byte(c.body)); r.Status != 403 {
				t.Errorf("a key in its grace could %s: %d %s", c.what, r.Status, r.Body)
			}
		}
		if r := s.do(t, http.MethodGet, "/v1/modules", fresh.Key, "", nil); r.Status != 200 {
			t.Errorf("the replacement after its predecessor's attempts: %d", r.Status)
		}
		if r := s.do(t, http.MethodDelete, "/v1/keys/"+old.Record.ID, old.Key, "", nil); r.Status != 204 {
			t.Errorf("a key in its grace revoking itself: %d %s", r.Status, r.Body)
		}
	})

	// Weakness: keys per tenant were unlimited (8,905 made in 5 s). Now a tenant holds at most
	// its tier's max_keys live keys (4 for free here); above it: 409 key_limit, on create and on
	// rotate, until a key is revoked.
	t.Run("KeysPerTenantUnlimited", func(t *testing.T) {
		first := s.newTenant(t, "capped", "free")
		var ids []string
		for range 3 {
			ids = append(ids, s.newKey(t, first, schemas.NewKeyRequest{}).Record.ID)
		}
		for _, sys := range []*system{s, s2} {
			waitKeyListed(t, sys, first, ids[2])
			r := sys.do(t, http.MethodPost, "/v1/keys", first, "application/json", []byte(`{}`))
			if code, _ := r.problem(t); r.Status != 409 || code != "key_limit" {
				t.Errorf("a fifth key on %s: %d %s", sys.URL, r.Status, r.Body)
			}
		}
		if r := s.do(t, http.MethodPost, "/v1/keys/"+ids[0]+"/rotate", first, "application/json", []byte(`{}`)); r.Status != 409 {
			t.Errorf("rotation at the cap: %d %s", r.Status, r.Body)
		}
		if r := s.do(t, http.MethodDelete, "/v1/keys/"+ids[0], first, "", nil); r.Status != 204 {
			t.Fatalf("revoke: %d", r.Status)
		}
		s.newKey(t, first, schemas.NewKeyRequest{})
	})

	// The CLI follows: `keys rotate` asks for the 1-hour default grace, and admin keys are
	// rotated and revoked with `keys admin-rotate` / `keys admin-revoke`.
	t.Run("CLI", func(t *testing.T) {
		cli := func(key string, args ...string) string {
			t.Helper()
			p := start(t, []string{"WASMWIZ_URL=" + s.URL, "WASMWIZ_KEY=" + key}, append([]string{"keys"}, args...)...)
			<-p.done
			if p.err != nil {
				t.Fatalf("wasmwiz keys %v: %v\n%s", args, p.err, p.output())
			}
			return p.output()
		}
		var op schemas.CreatedKey
		s.do(t, http.MethodPost, "/v1/admin/keys", s.AdminKey, "application/json", mustJSON(schemas.CreateKeyRequest{TenantID: "admin", Admin: true, Name: "cli operator"})).decode(t, &op)
		out := cli(s.AdminKey, "admin-rotate", op.Record.ID)
		if !strings.Contains(out, "the old key "+op.Record.ID+" stays valid for 1h0m0s") {
			t.Errorf("admin-rotate: %s", out)
		}
		var l schemas.KeyList
		s.do(t, http.MethodGet, "/v1/admin/keys?tenant_id=admin", s.AdminKey, "", nil).decode(t, &l)
		var replacement string
		for _, k := range l.Keys {
			if k.ID == op.Record.ID {
				replacement = k.ReplacedBy
			}
		}
		if replacement == "" {
			t.Fatalf("the rotated admin key names no replacement: %+v", l.Keys)
		}
		cli(s.AdminKey, "admin-revoke", replacement)
		if out := cli(s.AdminKey, "list"); !strings.Contains(out, "rotated: replaced by "+replacement) {
			t.Errorf("keys list does not show the rotation:\n%s", out)
		}
	})
}

// waitKeyListed polls sys until key lists the key id: its watch has delivered it.
func waitKeyListed(t *testing.T, sys *system, key, id string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last []byte
	for time.Now().Before(deadline) {
		r := sys.do(t, http.MethodGet, "/v1/keys", key, "", nil)
		var l schemas.KeyList
		if json.Unmarshal(r.Body, &l) == nil && slices.ContainsFunc(l.Keys, func(k schemas.Key) bool { return k.ID == id }) {
			return
		}
		last = r.Body
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never listed key %s; last answer %s", sys.URL, id, last)
}
