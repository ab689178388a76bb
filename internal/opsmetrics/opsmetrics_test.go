package opsmetrics

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wasmwiz/wasmwiz/internal/natstest"
)

func TestJetStream_Collect(t *testing.T) {
	srv := natstest.RunJetStream(t)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := js.Publish(ctx, "s.x", []byte("hello")); err != nil {
			t.Fatal(err)
		}
	}
	cons, _ := js.Consumer(ctx, "S", "c")
	batch, err := cons.Fetch(2)
	if err != nil {
		t.Fatal(err)
	}
	for range batch.Messages() { // held, not acked
	}

	c, err := NewJetStream(nc, Config{Consumers: []ConsumerRef{{"S", "c"}, {"S", "missing"}}, Streams: []string{"S"}})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	want := `
# HELP wasmwiz_consumer_ack_pending Messages delivered to the consumer and not yet acked (consumer info num_ack_pending).
# TYPE wasmwiz_consumer_ack_pending gauge
wasmwiz_consumer_ack_pending{consumer="c",stream="S"} 2
# HELP wasmwiz_consumer_pending Messages in the stream not yet delivered to the consumer (consumer info num_pending).
# TYPE wasmwiz_consumer_pending gauge
wasmwiz_consumer_pending{consumer="c",stream="S"} 3
# HELP wasmwiz_jetstream_up 1 when JetStream answered this scrape's account info request in time, else 0.
# TYPE wasmwiz_jetstream_up gauge
wasmwiz_jetstream_up 1
# HELP wasmwiz_nats_connected 1 when this process is connected to a NATS server, else 0.
# TYPE wasmwiz_nats_connected gauge
wasmwiz_nats_connected 1
# HELP wasmwiz_stream_messages Messages stored in the stream.
# TYPE wasmwiz_stream_messages gauge
wasmwiz_stream_messages{stream="S"} 5
`
	// Consumer state is read from the server at scrape time; on a loaded machine the first scrape
	// can come before the server has counted the fetch, so poll for the expected state.
	natstest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		return testutil.GatherAndCompare(reg, strings.NewReader(want), "wasmwiz_consumer_pending", "wasmwiz_consumer_ack_pending",
			"wasmwiz_jetstream_up", "wasmwiz_nats_connected", "wasmwiz_stream_messages")
	})
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		switch mf.GetName() {
		case "wasmwiz_jetstream_store_bytes", "wasmwiz_stream_bytes":
			if v := mf.GetMetric()[0].GetGauge().GetValue(); v <= 0 {
				t.Errorf("%s = %v, want > 0", mf.GetName(), v)
			}
		case "wasmwiz_jetstream_store_limit_bytes":
			t.Logf("store limit: %v", mf.GetMetric()[0].GetGauge().GetValue())
		}
	}

	// NATS gone: not connected, JetStream down, no stale consumer numbers.
	srv.Shutdown()
	srv.WaitForShutdown()
	natstest.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if nc.IsConnected() {
			return errors.New("the client still reports a connection to the stopped server")
		}
		return nil
	})
	want = `
# HELP wasmwiz_jetstream_up 1 when JetStream answered this scrape's account info request in time, else 0.
# TYPE wasmwiz_jetstream_up gauge
wasmwiz_jetstream_up 0
# HELP wasmwiz_nats_connected 1 when this process is connected to a NATS server, else 0.
# TYPE wasmwiz_nats_connected gauge
wasmwiz_nats_connected 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "wasmwiz_consumer_pending", "wasmwiz_jetstream_up", "wasmwiz_nats_connected"); err != nil {
		t.Error(err)
	}
}

func TestPingGauge(t *testing.T) {
	var fail error
	g := PingGauge("wasmwiz_database_up", "db", time.Second, func(context.Context) error { return fail })
	if v := testutil.ToFloat64(g); v != 1 {
		t.Errorf("up = %v, want 1", v)
	}
	fail = errors.New("down")
	if v := testutil.ToFloat64(g); v != 0 {
		t.Errorf("down = %v, want 0", v)
	}
}
