// Package deploy holds WasmWiz's deployment files (NATS, Kubernetes, Prometheus, Grafana). Its
// only Go is an embed of the NATS account layout, so that `wasmwiz dev` runs the account the
// shipped deployments run.
package deploy

import _ "embed"

// WasmWizAccount is nats/wasmwiz-account.conf: the body of NATS account WASMWIZ (the roles'
// users come from an include of nats-roles.conf beside it).
//
//go:embed nats/wasmwiz-account.conf
var WasmWizAccount []byte
