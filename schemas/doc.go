// Package schemas is the contract between WasmWiz roles: NATS subjects, stream, bucket and
// consumer names, message and event types, tiers and error codes. Role packages (gateway,
// executor, accounting) never import one another; they meet here.
package schemas
