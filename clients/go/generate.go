package wasmwiz

// The client is generated from the OpenAPI snapshot by oapi-codegen, pinned with its whole
// dependency graph in tools.mod (kept out of the main module's go.mod: the generator is not
// part of the wasmwiz binary). TestGenerated_UpToDate fails when client.gen.go drifts from it.
//go:generate go tool -modfile=tools.mod oapi-codegen -config oapi-codegen.yaml ../../schemas/openapi.json
