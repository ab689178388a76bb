package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/wasmwiz/wasmwiz/gateway"
)

// runSecrets makes the secret files a deployment mounts (docker-compose.yml, Kubernetes
// Secrets), each mode 0600 in a 0700 directory, never overwriting one that exists unless
// --force:
//
//	wasmwiz secrets generate [--dir secrets] [--postgres-host postgres] [--postgres-db wasmwiz] [--postgres-user wasmwiz] [--nats-hosts H,...] [--tiers-file F] [--force]
//	wasmwiz secrets nats-tenant [--dir secrets] [--force] <tenant-id>
//
//	postgres-password  the PostgreSQL password (POSTGRES_PASSWORD_FILE of the postgres image)
//	pgpass             the same password as a libpq password file, for accounting (PGPASSFILE)
//	jwt-key.pem        the Ed25519 key gateways sign tokens with (--jwt-key-file)
//	nats-*             NATS credentials and TLS: an nkey seed per role, the servers' user
//	                   lists, a CA and the servers' certificate (see natssecrets.go)
//
// nats-tenant gives a tenant direct NATS access: an account of its own that reaches only the
// API, and its nkey seed (nats-tenant-<id>.nk) to hand to the tenant.
//
// The first admin API key is not made here: API keys are minted by the key store, so
// `wasmwiz admin bootstrap --key-file <dir>/admin-api-key` writes it (mode 0600).
func runSecrets(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "nats-tenant" {
		return runSecretsNATSTenant(args[1:], getenv, stdout, stderr)
	}
	if len(args) == 0 || args[0] != "generate" {
		return usageError{"usage: wasmwiz secrets generate [--dir DIR] [--postgres-host H] [--postgres-db D] [--postgres-user U] [--nats-hosts H,...] [--tiers-file F] [--force]\n       wasmwiz secrets nats-tenant [--dir DIR] [--force] TENANT"}
	}
	fs := newFlagSet("secrets generate", getenv, stderr)
	dir := fs.String("dir", "secrets", "directory for the secret files (created with mode 0700)")
	pgHost := fs.String("postgres-host", "postgres", "PostgreSQL host[:port] the pgpass entry is for")
	pgDB := fs.String("postgres-db", "wasmwiz", "PostgreSQL database the pgpass entry is for")
	pgUser := fs.String("postgres-user", "wasmwiz", "PostgreSQL user the pgpass entry is for")
	natsHosts := fs.String("nats-hosts", defaultNATSHosts, "names (and IPs) the NATS servers' certificate is made for, comma separated")
	force := fs.Bool("force", false, "replace existing files (rotates every secret: restart what uses them)")
	loadTiers := fs.tiersFlag() // nats-roles.conf names each tier's queue for the executor
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	tiers, err := loadTiers()
	if err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{"unexpected arguments: " + strings.Join(fs.Args(), " ")}
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(*dir, 0o700); err != nil {
		return err
	}
	exists := func(name string) bool {
		_, err := os.Stat(filepath.Join(*dir, name))
		return err == nil
	}
	wrote := func(path string) { fmt.Fprintf(stdout, "wrote %s\n", path) }
	write := func(name, content string) error {
		path := filepath.Join(*dir, name)
		if err := writeSecretFile(path, []byte(content)); err != nil {
			return err
		}
		wrote(path)
		return nil
	}

	// The password and the pgpass entry are one secret in two shapes: made together.
	if *force || !exists("postgres-password") || !exists("pgpass") {
		var b [32]byte
		if _, err := rand.Read(b[:]); err != nil {
			return err
		}
		pw := hex.EncodeToString(b[:]) // no characters that need escaping in URLs or pgpass
		host, port := *pgHost, "5432"
		if h, p, ok := strings.Cut(*pgHost, ":"); ok {
			host, port = h, p
		}
		if err := write("postgres-password", pw); err != nil {
			return err
		}
		if err := write("pgpass", fmt.Sprintf("%s:%s:%s:%s:%s\n", host, port, *pgDB, *pgUser, pw)); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "kept %s and %s\n", filepath.Join(*dir, "postgres-password"), filepath.Join(*dir, "pgpass"))
	}

	jwt := filepath.Join(*dir, "jwt-key.pem")
	if *force && exists("jwt-key.pem") {
		if err := os.Remove(jwt); err != nil {
			return err
		}
	}
	if exists("jwt-key.pem") {
		if _, err := gateway.LoadSigner(jwt, false); err != nil {
			return fmt.Errorf("existing %s: %w (use --force to replace it)", jwt, err)
		}
		fmt.Fprintf(stdout, "kept %s\n", jwt)
	} else {
		if _, err := gateway.LoadSigner(jwt, true); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s\n", jwt)
	}
	if err := os.Chmod(jwt, 0o600); err != nil {
		return err
	}
	if err := ensureNATSRoles(*dir, tiers, *force, wrote); err != nil {
		return err
	}
	if err := writeNATSTenants(*dir, wrote); err != nil {
		return err
	}
	if err := ensureNATSTLS(*dir, strings.Split(*natsHosts, ","), *force, wrote); err != nil {
		return err
	}
	if !exists("admin-api-key") {
		fmt.Fprintf(stdout, "next: wasmwiz admin bootstrap --key-file %s (writes the first admin API key)\n", filepath.Join(*dir, "admin-api-key"))
	}
	return nil
}

// runSecretsNATSTenant makes (or keeps) a tenant's NATS account and seed, and says what to do next.
func runSecretsNATSTenant(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("secrets nats-tenant", getenv, stderr)
	dir := fs.String("dir", "secrets", "the directory `wasmwiz secrets generate` wrote")
	force := fs.Bool("force", false, "replace the tenant's seed (its old one stops working at the next reload)")
	remove := fs.Bool("remove", false, "remove the tenant's account and seed instead (it cannot connect after the next reload)")
	pos, err := fs.parseInterspersed(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"usage: wasmwiz secrets nats-tenant [--dir DIR] [--force | --remove] TENANT"}
	}
	if !fileExists(filepath.Join(*dir, natsRolesConf)) {
		return usageError{fmt.Sprintf("%s has no %s: run wasmwiz secrets generate --dir %s first", *dir, natsRolesConf, *dir)}
	}
	wrote := func(path string) { fmt.Fprintf(stdout, "wrote %s\n", path) }
	if *remove {
		if err := removeNATSTenant(*dir, pos[0], wrote); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "tenant %s removed; reload the NATS servers to apply (docker-compose kill -s HUP nats1 nats2 nats3)\n", pos[0])
		return nil
	}
	if err := ensureNATSTenant(*dir, pos[0], *force, wrote); err != nil {
		return err
	}
	ca := ""
	if fileExists(filepath.Join(*dir, natsCA)) { // a deployment's servers speak TLS; dev's do not
		ca = fmt.Sprintf(" (and the CA %s)", filepath.Join(*dir, natsCA))
	}
	fmt.Fprintf(stdout, "tenant %s connects with the nkey seed %s%s; reload the NATS servers to apply (docker-compose kill -s HUP nats1 nats2 nats3; wasmwiz dev: restart it)\n",
		pos[0], filepath.Join(*dir, natsTenantSeed(pos[0])), ca)
	return nil
}
