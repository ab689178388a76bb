#!/bin/sh
# import arrows between the module's packages (non-test imports), from go list
go list -f '{{.ImportPath}}{{range .Imports}} {{.}}{{end}}' ./... 2>/dev/null | awk '{
  from=$1; sub("github.com/wasmwiz/wasmwiz/","",from)
  for(i=2;i<=NF;i++) if ($i ~ /^github.com\/wasmwiz\/wasmwiz\//) { to=$i; sub("github.com/wasmwiz/wasmwiz/","",to); print from " -> " to }
}' | sort
