package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmwiz/wasmwiz/internal/natstest"
	"github.com/wasmwiz/wasmwiz/schemas"
)

func TestAPIKey_Format(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		k, err := NewAPIKey()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(k, "ww_") || len(k) != 3+43+1+6 {
			t.Fatalf("bad key shape %q", k)
		}
		if !WellFormedAPIKey(k) {
			t.Fatalf("own key %q not well formed", k)
		}
		if seen[k] {
			t.Fatal("duplicate key")
		}
		seen[k] = true
		// Any single-character change breaks the checksum (or the shape).
		b := []byte(k)
		b[10] ^= 0x01
		if WellFormedAPIKey(string(b)) {
			t.Fatalf("corrupted key %q accepted", b)
		}
	}
	for _, bad := range []string{"", "ww_", "Bearer x", "ww_" + strings.Repeat("A", 43) + "_AAAAAA", strings.Repeat("x", 53)} {
		if WellFormedAPIKey(bad) {
			t.Errorf("WellFormedAPIKey(%q) = true", bad)
		}
	}
}

func FuzzWellFormedAPIKey(f *testing.F) {
	k, _ := NewAPIKey()
	f.Add(k)
	f.Add("ww__")
	f.Fuzz(func(t *testing.T, s string) {
		_ = WellFormedAPIKey(s)
	})
}

// TestGateway_KeyManagedAtOnce: a key made through a gateway can be listed, rotated and revoked
// through that gateway at once, before its keys watch delivers it (here the watch never runs).
func TestGateway_KeyManagedAtOnce(t *testing.T) {
	srv := natstest.RunJetStream(t)
	ctx := context.Background()
	g := newTestGateway(t, srv)
	if _, err := g.admin().CreateTenant(ctx, "acme", schemas.TierBasic); err != nil {
		t.Fatal(err)
	}
	p := mustPrincipal(t, g, mustAdminKey(t, g, schemas.CreateKeyRequest{TenantID: "acme", Name: "maker"}))
	k, err := g.newKey(ctx, p, &schemas.NewKeyRequest{Name: "fresh"})
	if err != nil {
		t.Fatal(err)
	}
	if l, err := g.listKeys(ctx, p); err != nil || len(l.Keys) != 2 || l.Keys[1].ID != k.Record.ID {
		t.Fatalf("list right after create: %v %+v", err, l)
	}
	r, err := g.rotateKey(ctx, p, k.Record.ID, &schemas.RotateKeyRequest{OldKeyExpiresIn: 60}, false)
	if err != nil {
		t.Fatalf("rotate right after create: %v", err)
	}
	if old, _, ok := g.keyring.keyByID(k.Record.ID); !ok || old.ExpiresAt == nil || old.ReplacedBy != r.Record.ID {
		t.Errorf("the rotated key's expiry is not applied here: %+v", old)
	}
	if err := g.revokeKey(ctx, p, r.Record.ID, false); err != nil {
		t.Errorf("revoke right after rotate: %v", err)
	}
}

// newTestGateway makes a gateway on srv whose keys watch does not run (tests that want it call
// runKeyring), with a JWT signing key.
func newTestGateway(t *testing.T, srv *server.Server) *Server {
	t.Helper()
	return newTestGatewayTiers(t, srv, nil, filepath.Join(t.TempDir(), "jwt.pem"))
}

