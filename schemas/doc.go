// Package schemas is the contract between WasmWiz roles: NATS subjects, stream, bucket and
// consumer names, message and event types, tiers and error codes. Role packages (gateway,
// executor, accounting) never import one another; they meet here.
//
// The JSON Schemas under jsonschema/ and the OpenAPI snapshot openapi.json are generated from
// the Go types and the gateway's routes and committed, and so are the clients generated from
// the snapshot (clients/go, clients/typescript). Regenerate them all with
//
//	go generate ./schemas
//
// (the TypeScript client only where npm is installed). .ci/run does, then fails if git sees a
// difference in the schemas; TestJSONSchemas_UpToDate, TestOpenAPI_Snapshot (in gateway),
// TestGenerated_UpToDate (in clients/go) and TestTypeScriptClient_UpToDate (in test) fail on a
// stale copy too.
package schemas

//go:generate go test -run TestJSONSchemas_UpToDate -update .
//go:generate go test ../gateway -run TestOpenAPI_Snapshot -update
//go:generate go generate ../clients/go
//go:generate sh -c "if command -v npm >/dev/null; then cd ../clients/typescript && { test -d node_modules || npm ci --no-audit --no-fund -s; } && npm run -s generate; else echo 'npm not found: clients/typescript not regenerated'; fi"
