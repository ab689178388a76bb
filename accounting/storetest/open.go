package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/wasmwiz/wasmwiz/accounting"
	"github.com/wasmwiz/wasmwiz/accounting/postgres"
	"github.com/wasmwiz/wasmwiz/accounting/sqlite"
)

// EnvDatabaseURL names the variable holding the PostgreSQL used by tests.
const EnvDatabaseURL = "WASMWIZ_TEST_DATABASE_URL"

// DatabaseURL returns the test PostgreSQL URL. When it is unset the test is skipped, except
// with CI=true, where a missing database fails the test: in CI the Postgres run is mandatory.
func DatabaseURL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv(EnvDatabaseURL)
	if u == "" {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("%s is not set, and CI=true requires the PostgreSQL tests to run", EnvDatabaseURL)
		}
		tb.Skipf("%s is not set; skipping PostgreSQL", EnvDatabaseURL)
	}
	return u
}

// NewSchema creates a fresh schema in the test database, dropped when the test ends, and
// returns a database URL whose search_path selects it.
func NewSchema(tb testing.TB) string {
	tb.Helper()
	base := DatabaseURL(tb)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		tb.Fatalf("connect to %s: %v", EnvDatabaseURL, err)
	}
	defer conn.Close(ctx)
	b := make([]byte, 6)
	rand.Read(b)
	schema := "acct_test_" + hex.EncodeToString(b)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		tb.Fatalf("create schema: %v", err)
	}
	tb.Cleanup(func() {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return withSearchPath(tb, base, schema)
}

func withSearchPath(tb testing.TB, base, schema string) string {
	if strings.HasPrefix(base, "postgres://") || strings.HasPrefix(base, "postgresql://") {
		u, err := url.Parse(base)
		if err != nil {
			tb.Fatalf("parse %s: %v", EnvDatabaseURL, err)
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return base + " search_path=" + schema
}

// OpenPostgres opens a PostgreSQL store in a fresh schema (see NewSchema), closed when the test
// ends.
func OpenPostgres(tb testing.TB) *postgres.Store {
	tb.Helper()
	s, err := postgres.Open(context.Background(), NewSchema(tb))
	if err != nil {
		tb.Fatalf("open postgres store: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// OpenSQLite opens a SQLite store in a fresh file under tb.TempDir(), closed when the test ends.
func OpenSQLite(tb testing.TB) *sqlite.Store {
	tb.Helper()
	s, err := sqlite.Open(context.Background(), filepath.Join(tb.TempDir(), "accounting.db"))
	if err != nil {
		tb.Fatalf("open sqlite store: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// Factories are the stores every contract test runs against, by name.
var Factories = map[string]func(testing.TB) accounting.Store{
	"sqlite":   func(tb testing.TB) accounting.Store { return OpenSQLite(tb) },
	"postgres": func(tb testing.TB) accounting.Store { return OpenPostgres(tb) },
}
