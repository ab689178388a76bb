package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/wasmwiz/wasmwiz/accounting/sqlite"
	"github.com/wasmwiz/wasmwiz/accounting/storetest"
)

func TestStore_Contract(t *testing.T) {
	storetest.Run(t, storetest.Factories["sqlite"])
}

func BenchmarkStore_Insert(b *testing.B) {
	storetest.Bench(b, storetest.Factories["sqlite"])
}

func TestStore_Reconcile_RollupDrift(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.db")
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	storetest.RunRollupDrift(t, s, func(q string) {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	})
}
