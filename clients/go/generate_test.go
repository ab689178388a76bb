package wasmwiz_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestGenerated_UpToDate runs the pinned generator on the OpenAPI snapshot and fails when the
// committed client.gen.go differs: run `go generate ./clients/go` after changing the contract.
func TestGenerated_UpToDate(t *testing.T) {
	if testing.Short() {
		t.Skip("builds oapi-codegen")
	}
	// The same configuration, writing elsewhere.
	cfg, err := os.ReadFile("oapi-codegen.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "client.gen.go")
	tmpCfg := bytes.Replace(cfg, []byte("\noutput: client.gen.go\n"), []byte("\noutput: "+out+"\n"), 1)
	if bytes.Equal(tmpCfg, cfg) {
		t.Fatal("oapi-codegen.yaml has no line output: client.gen.go")
	}
	if err := os.WriteFile(filepath.Join(dir, "oapi-codegen.yaml"), tmpCfg, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "tool", "-modfile=tools.mod", "oapi-codegen", "-config", filepath.Join(dir, "oapi-codegen.yaml"), "../../schemas/openapi.json")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("oapi-codegen: %v\n%s", err, b)
	}
	want, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("client.gen.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("client.gen.go is not what oapi-codegen makes of schemas/openapi.json (%d bytes committed, %d generated): run go generate ./clients/go", len(got), len(want))
	}
}
