package gateway

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

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
	g, err := New(ctx, Config{HTTPAddr: "127.0.0.1:0", Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
		Registerer: prometheus.NewRegistry(), Gatherer: prometheus.NewRegistry()}, natstest.Connect(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.admin().CreateTenant(ctx, "acme", schemas.TierBasic); err != nil {
		t.Fatal(err)
	}
	p := &Principal{TenantID: "acme", KeyID: "key_maker", Tier: g.cfg.Tiers[schemas.TierBasic], Scopes: schemas.AllScopes}
	k, err := g.newKey(ctx, p, &schemas.NewKeyRequest{Name: "fresh"})
	if err != nil {
		t.Fatal(err)
	}
	if l, err := g.listKeys(ctx, p); err != nil || len(l.Keys) != 1 || l.Keys[0].ID != k.Record.ID {
		t.Fatalf("list right after create: %v %+v", err, l)
	}
	r, err := g.rotateKey(ctx, p, k.Record.ID, &schemas.RotateKeyRequest{OldKeyExpiresIn: 60})
	if err != nil {
		t.Fatalf("rotate right after create: %v", err)
	}
	if old, _, ok := g.keyring.keyByID(k.Record.ID); !ok || old.ExpiresAt == nil {
		t.Errorf("the rotated key's expiry is not applied here: %+v", old)
	}
	if err := g.revokeKey(ctx, p, r.Record.ID); err != nil {
		t.Errorf("revoke right after rotate: %v", err)
	}
}
