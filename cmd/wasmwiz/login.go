package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	wasmwiz "github.com/wasmwiz/wasmwiz/clients/go"
)

const loginUsage = `usage: wasmwiz login --url URL --key KEY [--name NAME] [--no-use] [--nats-url URL [--nats-nkey F | --nats-creds F] [--nats-tls-ca F]]

Checks the key against the API and saves URL and key as a context (default name: the URL's
host and port), which becomes the current one: every client command then works from any
directory. --key - reads the key from stdin, so that it stays out of the shell's history.
With --nats-url the context also keeps how to reach NATS directly (checked by connecting), for
the operator commands: events tail, dlq, accounting reconcile, admin bootstrap.`

// runLogin saves a context after checking that the API knows the key.
func runLogin(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("login", getenv, stderr)
	u := fs.String("url", "", "WasmWiz API URL, e.g. https://wasmwiz.example.com or http://127.0.0.1:8080")
	key := fs.String("key", "", "API key; - reads it from stdin")
	name := fs.String("name", "", "context name (default: the URL's host and port)")
	noUse := fs.Bool("no-use", false, "save the context without making it the current one")
	natsFlags := addNATSContextFlags(fs)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), loginUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 || *u == "" || *key == "" {
		return usageError{loginUsage}
	}
	if err := checkAPIURL(*u); err != nil {
		return err
	}
	k := *key
	if k == "-" {
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		k = strings.TrimSpace(line)
	}
	if k == "" {
		return usageError{"empty key"}
	}
	n := *name
	if n == "" {
		pu, _ := url.Parse(*u)
		n = strings.NewReplacer(":", "-", "[", "", "]", "").Replace(pu.Host)
	}
	if !validContextName(n) {
		return usageError{fmt.Sprintf("--name %q: letters, digits, '-', '_' and '.', at most 64", n)}
	}
	nc, err := natsFlags.context()
	if err != nil {
		return err
	}
	who, err := whoAmI(ctx, *u, k)
	if err != nil {
		return err
	}
	if nc != nil {
		if err := nc.check(); err != nil {
			return err
		}
	}
	path, err := saveContext(getenv, n, cliContext{URL: strings.TrimRight(*u, "/"), Key: k, NATS: nc}, !*noUse)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "logged in to %s%s; saved as context %q in %s\n", *u, who, n, path)
	return nil
}

// whoAmI checks key against the API at baseURL by listing the key's tenant's keys, and says
// whose key it is when the key may list keys (a key without the keys:read scope is still valid).
func whoAmI(ctx context.Context, baseURL, key string) (string, error) {
	c, err := dial(baseURL, key, 30*time.Second)
	if err != nil {
		return "", err
	}
	r, err := c.api.ListKeysWithResponse(ctx)
	var ae *wasmwiz.Error
	switch {
	case errors.As(err, &ae) && ae.Status == 403:
		return " (the key may not list keys, so its tenant is not shown)", nil
	case errors.As(err, &ae) && ae.Status == 401:
		return "", fmt.Errorf("the API at %s refused the key: %w", baseURL, err)
	case err != nil:
		return "", fmt.Errorf("cannot reach the API at %s: %w", baseURL, err)
	}
	l, err := answer(r.JSON200, r.StatusCode())
	if err != nil {
		return "", err
	}
	for _, rec := range l.Keys {
		if rec.Prefix != "" && strings.HasPrefix(key, rec.Prefix) {
			return fmt.Sprintf(" as tenant %s (tier %s, key %s)", rec.TenantID, rec.Tier, rec.ID), nil
		}
	}
	return "", nil
}

// saveDevContexts points contexts "dev" (tenant dev's key) and "dev-admin" (the admin key) at a
// dev system's real URL, and their NATS settings at its NATS URL (natsURL) with the nkey seeds in
// natsDir: tenant dev's for "dev", the admin role's for "dev-admin" (what the operator commands
// connect as). "dev" becomes the current context when there is none.
func saveDevContexts(getenv func(string) string, apiURL, devKeyFile, adminKeyFile, natsURL, natsDir string) (path, current string, err error) {
	read := func(p string) (string, error) {
		b, err := os.ReadFile(p)
		return strings.TrimSpace(string(b)), err
	}
	dk, err := read(devKeyFile)
	if err != nil {
		return "", "", err
	}
	ak, err := read(adminKeyFile)
	if err != nil {
		return "", "", err
	}
	seeds, err := filepath.Abs(natsDir)
	if err != nil {
		return "", "", err
	}
	path, err = updateConfig(getenv, func(cfg *cliConfig) error {
		cfg.Contexts["dev"] = cliContext{URL: apiURL, Key: dk,
			NATS: &natsContext{URL: natsURL, NKey: filepath.Join(seeds, natsTenantSeed("dev"))}}
		cfg.Contexts["dev-admin"] = cliContext{URL: apiURL, Key: ak,
			NATS: &natsContext{URL: natsURL, NKey: filepath.Join(seeds, natsRoleSeed("admin"))}}
		if _, ok := cfg.Contexts[cfg.Current]; !ok {
			cfg.Current = "dev"
		}
		current = cfg.Current
		return nil
	})
	return path, current, err
}
