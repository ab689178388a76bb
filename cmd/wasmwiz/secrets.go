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
//	wasmwiz secrets generate [--dir secrets] [--postgres-host postgres] [--postgres-db wasmwiz] [--postgres-user wasmwiz] [--force]
//
//	postgres-password  the PostgreSQL password (POSTGRES_PASSWORD_FILE of the postgres image)
//	pgpass             the same password as a libpq password file, for accounting (PGPASSFILE)
//	jwt-key.pem        the Ed25519 key gateways sign tokens with (--jwt-key-file)
//
// The first admin API key is not made here: API keys are minted by the key store, so
// `wasmwiz admin bootstrap --key-file <dir>/admin-api-key` writes it (mode 0600).
func runSecrets(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "generate" {
		return usageError{"usage: wasmwiz secrets generate [--dir DIR] [--postgres-host H] [--postgres-db D] [--postgres-user U] [--force]"}
	}
	fs := newFlagSet("secrets generate", getenv, stderr)
	dir := fs.String("dir", "secrets", "directory for the secret files (created with mode 0700)")
	pgHost := fs.String("postgres-host", "postgres", "PostgreSQL host[:port] the pgpass entry is for")
	pgDB := fs.String("postgres-db", "wasmwiz", "PostgreSQL database the pgpass entry is for")
	pgUser := fs.String("postgres-user", "wasmwiz", "PostgreSQL user the pgpass entry is for")
	force := fs.Bool("force", false, "replace existing files (rotates every secret: restart what uses them)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
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
	write := func(name, content string) error {
		path := filepath.Join(*dir, name)
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
			return err
		}
		if err := os.Chmod(tmp, 0o600); err != nil { // whatever the umask
			return err
		}
		if err := os.Rename(tmp, path); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s\n", path)
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
	if !exists("admin-api-key") {
		fmt.Fprintf(stdout, "next: wasmwiz admin bootstrap --key-file %s (writes the first admin API key)\n", filepath.Join(*dir, "admin-api-key"))
	}
	return nil
}
