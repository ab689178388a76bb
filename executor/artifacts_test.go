package executor

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmwiz/wasmwiz/internal/fixtures"
	"github.com/wasmwiz/wasmwiz/internal/natstest"
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

// TestNode_ExecutionOfACompilingModule: an execution published while its module's upload is
// still compiling it (ExecRequest.CompileDeadline; the module's record says "compiling") waits
// for that compile's artifact instead of compiling the module a second time: the node that runs
// it loads the artifact as the compile stored it, after it began waiting (its file dates from
// the store, not from a compile here). A compile that refuses the module fails the execution
// with its error; with no artifact by the deadline, the node compiles the module itself.
func TestNode_ExecutionOfACompilingModule(t *testing.T) {
	e := startEnv(t, nil)
	ctx := context.Background()
	refs, err := e.js.KeyValue(ctx, schemas.BucketModuleOwner)
	if err != nil {
		t.Fatal(err)
	}
	// record writes the module's record as the gateway does: status, and the compile's deadline.
	record := func(id string, status schemas.ModuleStatus, deadline time.Time, msg string) *time.Time {
		hexDigest, _ := schemas.ParseModuleID(id)
		m := schemas.Module{ID: id, Status: status, Error: msg}
		if status == schemas.ModuleCompiling {
			m.CompileDeadline = &deadline
		}
		b, _ := json.Marshal(&m)
		if _, err := refs.Put(ctx, schemas.ModuleRefKey("acme", hexDigest), b); err != nil {
			t.Fatal(err)
		}
		return &deadline
	}
	hello := e.putModule(fixtures.Wasm("hello"))
	// The upload's compile, on a first node: its artifact is put aside, to be stored again
	// while the execution waits, as a compile ending on another node stores it.
	if r := e.compile(hello, schemas.TierFree); r.Error != nil {
		t.Fatalf("compile: %+v", r)
	}
	hexDigest, _ := schemas.ParseModuleID(hello)
	store, err := e.js.ObjectStore(ctx, schemas.ObjectCompiled)
	if err != nil {
		t.Fatal(err)
	}
	name := e.node.artifacts.objectName(hexDigest)
	info, err := store.GetInfo(ctx, name)
	if err != nil {
		t.Fatalf("the compile did not share its artifact: %v", err)
	}
	artifact, err := store.GetBytes(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Delete(ctx, name); err != nil {
		t.Fatal(err)
	}
	e.stop()
	<-e.done
	b := e.startNode(nil)

	req := newRequest(schemas.TierFree, hello)
	req.CompileDeadline = record(hello, schemas.ModuleCompiling, time.Now().Add(time.Minute), "")
	sub := e.publish(req, "")
	// The node has the request and found no artifact with the module.
	natstest.CheckFor(t, 30*time.Second, poll, func() error {
		if got := counterValue(t, b.m.cacheMisses.WithLabelValues("artifact")); got != 1 {
			return fmt.Errorf("artifact misses %v, want 1", got)
		}
		return nil
	})
	if _, err := store.Put(ctx, jetstream.ObjectMeta{Name: name, Headers: info.Headers}, bytes.NewReader(artifact)); err != nil {
		t.Fatal(err)
	}
	stored, err := store.GetInfo(ctx, name) // its time as the store keeps it (Put's answer may differ)
	if err != nil {
		t.Fatal(err)
	}
	if res := e.wait(sub, time.Minute); res.Status != schemas.StatusSucceeded || res.NodeID != b.NodeID() {
		t.Fatalf("hello: %s on %s: %s", res.Status, res.NodeID, res.Error)
	}
	file := filepath.Join(b.cfg.CacheDir, "wazero", filepath.FromSlash(nats.Header(info.Headers).Get(HeaderCacheFile)))
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatalf("no artifact in the node's cache: %v", err)
	}
	if !fi.ModTime().Equal(stored.ModTime) {
		t.Fatalf("the node's artifact dates from %v, not from the store (%v): it compiled the module instead of waiting", fi.ModTime(), stored.ModTime)
	}

	// The upload's compile refuses the module while the execution waits: the execution fails
	// with its error, without a compile here (echo would compile and run).
	echo := e.putModule(fixtures.Wasm("echo"))
	req = newRequest(schemas.TierFree, echo)
	req.CompileDeadline = record(echo, schemas.ModuleCompiling, time.Now().Add(time.Minute), "")
	sub = e.publish(req, "")
	natstest.CheckFor(t, 30*time.Second, poll, func() error {
		if got := counterValue(t, b.m.cacheMisses.WithLabelValues("artifact")); got != 2 {
			return fmt.Errorf("artifact misses %v, want 2", got)
		}
		return nil
	})
	record(echo, schemas.ModuleFailed, time.Time{}, "module too expensive to compile: test")
	if res := e.wait(sub, time.Minute); res.Status != schemas.StatusFailed || res.Error != "invalid module: module too expensive to compile: test" {
		t.Fatalf("echo refused by its compile: %s: %q", res.Status, res.Error)
	}
	if n := len(cacheFiles(t, b)); n != 1 {
		t.Fatalf("the node's cache has %d files after a refused module, want 1: it compiled the module", n)
	}

	// No compile answers by the deadline: the node compiles the module itself and runs it.
	req = newRequest(schemas.TierFree, echo)
	req.CompileDeadline = record(echo, schemas.ModuleCompiling, time.Now().Add(500*time.Millisecond), "")
	if res := e.execute(req); res.Status != schemas.StatusSucceeded {
		t.Fatalf("echo: %s: %s", res.Status, res.Error)
	}
	if n := len(cacheFiles(t, b)); n != 2 {
		t.Fatalf("the node's cache has %d files, want 2", n)
	}
}

func keys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}
