package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/wasmwiz/wasmwiz/accounting/stores"
)

// runMigrate applies the accounting database migrations and exits:
//
//	wasmwiz accounting migrate [--database-url URL]
//
// Kubernetes runs it as a Job before accounting rolls (deploy/k8s/base/migrate-job.yaml).
// Accounting replicas also migrate when they open the store; migrations take a lock, so the
// two never race. It waits for PostgreSQL to come up rather than failing at once.
func runMigrate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("accounting migrate", getenv, stderr)
	dbURL := fs.String("database-url", getenv("DATABASE_URL"), "Postgres URL (default: $DATABASE_URL)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"unexpected arguments: " + strings.Join(fs.Args(), " ")}
	}
	if *dbURL == "" {
		return usageError{"a database URL is required (--database-url or DATABASE_URL)"}
	}
	store, err := stores.OpenWithRetry(ctx, *dbURL, "", newLogger(stderr, getenv, false))
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if err := store.Close(); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "accounting migrations applied")
	return nil
}
