package executor

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/tetratelabs/wazero"

	"github.com/wasmwiz/wasmwiz/internal/fixtures"
)

// TestCompiledCodeFactor measures what compiledCodeFactor stands for: wazero's compiled form of
// a real program (the Go wasip1 guest of the files tests, standard library and all), as its
// compilation cache stores it, against the module's bytes. Loading it maps that much writable
// memory in a worker next to the module's decoded form, so the factor must leave room for both.
func TestCompiledCodeFactor(t *testing.T) {
	wasm := fixtures.FilesGo(t)
	dir := t.TempDir()
	cache, err := wazero.NewCompilationCacheWithDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().WithCompilationCache(cache))
	defer r.Close(ctx)
	if _, err := r.CompileModule(ctx, wasm); err != nil {
		t.Fatal(err)
	}
	var code int64
	err = filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			code += fi.Size()
		}
		return err
	})
	if err != nil || code == 0 {
		t.Fatalf("compiled code %d bytes, err %v", code, err)
	}
	ratio := float64(code) / float64(len(wasm))
	t.Logf("module %d bytes, compiled %d bytes: %.2fx", len(wasm), code, ratio)
	if ratio+1 > compiledCodeFactor {
		t.Errorf("compiled code is %.2f times the module; compiledCodeFactor %d leaves less than one more for its decoded form", ratio, compiledCodeFactor)
	}
}
