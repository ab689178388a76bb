package schemas_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/danielgtaylor/huma/v2"

	"github.com/wasmwiz/wasmwiz/schemas"
)

var update = flag.Bool("update", false, "rewrite the committed JSON Schemas")

// messageTypes are the types that cross NATS; each has a committed JSON Schema under
// schemas/jsonschema, and this test fails when the Go type and its schema drift apart.
var messageTypes = map[string]any{
	"exec-request":       schemas.ExecRequest{},
	"result":             schemas.Result{},
	"event":              schemas.Event{},
	"compile-request":    schemas.CompileRequest{},
	"compile-reply":      schemas.CompileReply{},
	"execution-request":  schemas.ExecutionRequest{},
	"execution":          schemas.Execution{},
	"module":             schemas.Module{},
	"bundle":             schemas.Bundle{},
	"key":                schemas.Key{},
	"tenant":             schemas.Tenant{},
	"idempotency-record": schemas.IdempotencyRecord{},
	"error":              schemas.Error{},
	"execution-summary":  schemas.ExecutionSummary{},
	"execution-list":     schemas.ExecutionList{},
}

func TestJSONSchemas_UpToDate(t *testing.T) {
	for name, v := range messageTypes {
		reg := huma.NewMapRegistry("#/$defs/", huma.DefaultSchemaNamer)
		ref := reg.Schema(reflect.TypeOf(v), true, "")
		doc := map[string]any{
			"$schema": "https://json-schema.org/draft/2020-12/schema",
			"$id":     "https://wasmwiz.dev/schemas/" + name + ".schema.json",
			"$ref":    ref.Ref,
			"$defs":   reg.Map(),
		}
		if name == "event" {
			doc["x-wasmwiz-version"] = schemas.EventVersion
		}
		got, err := json.MarshalIndent(doc, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, '\n')
		path := filepath.Join("jsonschema", name+".schema.json")
		if *update {
			if err := os.MkdirAll("jsonschema", 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%s: %v (run go test ./schemas -update)", path, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is out of date with the Go type; run go test ./schemas -update and commit", path)
		}
	}
}
