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

// The contract says what generators need for typed clients (issue 16): the async 202 is an
// Execution, binary bodies carry their media type, 429 and 503 declare Retry-After (429 also the
// RateLimit-* headers), every problem+json answer is the one Problem schema, and a server.
func TestOpenAPI_ClientContract(t *testing.T) {
	b, err := json.Marshal(OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	type schema struct {
		Ref              string `json:"$ref"`
		Format           string `json:"format"`
		ContentMediaType string `json:"contentMediaType"`
	}
	type media struct{ Schema schema }
	type response struct {
		Content map[string]media
		Headers map[string]any
	}
	var doc struct {
		Servers []struct{ URL string }
		Paths   map[string]map[string]struct {
			OperationID string
			RequestBody *struct{ Content map[string]media }
			Responses   map[string]response
		}
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Servers) == 0 || doc.Servers[0].URL == "" {
		t.Error("no servers entry")
	}
	if s := doc.Paths["/v1/executions"]["post"].Responses["202"].Content["application/json"].Schema.Ref; s != "#/components/schemas/Execution" {
		t.Errorf("202 of create-execution: schema %q, want Execution", s)
	}
	for _, code := range []string{"200", "202"} {
		r := doc.Paths["/v1/executions"]["post"].Responses[code]
		for _, h := range []string{"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} {
			if typ := headerType(r.Headers[h]); typ != "integer" {
				t.Errorf("%s of create-execution: header %s type %q, want integer", code, h, typ)
			}
		}
		if headerType(r.Headers["Location"]) != "string" {
			t.Errorf("%s of create-execution: no Location header", code)
		}
	}
	if h := doc.Paths["/v1/executions/{id}"]["get"].Responses["200"].Headers; len(h) != 0 {
		t.Errorf("200 of get-execution declares headers it never sends: %v", h)
	}
	for _, c := range []struct{ path, method, code, ref string }{
		{"/api/execute", "post", "422", ""}, {"/api/execute", "post", "429", ""}, {"/api/execute", "post", "401", ""},
		{"/health/ready", "get", "503", "#/components/schemas/HealthStatus"},
	} {
		m, ok := doc.Paths[c.path][c.method].Responses[c.code].Content["application/json"]
		if !ok || m.Schema.Ref != c.ref {
			t.Errorf("%s %s %s: application/json body %+v (declared %v), want the 200's", c.method, c.path, c.code, m.Schema, ok)
		}
	}
	if s := doc.Paths["/v1/modules"]["post"].RequestBody.Content["application/wasm"].Schema; s.Format != "binary" || s.ContentMediaType != "application/wasm" {
		t.Errorf("module upload body: %+v, want format binary, contentMediaType application/wasm", s)
	}
	n429 := 0
	for path, ops := range doc.Paths {
		for method, op := range ops {
			for code, r := range op.Responses {
				if p, ok := r.Content["application/problem+json"]; ok && p.Schema.Ref != "#/components/schemas/Problem" {
					t.Errorf("%s %s %s: problem schema %+v, want the shared Problem", method, path, code, p.Schema)
				}
				if (code == "429" || code == "503") && op.OperationID != "health-ready" && r.Headers["Retry-After"] == nil {
					t.Errorf("%s %s %s: no Retry-After header declared", method, path, code)
				}
				if code == "429" {
					n429++
					for _, h := range []string{"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} {
						if r.Headers[h] == nil {
							t.Errorf("%s %s 429: no %s header declared", method, path, h)
						}
					}
				}
			}
		}
	}
	if n429 == 0 {
		t.Error("no operation declares a 429")
	}
}

// headerType is the schema type of a header declared in a decoded OpenAPI document.
func headerType(h any) string {
	m, _ := h.(map[string]any)
	s, _ := m["schema"].(map[string]any)
	typ, _ := s["type"].(string)
	return typ
}
