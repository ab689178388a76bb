// Package schemas is the contract between WasmWiz roles: NATS subjects, stream, bucket and
// consumer names, message and event types, tiers and error codes. Role packages (gateway,
// executor, accounting) never import one another; they meet here.
//
// The JSON Schemas under jsonschema/ and the OpenAPI snapshot openapi.json are generated from
// the Go types and the gateway's routes and committed, so clients can be generated from the
// repository. Regenerate both with
//
//	go generate ./schemas
//
// .ci/run does, then fails if git sees a difference; TestJSONSchemas_UpToDate and
// TestOpenAPI_Snapshot (in gateway) fail on a stale copy too.
package schemas

//go:generate go test -run TestJSONSchemas_UpToDate -update .
//go:generate go test ../gateway -run TestOpenAPI_Snapshot -update
