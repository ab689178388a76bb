package accounting_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmwiz/wasmwiz/accounting"
	"github.com/wasmwiz/wasmwiz/accounting/storetest"
	"github.com/wasmwiz/wasmwiz/internal/natstest"
	"github.com/wasmwiz/wasmwiz/internal/streams"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// BenchmarkConsumer_Ingest measures sustained ingest end to end: events published to
// WASMWIZ_EVENTS, consumed in batches, stored and acked. It reports stored events/s.
func BenchmarkConsumer_Ingest(b *testing.B) {
	for _, name := range []string{"sqlite", "postgres"} {
		for _, batch := range []int{1, 256} {
			b.Run(name+"/batch="+map[int]string{1: "1", 256: "256"}[batch], func(b *testing.B) {
				store := storetest.Factories[name](b)
				s := natstest.RunJetStream(b)
				nc := natstest.Connect(b, s)
				js, err := jetstream.New(nc)
				if err != nil {
					b.Fatal(err)
				}
				if err := streams.Ensure(context.Background(), js, streams.Options{}); err != nil {
					b.Fatal(err)
				}
				c, err := accounting.New(accounting.Config{Store: store, BatchSize: batch, BatchWait: 50 * time.Millisecond,
					Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, nc)
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() { c.Run(ctx); close(done) }()
				b.Cleanup(func() { cancel(); <-done })
				natstest.CheckFor(b, 20*time.Second, poll, ready(c, true))
				cons, err := js.Consumer(ctx, schemas.StreamEvents, schemas.ConsumerAccounting)
				if err != nil {
					b.Fatal(err)
				}

				// One iteration is one event; they are published ahead, then the clock measures
				// how long the consumer takes to store and ack them all.
				n := b.N
				for i := range n {
					x := storetest.Exec{ID: storetest.ExecID("ingest", i), Tenant: "acme", Module: "m", Key: "k",
						Status: schemas.StatusSucceeded, Finished: storetest.Day0.Add(time.Duration(i) * time.Millisecond), WallMS: 3}
					ev := x.Event(0)
					data, _ := json.Marshal(ev)
					if _, err := js.PublishAsync(schemas.EventSubject(ev.Type, ev.TenantID), data, jetstream.WithMsgID(ev.ID)); err != nil {
						b.Fatal(err)
					}
					if i%1000 == 999 { // stay below the async publisher's limit of outstanding messages
						select {
						case <-js.PublishAsyncComplete():
						case <-time.After(time.Minute):
							b.Fatal("publish did not complete")
						}
					}
				}
				select {
				case <-js.PublishAsyncComplete():
				case <-time.After(time.Minute):
					b.Fatal("publish did not complete")
				}
				b.ResetTimer()
				start := time.Now()
				natstest.CheckFor(b, 10*time.Minute, poll, func() error {
					info, err := cons.Info(ctx)
					if err != nil {
						return err
					}
					if info.AckFloor.Stream < uint64(n) {
						return fmt.Errorf("acked up to %d of %d events", info.AckFloor.Stream, n)
					}
					return nil
				})
				elapsed := time.Since(start)
				b.StopTimer()
				b.ReportMetric(float64(n)/elapsed.Seconds(), "events/s")
			})
		}
	}
}
