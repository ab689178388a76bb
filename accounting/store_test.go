package accounting_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/wasmwiz/wasmwiz/accounting"
	"github.com/wasmwiz/wasmwiz/accounting/postgres"
	"github.com/wasmwiz/wasmwiz/accounting/sqlite"
	"github.com/wasmwiz/wasmwiz/accounting/storetest"
	"github.com/wasmwiz/wasmwiz/schemas"
)

func TestOpen_SQLite_PersistsAcrossReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "data", "nested", "accounting.db")
	s, err := accounting.Open(ctx, "", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.(*sqlite.Store); !ok {
		t.Fatalf("Open without a database url gave %T", s)
	}
	execs := storetest.Fixture(30)
	entries := make([]accounting.Entry, len(execs))
	for i, x := range execs {
		entries[i] = x.Entry(0, uint64(i+1))
	}
	storetest.MustInsert(t, s, entries)
	s.Close()

	s, err = accounting.Open(ctx, "", path) // migrations already applied: a no-op
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if res := storetest.MustInsert(t, s, entries); res.Executions != 0 || res.Duplicates != 30 {
		t.Errorf("after reopen: %+v, want all duplicates", res)
	}
	checkAllUsage(t, s, execs)
}

func TestOpen_Postgres(t *testing.T) {
	s, err := accounting.Open(context.Background(), storetest.NewSchema(t), "/nonexistent/never/used.db")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok := s.(*postgres.Store); !ok {
		t.Fatalf("Open with a database url gave %T", s)
	}
	if got := storetest.MustUsage(t, s, schemas.UsageRequest{TenantID: "acme"}); len(got.Rows) != 0 {
		t.Errorf("fresh store has usage: %+v", got)
	}
}

func TestOpen_NothingToOpen(t *testing.T) {
	if _, err := accounting.Open(context.Background(), "", ""); err == nil {
		t.Error("Open with neither url nor path succeeded")
	}
}
