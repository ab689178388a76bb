package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmwiz/wasmwiz/internal/natstest"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// startStubbedGateway is a gateway (without its HTTP server) and a stub executor that answers
// every execution request at once with a succeeded result and acks it: what is left is the
// gateway's own work on the execution path (validation, module lookup, publish, wait) and the
// JetStream round trip. It returns the gateway, a principal on the unlimited tier and a module id.
func startStubbedGateway(b *testing.B) (*Server, *Principal, string) {
	b.Helper()
	srv := natstest.RunJetStream(b)
	ctx := context.Background()
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	g, err := New(Config{HTTPAddr: "127.0.0.1:0", Logger: log, Registerer: prometheus.NewRegistry(), Gatherer: prometheus.NewRegistry()}, natstest.Connect(b, srv))
	if err != nil {
		b.Fatal(err)
	}
	if err := g.open(ctx); err != nil {
		b.Fatal(err)
	}
	if err := g.waiters.start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(g.waiters.stop)

	exNC := natstest.Connect(b, srv)
	js, err := jetstream.New(exNC)
	if err != nil {
		b.Fatal(err)
	}
	tier := schemas.TierUnlimited
	cons, err := js.Consumer(ctx, schemas.ExecStream(tier), schemas.ExecConsumer(tier))
	if err != nil {
		b.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		now := time.Now().UTC()
		id := m.Headers().Get(schemas.HeaderExecutionID)
		body, _ := json.Marshal(&schemas.Result{ID: id, TenantID: "bench", Tier: tier, Status: schemas.StatusSucceeded,
			Stdout: []byte("hi"), CreatedAt: now, StartedAt: &now, FinishedAt: &now})
		_ = exNC.Publish(m.Headers().Get(schemas.HeaderReply), body)
		_ = m.Ack()
	}, jetstream.PullMaxMessages(256))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cc.Stop)

	sum := sha256.Sum256([]byte("bench module"))
	digest := hex.EncodeToString(sum[:])
	mod, _ := json.Marshal(schemas.Module{ID: "sha256:" + digest, Name: "bench.wasm", TenantID: "bench", CreatedAt: time.Now().UTC()})
	if _, err := g.moduleRefs.Put(ctx, schemas.ModuleRefKey("bench", digest), mod); err != nil {
		b.Fatal(err)
	}
	p := &Principal{TenantID: "bench", KeyID: "key_bench", Tier: g.cfg.Tiers[tier]}
	return g, p, "sha256:" + digest
}

// BenchmarkGateway_PublishReply is one synchronous execution through the gateway's execution
// path against an executor that answers at once: module lookup, publish (JetStream ack),
// reply routed back to the waiting request.
func BenchmarkGateway_PublishReply(b *testing.B) {
	g, p, id := startStubbedGateway(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		out, err := g.createExecution(ctx, p, &schemas.ExecutionRequest{ModuleID: id, Stdin: "hi"}, "")
		if err != nil || out.Execution.Status != schemas.StatusSucceeded {
			b.Fatalf("%+v %v", out, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/exec")
}

// BenchmarkGateway_PublishReply_Parallel keeps 16 × GOMAXPROCS executions in flight.
func BenchmarkGateway_PublishReply_Parallel(b *testing.B) {
	g, p, id := startStubbedGateway(b)
	ctx := context.Background()
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			out, err := g.createExecution(ctx, p, &schemas.ExecutionRequest{ModuleID: id, Stdin: "hi"}, "")
			if err != nil || out.Execution.Status != schemas.StatusSucceeded {
				b.Errorf("%+v %v", out, err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "execs/s")
}
