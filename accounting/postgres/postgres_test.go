package postgres_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/wasmwiz/wasmwiz/accounting/postgres"
	"github.com/wasmwiz/wasmwiz/accounting/storetest"
)

func TestStore_Contract(t *testing.T) {
	storetest.DatabaseURL(t)
	storetest.Run(t, storetest.Factories["postgres"])
}

func BenchmarkStore_Insert(b *testing.B) {
	storetest.DatabaseURL(b)
	storetest.Bench(b, storetest.Factories["postgres"])
}

// Several replicas starting at once on an empty schema: the advisory lock lets one migrate and
// the others find the schema up to date.
func TestOpen_ConcurrentMigrations(t *testing.T) {
	url := storetest.NewSchema(t)
	const n = 6
	errs := make(chan error, n)
	for range n {
		go func() {
			s, err := postgres.Open(context.Background(), url)
			if err == nil {
				s.Close()
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("open: %v", err)
		}
	}
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var applied int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM goose_db_version WHERE version_id > 0").Scan(&applied); err != nil {
		t.Fatal(err)
	}
	if applied != 1 {
		t.Errorf("%d migrations recorded, want 1", applied)
	}
}

func TestStore_Reconcile_RollupDrift(t *testing.T) {
	url := storetest.NewSchema(t)
	s, err := postgres.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	storetest.RunRollupDrift(t, s, func(q string) {
		if _, err := conn.Exec(context.Background(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	})
}
