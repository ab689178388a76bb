package executor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmwiz/wasmwiz/internal/natstest"
	"github.com/wasmwiz/wasmwiz/internal/streams"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// moduleStore is the modules object store of a new embedded server.
func moduleStore(t *testing.T) jetstream.ObjectStore {
	t.Helper()
	js := natstest.JetStream(t, natstest.RunJetStream(t))
	ctx := context.Background()
	if err := streams.Ensure(ctx, js, streams.Options{}); err != nil {
		t.Fatal(err)
	}
	store, err := js.ObjectStore(ctx, schemas.ObjectModules)
	if err != nil {
		t.Fatal(err)
	}
	return store
}

func TestModuleCache(t *testing.T) {
	ctx := context.Background()
	store := moduleStore(t)
	put := func(b []byte) string {
		sum := sha256.Sum256(b)
		h := hex.EncodeToString(sum[:])
		if _, err := store.PutBytes(ctx, schemas.ModuleObjectName(h), b); err != nil {
			t.Fatal(err)
		}
		return h
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "leftover.123.tmp"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	m, _ := newMetrics(nil)
	c, err := newModuleCache(dir, store, m, 250)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "leftover.123.tmp")); !os.IsNotExist(err) {
		t.Errorf("temporary file left: %v", err)
	}
	a, b, big := put(make([]byte, 100)), put(make([]byte, 101)), put(make([]byte, 300))

	p, err := c.get(ctx, a, 1000)
	if got, _ := os.ReadFile(p); err != nil || len(got) != 100 {
		t.Fatalf("get a: %v, %d bytes", err, len(got))
	}
	if _, err := c.get(ctx, b, 1000); err != nil { // a and b held: 201 bytes
		t.Fatal(err)
	}
	if _, err := c.get(ctx, big, 1000); err != nil { // over the bound, but everything is held
		t.Fatal(err)
	}
	for _, h := range []string{a, b, big} {
		if _, err := os.Stat(c.path(h)); err != nil {
			t.Errorf("held file %s removed", h)
		}
	}
	c.release(a) // a is the least recently used and free: it goes
	if _, err := os.Stat(c.path(a)); !os.IsNotExist(err) {
		t.Errorf("a not evicted")
	}
	c.release(b)
	c.release(big) // 401 bytes: b (older) goes, then big
	if _, err := os.Stat(c.path(b)); !os.IsNotExist(err) {
		t.Errorf("b not evicted")
	}
	if c.total > 250 {
		t.Errorf("cache holds %d bytes", c.total)
	}

	// Limits and failures.
	if _, err := c.get(ctx, a, 99); err == nil {
		t.Error("a module over the size limit was served")
	}
	var merr *moduleError
	if _, err := c.get(ctx, hex.EncodeToString(make([]byte, 32)), 1000); !errors.Is(err, errModuleNotFound) {
		t.Errorf("missing module: %v", err)
	}
	// Bytes stored under another module's name are refused.
	if _, err := store.PutBytes(ctx, schemas.ModuleObjectName(a), []byte("not a")); err != nil {
		t.Fatal(err)
	}
	c.release(a) // (no hold: no-op)
	if c2, _ := newModuleCache(t.TempDir(), store, m, 0); c2 != nil {
		if _, err := c2.get(ctx, a, 1000); !errors.As(err, &merr) {
			t.Errorf("mismatching bytes: %v", err)
		}
	}

	// A restarted node finds its files.
	if _, err := c.get(ctx, b, 1000); err != nil {
		t.Fatal(err)
	}
	c.release(b)
	c3, err := newModuleCache(dir, store, m, 0)
	if err != nil || c3.files[b] == nil || c3.total != 101 {
		t.Errorf("reopened cache: %v %v", err, c3.files)
	}
}

// On a replicated store a miss is asked again before it is believed: a module that appears
// meanwhile (a follower catching up) is served, and a missing one still fails.
func TestModuleCache_ReplicatedMiss(t *testing.T) {
	ctx := context.Background()
	store := moduleStore(t)
	m, _ := newMetrics(nil)
	c, err := newModuleCache(t.TempDir(), store, m, 0)
	if err != nil {
		t.Fatal(err)
	}
	c.replicated = true
	late := make([]byte, 42)
	sum := sha256.Sum256(late)
	h := hex.EncodeToString(sum[:])
	go func() {
		time.Sleep(30 * time.Millisecond)
		if _, err := store.PutBytes(ctx, schemas.ModuleObjectName(h), late); err != nil {
			t.Error(err)
		}
	}()
	if p, err := c.get(ctx, h, 1000); err != nil || p != c.path(h) {
		t.Errorf("module stored after the first miss: %v", err)
	}
	if _, err := c.get(ctx, hex.EncodeToString(make([]byte, 32)), 1000); !errors.Is(err, errModuleNotFound) {
		t.Errorf("missing module: %v", err)
	}
}
