package executor

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// benchResult is a typical final result of a tiny guest, as finish stores it.
func benchResult(id string) *schemas.Result {
	now := time.Now().UTC()
	return &schemas.Result{
		ID: id, TenantID: "bench", KeyID: "key_bench", Tier: schemas.TierPro,
		ModuleID: "sha256:68017304059dc8128da7ef090446e254ac40989f286d99053c254f64237c57c5",
		Status:   schemas.StatusSucceeded, ExitCode: 0, Stdout: []byte("hello, wasmwiz\n"), StdoutBytes: 15, StdinBytes: 15,
		DurationMS: 0.4, CPUMS: 0.3, MemoryPeakBytes: 131072, CreatedAt: now, StartedAt: &now, FinishedAt: &now, NodeID: "node-bench",
	}
}

var benchSeq atomic.Int64

func benchID() string {
	return "ex_bench" + time.Now().Format("150405") + "x" + itoa(benchSeq.Add(1))
}

func itoa(n int64) string {
	const digits = "0123456789"
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = digits[n%10]
		n /= 10
	}
	return string(b[i:])
}

// BenchmarkNode_ResultWrite is the results KV Put that finish waits for before it replies:
// encode a typical result and store it (one JetStream round trip).
func BenchmarkNode_ResultWrite(b *testing.B) {
	e := startEnv(b, func(c *Config) { c.Logger = discardLogger() })
	n := e.node
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		res := benchResult(benchID())
		body, err := fitResult(res, 1<<20)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := n.results.Put(ctx, res.ID, body); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/write")
}

// BenchmarkNode_ResultWrite_Parallel is the same with many writers, as under load.
func BenchmarkNode_ResultWrite_Parallel(b *testing.B) {
	e := startEnv(b, func(c *Config) { c.Logger = discardLogger() })
	n := e.node
	ctx := context.Background()
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			res := benchResult(benchID())
			body, _ := fitResult(res, 1<<20)
			if _, err := n.results.Put(ctx, res.ID, body); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
}

// BenchmarkNode_PublishEvent is the execution.completed event finish publishes (and waits for)
// after the result write: build, encode, publish with its Nats-Msg-Id, one round trip.
func BenchmarkNode_PublishEvent(b *testing.B) {
	e := startEnv(b, func(c *Config) { c.Logger = discardLogger() })
	n := e.node
	ctx := context.Background()
	h := nats.Header{}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := n.publishEvent(ctx, h, benchResult(benchID())); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/event")
}

// BenchmarkNode_PublishEvent_Parallel is the same with many publishers, as under load.
func BenchmarkNode_PublishEvent_Parallel(b *testing.B) {
	e := startEnv(b, func(c *Config) { c.Logger = discardLogger() })
	n := e.node
	ctx := context.Background()
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		h := nats.Header{}
		for pb.Next() {
			if err := n.publishEvent(ctx, h, benchResult(benchID())); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
