package executor

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wasmwiz/wasmwiz/internal/fixtures"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// BenchmarkWorker_RoundTrip is one warm hello through a real worker process: pipe out, run,
// pipe back (no NATS).
func BenchmarkWorker_RoundTrip(b *testing.B) {
	p, _ := newTestPool(b, 1, nil)
	job := runJob(b, "hello", time.Second, 128)
	if res, err := p.run(context.Background(), job, p.cfg.compileTimeout); err != nil || res.Status != schemas.StatusSucceeded {
		b.Fatalf("warm-up: %+v %v", res, err)
	}
	var guest time.Duration
	b.ResetTimer()
	for b.Loop() {
		res, err := p.run(context.Background(), job, p.cfg.compileTimeout)
		if err != nil || res.Status != schemas.StatusSucceeded || !res.CompileCacheHit {
			b.Fatalf("%+v %v", res, err)
		}
		guest += res.Duration
	}
	b.ReportMetric(float64(guest.Microseconds())/float64(b.N), "guest-µs/op")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "execs/s")
}

// BenchmarkNode_Execute is one warm hello from a gateway's publish to its reply: JetStream
// publish, fetch, results KV read and write, worker round trip, event publish, reply, ack.
func BenchmarkNode_Execute(b *testing.B) {
	e := startEnv(b, func(c *Config) { c.Logger = discardLogger() })
	mod := e.putModule(fixtures.Wasm("hello"))
	if res := e.execute(newRequest(schemas.TierPro, mod)); res.Status != schemas.StatusSucceeded {
		b.Fatalf("warm-up: %s", res.Status)
	}
	b.ResetTimer()
	for b.Loop() {
		sub := e.publish(newRequest(schemas.TierPro, mod), "")
		if res := e.wait(sub, 10*time.Second); res.Status != schemas.StatusSucceeded {
			b.Fatalf("%s %q", res.Status, res.Error)
		}
		_ = sub.Unsubscribe()
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/exec")
}

// BenchmarkNode_Execute_Parallel keeps many executions in flight, to measure throughput. Like a
// gateway, it publishes with one shared reply subscription and marks the executions new.
func BenchmarkNode_Execute_Parallel(b *testing.B) {
	e := startEnv(b, func(c *Config) { c.Logger = discardLogger() })
	mod := e.putModule(fixtures.Wasm("hello"))
	if res := e.execute(newRequest(schemas.TierPro, mod)); res.Status != schemas.StatusSucceeded {
		b.Fatalf("warm-up: %s", res.Status)
	}
	var waiting sync.Map // execution id → chan *nats.Msg
	sub, err := e.nc.Subscribe(schemas.ExecutorReplyPrefix+".bench.*", func(m *nats.Msg) {
		if ch, ok := waiting.Load(m.Header.Get(schemas.HeaderExecutionID)); ok {
			ch.(chan *nats.Msg) <- m
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Unsubscribe()
	b.SetParallelism(16) // 32 in flight on 2 CPUs
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ch := make(chan *nats.Msg, 1)
		for pb.Next() {
			req := newRequest(schemas.TierPro, mod)
			req.TenantID = "bench"
			body, _ := json.Marshal(req)
			m := nats.NewMsg(schemas.ExecSubject(req.Tier, req.TenantID))
			m.Data = body
			m.Header.Set(schemas.HeaderMsgID, req.ExecutionID)
			m.Header.Set(schemas.HeaderExecutionID, req.ExecutionID)
			m.Header.Set(schemas.HeaderNewExecution, "true")
			m.Header.Set(schemas.HeaderReply, schemas.ExecutorReplyPrefix+".bench."+req.ExecutionID)
			waiting.Store(req.ExecutionID, ch)
			if _, err := e.js.PublishMsg(context.Background(), m); err != nil {
				b.Error(err)
				return
			}
			select {
			case r := <-ch:
				var res schemas.Result
				if err := json.Unmarshal(r.Data, &res); err != nil || res.Status != schemas.StatusSucceeded {
					b.Errorf("%s %q %v", res.Status, res.Error, err)
					return
				}
			case <-time.After(30 * time.Second):
				b.Error("no reply")
				return
			}
			waiting.Delete(req.ExecutionID)
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "execs/s")
}

// BenchmarkWorker_RoundTrip_Parallel keeps every worker of a two-worker pool busy.
func BenchmarkWorker_RoundTrip_Parallel(b *testing.B) {
	p, _ := newTestPool(b, 2, nil)
	job := runJob(b, "hello", time.Second, 128)
	if res, err := p.run(context.Background(), job, p.cfg.compileTimeout); err != nil || res.Status != schemas.StatusSucceeded {
		b.Fatalf("warm-up: %+v %v", res, err)
	}
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			res, err := p.run(context.Background(), job, p.cfg.compileTimeout)
			if err != nil || res.Status != schemas.StatusSucceeded {
				b.Errorf("%+v %v", res, err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "execs/s")
}
