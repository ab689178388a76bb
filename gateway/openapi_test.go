package gateway

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"testing"
)

var update = flag.Bool("update", false, "rewrite schemas/openapi.json")

// TestOpenAPI_Snapshot fails when the API in code and the committed OpenAPI document differ;
// clients are generated from the committed one. Refresh: go test ./gateway -run OpenAPI -update
func TestOpenAPI_Snapshot(t *testing.T) {
	got, err := json.MarshalIndent(OpenAPI(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	const path = "../schemas/openapi.json"
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./gateway -run OpenAPI -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("schemas/openapi.json is out of date with the gateway's routes; run go test ./gateway -run OpenAPI -update and commit")
	}
}
