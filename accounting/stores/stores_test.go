package stores_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/accounting"
	"github.com/wasmwiz/wasmwiz/accounting/postgres"
	"github.com/wasmwiz/wasmwiz/accounting/sqlite"
	"github.com/wasmwiz/wasmwiz/accounting/stores"
	"github.com/wasmwiz/wasmwiz/accounting/storetest"
	"github.com/wasmwiz/wasmwiz/internal/natstest"
	"github.com/wasmwiz/wasmwiz/schemas"
)

func TestOpen_SQLite_PersistsAcrossReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "data", "nested", "accounting.db")
	s, err := stores.Open(ctx, "", path)
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

	s, err = stores.Open(ctx, "", path) // migrations already applied: a no-op
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if res := storetest.MustInsert(t, s, entries); res.Executions != 0 || res.Duplicates != 30 {
		t.Errorf("after reopen: %+v, want all duplicates", res)
	}
	storetest.CheckAllUsage(t, s, execs)
}

func TestOpen_Postgres(t *testing.T) {
	s, err := stores.Open(context.Background(), storetest.NewSchema(t), "/nonexistent/never/used.db")
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
	if _, err := stores.Open(context.Background(), "", ""); err == nil {
		t.Error("Open with neither url nor path succeeded")
	}
}

const wait = 20 * time.Second

// A replica that starts while PostgreSQL is down waits for it.
func TestOpenWithRetry_WaitsForPostgres(t *testing.T) {
	t.Parallel()
	dbURL, p := storetest.NewProxiedSchema(t)
	p.SetDown(true)
	var warned atomic.Int64
	log := slog.New(countingHandler{&warned})
	type result struct {
		s   accounting.Store
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := stores.OpenWithRetry(context.Background(), dbURL, "", log)
		done <- result{s, err}
	}()
	natstest.CheckFor(t, wait, 10*time.Millisecond, func() error {
		if n := warned.Load(); n < 2 {
			return fmt.Errorf("%d warnings while the database is down, want a retry each", n)
		}
		return nil
	})
	select {
	case r := <-done:
		t.Fatalf("OpenWithRetry returned while the database was down: %v", r.err)
	default:
	}
	p.SetDown(false)
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatal(r.err)
		}
		defer r.s.Close()
		if err := r.s.Ping(context.Background()); err != nil {
			t.Fatal(err)
		}
	case <-time.After(wait):
		t.Fatal("OpenWithRetry did not return after the database came back")
	}
}

type countingHandler struct{ n *atomic.Int64 }

func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		h.n.Add(1)
	}
	return nil
}
func (h countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countingHandler) WithGroup(string) slog.Handler      { return h }

// A URL that cannot be parsed fails at once: waiting would not heal it.
func TestOpenWithRetry_MalformedURLFailsAtOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_, err := stores.OpenWithRetry(ctx, "postgres://u@[::1/db", "", slog.New(slog.DiscardHandler))
	if err == nil || ctx.Err() != nil {
		t.Fatalf("err %v after %v: want a parse error at once", err, ctx.Err())
	}
}