func newTestGatewayTiers(t *testing.T, srv *server.Server, tiers map[string]schemas.Tier, jwtKey string) *Server {
	t.Helper()
	if _, err := LoadSigner(jwtKey, true); err != nil {
		t.Fatal(err)
	}
	g, err := New(Config{HTTPAddr: "127.0.0.1:0", Tiers: tiers, JWTKeyFile: jwtKey, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
		Registerer: prometheus.NewRegistry(), Gatherer: prometheus.NewRegistry()}, natstest.Connect(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.open(context.Background()); err != nil {
		t.Fatal(err)
	}
	return g
}

// runKeyring runs g's keys watch until the test ends and waits until it has loaded the buckets.
func runKeyring(t *testing.T, g *Server) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = g.keyring.run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	natstest.CheckFor(t, 10*time.Second, poll, state(g.keyring.isSynced, func() string { return "keyring never synced" }))
}

func mustAdminKey(t *testing.T, g *Server, req schemas.CreateKeyRequest) *schemas.CreatedKey {
	t.Helper()
	k, err := g.admin().CreateKey(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// mustPrincipal authenticates key (or token) on g as a request would.
func mustPrincipal(t *testing.T, g *Server, k *schemas.CreatedKey) *Principal {
	t.Helper()
	p, err := g.keyring.authenticate(context.Background(), "Bearer "+k.Key)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// keyRecords reads every key record of tenant straight from the keys bucket.
func keyRecords(t *testing.T, g *Server, tenant string) map[string]schemas.Key {
	t.Helper()
	ctx := context.Background()
	out := map[string]schemas.Key{}
	lister, err := g.keysKV.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for h := range lister.Keys() {
		e, err := g.keysKV.Get(ctx, h)
		if err != nil {
			continue
		}
		var rec schemas.Key
		if err := json.Unmarshal(e.Value(), &rec); err != nil {
			t.Fatal(err)
		}
		if rec.TenantID == tenant {
			out[rec.ID] = rec
		}
	}
	return out
}

func wantCode(t *testing.T, what string, err error, code schemas.Code) {
	t.Helper()
	var se *schemas.Error
	if !errors.As(err, &se) || se.Code != code {
		t.Errorf("%s: got %v, want %s", what, err, code)
	}
}

// TestKeys_Hole2_RevocationSticksAcrossGateways closes issue 12 hole 2 ("revocation does not
// stick") where two gateways disagree: g2 still holds a key that g1 has just revoked (its watch
// has not delivered the purge; here it never runs). The revoked key can neither rotate itself
// back to life nor make keys or tokens on g2, and the owner rotating it on g2 does not write the
// record back: every key write is compare-and-set on the revision read from the store.
func TestKeys_Hole2_RevocationSticksAcrossGateways(t *testing.T) {
	srv := natstest.RunJetStream(t)
	ctx := context.Background()
	jwt := filepath.Join(t.TempDir(), "jwt.pem")
	g1 := newTestGatewayTiers(t, srv, nil, jwt)
	g2 := newTestGatewayTiers(t, srv, nil, jwt)
	if _, err := g1.admin().CreateTenant(ctx, "acme", schemas.TierBasic); err != nil {
		t.Fatal(err)
	}
	owner := mustAdminKey(t, g1, schemas.CreateKeyRequest{TenantID: "acme", Name: "owner"})
	leaked := mustAdminKey(t, g1, schemas.CreateKeyRequest{TenantID: "acme", Name: "leaked"})
	pOwner1 := mustPrincipal(t, g1, owner)
	pOwner2, pLeaked2 := mustPrincipal(t, g2, owner), mustPrincipal(t, g2, leaked)
	mustPrincipal(t, g1, leaked) // g1 knows it, to revoke it

	if err := g1.revokeKey(ctx, pOwner1, leaked.Record.ID, false); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := g2.keyring.keyByID(leaked.Record.ID); !ok {
		t.Fatal("test setup: g2 should still hold the revoked key")
	}
	_, err := g2.rotateKey(ctx, pLeaked2, leaked.Record.ID, &schemas.RotateKeyRequest{OldKeyExpiresIn: 7 * 86400}, false)
	wantCode(t, "the revoked key rotates itself on g2", err, schemas.CodeUnauthorized)
	_, err = g2.newKey(ctx, pLeaked2, &schemas.NewKeyRequest{Name: "persist"})
	wantCode(t, "the revoked key makes a key on g2", err, schemas.CodeUnauthorized)
	_, err = g2.issueToken(ctx, pLeaked2)
	wantCode(t, "the revoked key trades itself for a token on g2", err, schemas.CodeUnauthorized)
	err = g2.revokeKey(ctx, pLeaked2, owner.Record.ID, false)
	wantCode(t, "the revoked key revokes its owner on g2", err, schemas.CodeUnauthorized)
	_, err = g2.rotateKey(ctx, pOwner2, leaked.Record.ID, &schemas.RotateKeyRequest{OldKeyExpiresIn: 3600}, false)
	wantCode(t, "the owner rotates the revoked key on g2", err, schemas.CodeNotFound)

	recs := keyRecords(t, g1, "acme")
	if _, ok := recs[leaked.Record.ID]; ok || len(recs) != 1 {
		t.Errorf("after the revocation the store holds %d keys of acme (leaked one back: %v), want only the owner's", len(recs), ok)
	}
}

// TestKeys_Hole2_LateReadDoesNotResurrect closes the cache side of issue 12 hole 2: a gateway
// that read a key record (a lookup that missed its watched copy, a read-back after a write) just
// before the key was revoked must not put the revoked key back into its copy after its watch has
// removed it; nothing would ever remove it again. Found by TestSecurity_Keys/Hole2 (about one
// run in two answered 200 for a revoked key on one gateway).
func TestKeys_Hole2_LateReadDoesNotResurrect(t *testing.T) {
	srv := natstest.RunJetStream(t)
	ctx := context.Background()
	g := newTestGateway(t, srv)
	runKeyring(t, g)
	if _, err := g.admin().CreateTenant(ctx, "acme", schemas.TierBasic); err != nil {
		t.Fatal(err)
	}
	k := mustAdminKey(t, g, schemas.CreateKeyRequest{TenantID: "acme"})
	h := HashAPIKey(k.Key)
	before, err := g.keysKV.Get(ctx, h) // the read made just before the revocation
	if err != nil {
		t.Fatal(err)
	}
	if err := g.keysKV.Purge(ctx, h, jetstream.LastRevision(before.Revision())); err != nil {
		t.Fatal(err)
	}
	natstest.CheckFor(t, 10*time.Second, poll, state(func() bool { return g.keyring.watchedRevision() > before.Revision() }, func() string { return "the watch never delivered the revocation" }))
	g.keyring.applyKey(before, false) // the late read lands
	if _, err := g.keyring.authenticate(ctx, "Bearer "+k.Key); err == nil {
		t.Fatal("a revoked key authenticates again after a late read")
	}

	// A key this gateway revokes while its watch lags (here: does not run) stays revoked when the
	// watch then delivers the key's older put.
	lag := newTestGateway(t, srv)
	k2 := mustAdminKey(t, lag, schemas.CreateKeyRequest{TenantID: "acme"})
	p := mustPrincipal(t, lag, mustAdminKey(t, lag, schemas.CreateKeyRequest{TenantID: "acme", Name: "owner"}))
	put, err := lag.keysKV.Get(ctx, HashAPIKey(k2.Key))
	if err != nil {
		t.Fatal(err)
	}
	mustPrincipal(t, lag, k2)
	if err := lag.revokeKey(ctx, p, k2.Record.ID, false); err != nil {
		t.Fatal(err)
	}
	lag.keyring.applyKey(put, true)
	if _, err := lag.keyring.authenticate(ctx, "Bearer "+k2.Key); err == nil {
		t.Fatal("a key revoked here authenticates again when the lagging watch delivers its older put")
	}
}
