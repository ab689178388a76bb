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

// TestRolesImportNoRole fails when a role package (or one of its subpackages) depends on another
// role: gateway, executor and accounting meet only in schemas and shared libraries.
func TestRolesImportNoRole(t *testing.T) {
	const mod = "github.com/wasmwiz/wasmwiz/"
	roles := []string{"gateway", "executor", "accounting"}
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	for _, role := range roles {
		out, err := exec.Command(goBin, "list", "-deps", mod+role+"/...").CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s/...: %v\n%s", role, err, out)
		}
		deps := strings.Fields(string(out))
		if !slices.Contains(deps, mod+"schemas") {
			t.Fatalf("%s does not depend on schemas; the check is blind:\n%s", role, out)
		}
		for _, dep := range deps {
			for _, other := range roles {
				if other != role && (dep == mod+other || strings.HasPrefix(dep, mod+other+"/")) {
					t.Errorf("%s depends on %s", role, dep)
				}
			}
		}
	}
}
