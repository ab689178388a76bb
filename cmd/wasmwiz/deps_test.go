package main

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// TestBinaryLinksNoTestCode fails when package testing, or a package that exists only for tests
// (the hostile fixtures, the embedded test servers), ends up in the wasmwiz binary.
func TestBinaryLinksNoTestCode(t *testing.T) {
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	out, err := exec.Command(goBin, "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	for _, pkg := range []string{
		"testing",
		"github.com/wasmwiz/wasmwiz/internal/fixtures",
		"github.com/wasmwiz/wasmwiz/internal/natstest",
	} {
		if slices.Contains(deps, pkg) {
			t.Errorf("wasmwiz links %s (go list -deps ./cmd/wasmwiz)", pkg)
		}
	}
	if !slices.Contains(deps, "github.com/wasmwiz/wasmwiz/gateway") {
		t.Fatalf("go list -deps does not list the gateway; the check is blind:\n%s", out)
	}
}
