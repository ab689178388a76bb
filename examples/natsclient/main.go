// Command natsclient runs a WebAssembly module through WasmWiz's direct NATS API: it uploads
// the module (wasmwiz.api.v1.modules.upload) and executes it (wasmwiz.api.v1.executions.create)
// with stdin, printing the execution as JSON. The bodies are the same JSON as the REST API.
//
// NATS admits no anonymous client: connect with the tenant's nkey seed (`wasmwiz dev` makes one
// for tenant dev; `wasmwiz secrets nats-tenant <id>` for a deployment's tenants), and the CA of
// a deployment's NATS servers.
//
//	go run ./examples/natsclient -nkey wasmwiz-data/nats/nats-tenant-dev.nk -key "$(cat wasmwiz-data/dev-api-key)" -stdin hello module.wasm
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wasmwiz/wasmwiz/schemas"
)

func main() {
	url := flag.String("nats", "nats://127.0.0.1:4222", "NATS URL of WasmWiz (the dev command prints it)")
	key := flag.String("key", os.Getenv("WASMWIZ_KEY"), "API key")
	stdin := flag.String("stdin", "", "stdin for the module")
	nkey := flag.String("nkey", "wasmwiz-data/nats/nats-tenant-dev.nk", "the tenant's NATS nkey seed file")
	creds := flag.String("creds", "", "a NATS credentials file instead of -nkey")
	ca := flag.String("tls-ca", "", "CA of the NATS servers (deployments speak TLS)")
	flag.Parse()
	if flag.NArg() != 1 || *key == "" {
		fmt.Fprintln(os.Stderr, "usage: natsclient -key KEY [-nats URL] [-nkey SEED | -creds FILE] [-tls-ca CA] [-stdin TEXT] module.wasm")
		os.Exit(2)
	}
	var opts []nats.Option
	switch {
	case *creds != "":
		opts = append(opts, nats.UserCredentials(*creds))
	case *nkey != "":
		o, err := nats.NkeyOptionFromSeed(*nkey)
		if err != nil {
			fmt.Fprintln(os.Stderr, "natsclient:", err)
			os.Exit(2)
		}
		opts = append(opts, o)
	}
	if *ca != "" {
		opts = append(opts, nats.RootCAs(*ca))
	}
	if err := run(*url, *key, *stdin, flag.Arg(0), opts...); err != nil {
		fmt.Fprintln(os.Stderr, "natsclient:", err)
		os.Exit(1)
	}
}

func run(url, key, stdin, path string, opts ...nats.Option) error {
	wasm, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return err
	}
	defer nc.Close()

	up := nats.NewMsg(schemas.APISubject(schemas.OpModulesUpload))
	up.Header.Set("Authorization", "Bearer "+key)
	up.Header.Set(schemas.HeaderModuleName, filepath.Base(path))
	up.Data = wasm
	var module schemas.Module
	if err := call(nc, up, &module); err != nil {
		return fmt.Errorf("upload: %w", err)
	}

	body, _ := json.Marshal(schemas.ExecutionRequest{ModuleID: module.ID, Stdin: stdin})
	ex := nats.NewMsg(schemas.APISubject(schemas.OpExecutionsCreate))
	ex.Header.Set("Authorization", "Bearer "+key)
	ex.Data = body
	var execution schemas.Execution
	if err := call(nc, ex, &execution); err != nil {
		return fmt.Errorf("execute: %w", err)
	}
	out, _ := json.MarshalIndent(execution, "", "  ")
	fmt.Println(string(out))
	return nil
}

// call sends a request; a NATS micro error carries the HTTP status in Nats-Service-Error-Code
// and the same problem JSON as REST in the body.
func call(nc *nats.Conn, msg *nats.Msg, out any) error {
	resp, err := nc.RequestMsg(msg, 2*time.Minute)
	if err != nil {
		return err
	}
	if code := resp.Header.Get("Nats-Service-Error-Code"); code != "" {
		return fmt.Errorf("%s: %s", code, resp.Data)
	}
	return json.Unmarshal(resp.Data, out)
}
