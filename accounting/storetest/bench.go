package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/accounting"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// Bench measures sustained ingest into a store: each iteration inserts one batch of new
// executions in one transaction. It reports rows/s, for one event per transaction and for
// batches, in the same run.
func Bench(b *testing.B, newStore func(testing.TB) accounting.Store) {
	for _, size := range []int{1, 16, 256, 1024} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			s := newStore(b)
			tenants := []string{"acme", "globex", "initech", "hooli"}
			batch := make([]accounting.Entry, size)
			seq := uint64(0)
			next := func() {
				for j := range batch {
					seq++
					x := Exec{
						ID: ExecID("bench", int(seq)), Tenant: tenants[seq%4], Module: "sha256:" + fmt.Sprintf("%064x", seq%8),
						Key: "key-1", Status: schemas.StatusSucceeded, Finished: Day0.Add(time.Duration(seq) * time.Second),
						WallMS: 12.5, MemBytes: 3 * schemas.MiB, Stdin: 100, Stdout: 200, Stderr: 3,
					}
					batch[j] = x.Entry(0, seq)
				}
			}
			ctx := context.Background()
			b.ResetTimer()
			for b.Loop() {
				b.StopTimer()
				next()
				b.StartTimer()
				res, err := s.Insert(ctx, batch)
				if err != nil {
					b.Fatal(err)
				}
				if res.Executions != size {
					b.Fatalf("inserted %d, want %d", res.Executions, size)
				}
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
