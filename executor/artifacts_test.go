package executor

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wasmwiz/wasmwiz/internal/fixtures"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// cacheFiles lists the files of a node's wazero file cache (what its workers compiled or were
// given), by path, with their FileInfo.
func cacheFiles(tb testing.TB, n *Node) map[string]os.FileInfo {
	tb.Helper()
	paths, err := filepath.Glob(filepath.Join(n.cfg.CacheDir, "wazero", "wazero-*", "*"))
	if err != nil {
		tb.Fatal(err)
	}
	files := map[string]os.FileInfo{}
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			tb.Fatal(err)
		}
		files[p] = fi
	}
	return files
}

// TestNode_CompiledOncePerCluster: a module compiled on one node (its upload's compile) is not
// compiled again on another: the second node, which never saw it, fetches the artifact with the
// module and its worker loads it as it is (no file written, the fetched one untouched), while a
// module never compiled anywhere is compiled there (a file written: the check can tell).
func TestNode_CompiledOncePerCluster(t *testing.T) {
	e := startEnv(t, nil)
	a := e.node
	hello := e.putModule(fixtures.Wasm("hello"))
	if r := e.compile(hello, schemas.TierFree); r.Error != nil || r.NodeID != a.NodeID() {
		t.Fatalf("compile on the first node: %+v", r)
	}
	hexDigest, _ := schemas.ParseModuleID(hello)
	store, err := e.js.ObjectStore(context.Background(), schemas.ObjectCompiled)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := store.GetBytes(context.Background(), a.artifacts.objectName(hexDigest))
	if err != nil {
		t.Fatalf("the compile did not share its artifact: %v", err)
	}
	info, err := store.GetInfo(context.Background(), a.artifacts.objectName(hexDigest))
	if err != nil {
		t.Fatal(err)
	}
	name := nats.Header(info.Headers).Get(HeaderCacheFile)
	if local, err := os.ReadFile(filepath.Join(a.cfg.CacheDir, "wazero", filepath.FromSlash(name))); err != nil || !bytes.Equal(local, obj) {
		t.Fatalf("stored artifact %q is not the first node's file (%v)", name, err)
	}
	// A second node with an empty cache, the first one gone.
	e.stop()
	select {
	case <-e.done:
	case <-time.After(30 * time.Second):
		t.Fatal("first node did not stop")
	}
	b := e.startNode(nil)
	if len(cacheFiles(t, b)) != 0 {
		t.Fatal("the second node's cache is not empty")
	}
	if res := e.execute(newRequest(schemas.TierFree, hello)); res.Status != schemas.StatusSucceeded || res.NodeID != b.NodeID() {
		t.Fatalf("hello on the second node: %s on %s", res.Status, res.NodeID)
	}
	files := cacheFiles(t, b)
	fetched := filepath.Join(b.cfg.CacheDir, "wazero", filepath.FromSlash(name))
	if len(files) != 1 || files[fetched] == nil {
		t.Fatalf("second node's cache after the execution: %v, want only %s", keys(files), fetched)
	}
	before := files[fetched]
	if !before.ModTime().Equal(info.ModTime) { // the fetch sets it; a compile here would write a new file
		t.Fatalf("the second node's artifact dates from %v, not from the store (%v): it compiled the module", before.ModTime(), info.ModTime)
	}
	if got := counterValue(t, b.m.cacheHits.WithLabelValues("artifact")); got != 1 {
		t.Fatalf("artifact hits %v", got)
	}
	// Run it again in another worker to be sure it is read, not rewritten.
	for range 3 {
		if res := e.execute(newRequest(schemas.TierFree, hello)); res.Status != schemas.StatusSucceeded {
			t.Fatalf("hello again: %s", res.Status)
		}
	}
	if after := cacheFiles(t, b)[fetched]; after == nil || !os.SameFile(before, after) || !after.ModTime().Equal(before.ModTime()) {
		t.Fatal("the fetched artifact was rewritten: the worker compiled the module")
	}

	// The control: a module nobody compiled is compiled on this node, which writes its file.
	echo := e.putModule(fixtures.Wasm("echo"))
	if res := e.execute(newRequest(schemas.TierFree, echo)); res.Status != schemas.StatusSucceeded {
		t.Fatalf("echo: %s", res.Status)
	}
	if n := len(cacheFiles(t, b)); n != 2 {
		t.Fatalf("after compiling echo the cache has %d files, want 2", n)
	}
	if got := counterValue(t, b.m.cacheMisses.WithLabelValues("artifact")); got != 1 {
		t.Fatalf("artifact misses %v", got)
	}
}

func keys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}
