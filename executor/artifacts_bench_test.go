package executor

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/internal/fixtures"
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
//
// WASMWIZ_BENCH_GEN_FUNCS=N measures a generated module instead (fixtures.GenModule: N functions
// of 1,100 additions to a local, 7.7 KB each: 4000 make 30.8 MB, 8000 61.7 MB; the compiler
// removes the dead additions, so the artifact is small). With WASMWIZ_BENCH_GEN_PATTERN=store,
// 1,100 increments of a word in memory each (fixtures.PatStore, 14.3 KB a function: 2200 make
// 31.5 MB), which all stay in the machine code.
func BenchmarkNode_CompiledOncePerCluster(b *testing.B) {
	var bin []byte
	if n, err := strconv.Atoi(os.Getenv("WASMWIZ_BENCH_GEN_FUNCS")); err == nil && n > 0 {
		pattern := fixtures.PatAdd
		if os.Getenv("WASMWIZ_BENCH_GEN_PATTERN") == "store" {
			pattern = fixtures.PatStore
		}
		bin = fixtures.GenModule(n, pattern, 1100)
	} else {
		src, err := os.ReadFile("testdata/bigprog/main.go.txt")
		if err != nil {
			b.Fatal(err)
		}
		if bin, err = gowasm.Build(src); err != nil {
			b.Fatal(err)
		}
	}
	// Budgets a busy 2-CPU machine can meet for this module (the pro tier allows 32 s for bigprog),
	// and room for a generated module over pro's 50 MiB.
	roomy := func(c *Config) {
		t := c.Tiers[schemas.TierPro]
		t.CompilePerMiB, t.CompileMax = 20*time.Second, 10*time.Minute
		t.WallTime = time.Minute
		t.ModuleSize = max(t.ModuleSize, int64(len(bin)))
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
		b.ReportMetric(float64(len(bin))/1e6, "module_MB")
	})
	b.Run("first-run-shared", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			fresh()
			info, err := store.GetInfo(ctx, e.node.artifacts.objectName(hexDigest))
			if err != nil {
				b.Fatalf("not shared: %v", err)
			}
			b.ReportMetric(float64(info.Size)/1e6, "artifact_MB")
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
