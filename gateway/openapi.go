package gateway

import (
	"strings"

	"github.com/danielgtaylor/huma/v2"
)

// contractServers is the document's servers entry: the address `wasmwiz dev` listens on by
// default. Clients generated from the contract take their base URL as a setting anyway.
var contractServers = []*huma.Server{{URL: "http://localhost:8080", Description: "wasmwiz dev on its default address; point clients at your gateway"}}

// fixContract is an OnAddOperation hook that states in the OpenAPI document what the handlers
// really do, so generated clients are typed: binary request bodies carry their media type, the
// async 202 of create-execution is an Execution, and 429/503 answers declare the headers that
// say when to try again; an upload's 202 (compiling) is a Module.
func fixContract(_ *huma.OpenAPI, op *huma.Operation) {
	if op.RequestBody != nil {
		for ct, mt := range op.RequestBody.Content {
			if mt.Schema == nil {
				continue
			}
			if mt.Schema.Format == "binary" {
				// Media types of one body can share a schema: each gets its own copy.
				cp := *mt.Schema
				mt.Schema = &cp
			}
			binaryBody(mt.Schema, ct)
			for name, p := range mt.Schema.Properties {
				if name == "wasm" {
					binaryBody(p, "application/wasm")
				}
			}
		}
	}
	switch op.OperationID {
	case "create-execution":
		// The 200 and the 202 send the same headers: Location, and the RateLimit-* numbers of
		// the key's tier (Huma types them as the handler's strings; they are integers).
		if ok, accepted := op.Responses["200"], op.Responses["202"]; ok != nil && accepted != nil {
			headers := map[string]*huma.Param{"Location": {
				Description: "the execution: GET /v1/executions/{id}",
				Schema:      &huma.Schema{Type: "string"},
			}}
			for name, h := range ok.Headers {
				if strings.HasPrefix(name, "RateLimit-") && h.Schema != nil {
					headers[name] = &huma.Param{Description: h.Schema.Description, Schema: &huma.Schema{Type: "integer", Minimum: new(float64(0))}}
				}
			}
			ok.Headers, accepted.Headers = headers, headers
			accepted.Content = ok.Content
		}
	case "upload-module":
		// The 202 (still compiling) is the same Module as the 201, with a Location to poll.
		if created, accepted := op.Responses["201"], op.Responses["202"]; created != nil && accepted != nil {
			accepted.Content = created.Content
			accepted.Headers = map[string]*huma.Param{"Location": {
				Description: "the module: GET /v1/modules/{id} until its status is ready or failed",
				Schema:      &huma.Schema{Type: "string"},
			}}
			delete(created.Headers, "Location")
		}
	case "get-execution":
		// It shares create-execution's output type but sends none of its headers.
		if ok := op.Responses["200"]; ok != nil {
			ok.Headers = nil
		}
	case "compat-execute", "health-ready":
		// Their refusals carry the body of their 200 (compat: {"output": null, "error": …};
		// ready: the health status that says what is missing).
		if ok := op.Responses["200"]; ok != nil {
			for code, r := range op.Responses {
				if code != "200" && r.Content == nil {
					r.Content = ok.Content
				}
			}
		}
	}
	if op.OperationID == "health-ready" {
		return // a 503 there only means "not ready yet", with no Retry-After
	}
	for code, r := range op.Responses {
		if code != "429" && code != "503" {
			continue
		}
		if r.Headers == nil {
			r.Headers = map[string]*huma.Param{}
		}
		r.Headers["Retry-After"] = &huma.Param{
			Description: "seconds to wait before trying again (sent when the server knows)",
			Schema:      &huma.Schema{Type: "integer", Minimum: new(float64(1))},
		}
		if code == "429" {
			for name, doc := range map[string]string{
				"RateLimit-Limit":     "executions allowed in the tightest window (sent on a rate-limit refusal of a limited tier)",
				"RateLimit-Remaining": "executions left in that window",
				"RateLimit-Reset":     "seconds until one more execution is available",
			} {
				r.Headers[name] = &huma.Param{Description: doc, Schema: &huma.Schema{Type: "integer", Minimum: new(float64(0))}}
			}
		}
	}
}

// binaryBody marks a binary string schema with its real media type: Huma writes
// contentMediaType application/octet-stream for every format: binary, which generators then
// type as a plain string, so the format moves to Extensions next to the right media type.
func binaryBody(s *huma.Schema, mediaType string) {
	if s.Format != "binary" || strings.HasPrefix(mediaType, "multipart/") {
		return
	}
	s.Format = ""
	ext := make(map[string]any, len(s.Extensions)+2)
	for k, v := range s.Extensions {
		ext[k] = v
	}
	s.Extensions = ext
	s.Extensions["format"] = "binary"
	s.Extensions["contentMediaType"] = mediaType
}
