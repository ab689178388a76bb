package executor

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/internal/gowasm"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// BenchmarkNode_CompiledOncePerCluster measures what sharing compiled artifacts saves on a big
// module (testdata/bigprog: a Go program linking much of the standard library, ~11 MB), each
// iteration on a node started with an empty cache:
//
//   - upload-compile: the compile of an upload on the first node, cold (nothing shared yet),
//     including storing the artifact for the others;
//   - first-run-shared: the first execution on a second node that never saw the module, with
//     the artifact in the store (fetched with the module);
//   - first-run-unshared: the same without the artifact: the node compiles (as before sharing);
//   - warm: an execution on a node that has run it already.
//
// Run: go test ./executor -run XXX -bench CompiledOncePerCluster -benchtime 3x
// (the first run builds the module with the Go toolchain, minutes on a busy machine).
func BenchmarkNode_CompiledOncePerCluster(b *testing.B) {
	src, err := os.ReadFile("testdata/bigprog/main.go.txt")
	if err != nil {
		b.Fatal(err)
	}
	bin, err := gowasm.Build(src)
	if err != nil {
		b.Fatal(err)
	}
	// Budgets a busy 2-CPU machine can meet for this module (the pro tier allows 32 s for it).
	roomy := func(c *Config) {
		t := c.Tiers[schemas.TierPro]
		t.CompilePerMiB, t.CompileMax = 20*time.Second, 10*time.Minute
		t.WallTime = time.Minute
		c.Tiers[schemas.TierPro] = t
		c.CompileTimeout = 0
	}
	e := startEnv(b, roomy)
	id := e.putModule(bin)
	hexDigest, _ := schemas.ParseModuleID(id)
	b.Logf("module: %d bytes", len(bin))
	ctx := context.Background()
	store, err := e.js.ObjectStore(ctx, schemas.ObjectCompiled)
	if err != nil {
		b.Fatal(err)
	}
	unshare := func() {
		_ = store.Delete(ctx, e.node.artifacts.objectName(hexDigest))
	}
	fresh := func() {
		e.stop()
		<-e.done
		e.startNode(roomy)
	}
	run := func(b *testing.B) {
		if res := e.execute(newRequest(schemas.TierPro, id)); res.Status != schemas.StatusSucceeded {
			b.Fatalf("bigprog: %s %s", res.Status, res.Stderr)
		}
	}
	b.Run("upload-compile", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			unshare()
			fresh()
			b.StartTimer()
			if r := e.compile(id, schemas.TierPro); r.Error != nil {
				b.Fatal(r.Error)
			}
		}
	})
	b.Run("first-run-shared", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			fresh()
			if _, err := store.GetInfo(ctx, e.node.artifacts.objectName(hexDigest)); err != nil {
				b.Fatalf("not shared: %v", err)
			}
			b.StartTimer()
			run(b)
		}
	})
	b.Run("first-run-unshared", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			unshare()
			fresh()
			b.StartTimer()
			run(b)
		}
	})
	b.Run("warm", func(b *testing.B) {
		run(b)
		for b.Loop() {
			run(b)
		}
	})
}
