// Package opsmetrics reports, at scrape time, what operators need to see from outside a role's
// own code: whether NATS is connected, whether JetStream answers, how much JetStream storage the
// account uses against its limit, the size of WasmWiz's streams, and the pending and ack-pending
// counts of JetStream consumers (from consumer info). It also turns a dependency's ping into a
// 0/1 gauge (the accounting database).
//
// Every value is read when Prometheus scrapes, with a timeout, so a scrape never shows a stale
// number and an unreachable JetStream shows up as wasmwiz_jetstream_up 0 rather than a hang.
package opsmetrics

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// ConsumerRef names a durable consumer on a stream.
type ConsumerRef struct{ Stream, Consumer string }

// Config says what a JetStream collector reports. Consumers and Streams may be empty.
type Config struct {
	Consumers []ConsumerRef
	Streams   []string
	Timeout   time.Duration // for all JetStream calls of one scrape; default 2s
}

// JetStream is a prometheus.Collector over one NATS connection.
type JetStream struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	cfg Config

	connected, up, storeBytes, storeLimit *prometheus.Desc
	pending, ackPending, redelivered      *prometheus.Desc
	streamMsgs, streamBytes               *prometheus.Desc
	streamMaxBytes                        *prometheus.Desc
}

// NewJetStream returns a collector reading from nc.
func NewJetStream(nc *nats.Conn, cfg Config) (*JetStream, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	cl := []string{"stream", "consumer"}
	c := &JetStream{
		nc: nc, js: js, cfg: cfg,
		connected:   prometheus.NewDesc("wasmwiz_nats_connected", "1 when this process is connected to a NATS server, else 0.", nil, nil),
		up:          prometheus.NewDesc("wasmwiz_jetstream_up", "1 when JetStream answered this scrape's account info request in time, else 0.", nil, nil),
		storeBytes:  prometheus.NewDesc("wasmwiz_jetstream_store_bytes", "File storage used by the account's JetStream streams (all replicas are not summed: one copy).", nil, nil),
		storeLimit:  prometheus.NewDesc("wasmwiz_jetstream_store_limit_bytes", "The account's JetStream file storage limit; -1 when the account has no limit of its own.", nil, nil),
		pending:     prometheus.NewDesc("wasmwiz_consumer_pending", "Messages in the stream not yet delivered to the consumer (consumer info num_pending).", cl, nil),
		ackPending:  prometheus.NewDesc("wasmwiz_consumer_ack_pending", "Messages delivered to the consumer and not yet acked (consumer info num_ack_pending).", cl, nil),
		redelivered: prometheus.NewDesc("wasmwiz_consumer_redelivered", "Messages delivered more than once and not yet acked (consumer info num_redelivered).", cl, nil),
		streamMsgs:  prometheus.NewDesc("wasmwiz_stream_messages", "Messages stored in the stream.", []string{"stream"}, nil),
		streamBytes: prometheus.NewDesc("wasmwiz_stream_bytes", "Bytes stored in the stream.", []string{"stream"}, nil),
	}
	c.streamMaxBytes = prometheus.NewDesc("wasmwiz_stream_max_bytes", "The stream's own byte limit (MaxBytes); -1 when it has none.", []string{"stream"}, nil)
	return c, nil
}

// Describe implements prometheus.Collector.
func (c *JetStream) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.connected, c.up, c.storeBytes, c.storeLimit, c.pending, c.ackPending, c.redelivered, c.streamMsgs, c.streamBytes, c.streamMaxBytes} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. A consumer or stream whose info cannot be read is
// left out of this scrape (its series goes stale) rather than reported as zero.
func (c *JetStream) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(c.connected, b2f(c.nc.IsConnected()))
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
	defer cancel()
	ai, err := c.js.AccountInfo(ctx)
	if err != nil {
		gauge(c.up, 0)
		return
	}
	gauge(c.up, 1)
	gauge(c.storeBytes, float64(ai.Store))
	gauge(c.storeLimit, float64(ai.Limits.MaxStore))
	for _, s := range c.cfg.Streams {
		st, err := c.js.Stream(ctx, s)
		if err != nil {
			continue
		}
		info := st.CachedInfo()
		gauge(c.streamMsgs, float64(info.State.Msgs), s)
		gauge(c.streamBytes, float64(info.State.Bytes), s)
		gauge(c.streamMaxBytes, float64(info.Config.MaxBytes), s)
	}
	for _, r := range c.cfg.Consumers {
		cons, err := c.js.Consumer(ctx, r.Stream, r.Consumer)
		if err != nil {
			continue
		}
		info := cons.CachedInfo()
		gauge(c.pending, float64(info.NumPending), r.Stream, r.Consumer)
		gauge(c.ackPending, float64(info.NumAckPending), r.Stream, r.Consumer)
		gauge(c.redelivered, float64(info.NumRedelivered), r.Stream, r.Consumer)
	}
}

// PingGauge is a gauge named name that is 1 when ping succeeds within timeout at scrape time,
// else 0.
func PingGauge(name, help string, timeout time.Duration, ping func(context.Context) error) prometheus.GaugeFunc {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		return b2f(ping(ctx) == nil)
	})
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
