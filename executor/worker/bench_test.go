package worker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/wasmwiz/wasmwiz/internal/fixtures"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// BenchmarkWorker_RunCached is one run of a compiled, cached module inside a worker, without
// the pipe: the compiled-module cache lookup, instantiation (a reused linear memory), _start,
// and the bookkeeping around them.
func BenchmarkWorker_RunCached(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	w, err := newWorker(ctx, Hello{CacheDir: filepath.Join(dir, "wazero")}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	defer w.close(ctx)
	bin := fixtures.Wasm("hello")
	sum := sha256.Sum256(bin)
	job := &RunJob{ModuleHash: hex.EncodeToString(sum[:]), Name: "guest",
		MemoryPages: 128 * 16, StdoutMax: 1 << 20, StderrMax: 1 << 20}
	job.ModulePath = filepath.Join(dir, job.ModuleHash+".wasm")
	if err := os.WriteFile(job.ModulePath, bin, 0o644); err != nil {
		b.Fatal(err)
	}
	started := func(*Response) error { return nil }
	if res := w.run(ctx, job, started); res.Status != schemas.StatusSucceeded {
		b.Fatalf("warm-up: %+v", res)
	}
	b.ReportAllocs()
	for b.Loop() {
		if res := w.run(ctx, job, started); res.Status != schemas.StatusSucceeded || !res.CompileCacheHit {
			b.Fatalf("%+v", res)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "runs/s")
}
