package accounting

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmwiz/wasmwiz/internal/promreg"
)

type metrics struct {
	batchSize     prometheus.Histogram
	batchDuration prometheus.Histogram
	rows          *prometheus.CounterVec
	duplicates    prometheus.Counter
	insertErrors  prometheus.Counter
	invalid       prometheus.Counter
	rejected      prometheus.Counter
	lag           prometheus.Histogram
	pending       prometheus.Gauge
	ackPending    prometheus.Gauge
	usageQueries  *prometheus.CounterVec
}

func newMetrics(r prometheus.Registerer) (*metrics, error) {
	const ns, sub = "wasmwiz", "accounting"
	m := &metrics{
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "batch_size", Help: "Events per stored batch.",
			Buckets: []float64{1, 2, 5, 10, 25, 50, 100, 256, 512, 1024, 4096}}),
		batchDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "batch_duration_seconds", Help: "Time to store one batch, retries included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}),
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "rows_inserted_total", Help: "Rows inserted, by table (executions, events)."}, []string{"table"}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "duplicates_skipped_total", Help: "Events not inserted because their execution or event id was already stored."}),
		insertErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "insert_errors_total", Help: "Failed attempts to store a batch (each is retried)."}),
		invalid: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "invalid_events_total", Help: "Messages terminated because they cannot be decoded or stored."}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "rejected_events_total", Help: "Valid events the store refused while accepting others; each is naked and retried later."}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "lag_seconds", Help: "Seconds from an event's time to the commit that stored it.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 16)}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "consumer_pending", Help: "Events in the stream not yet delivered to the accounting consumer."}),
		ackPending: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "consumer_ack_pending", Help: "Events delivered to the accounting consumer and not yet acked."}),
		usageQueries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "queries_total", Help: "Usage and reconcile queries answered, by error code (empty when ok)."}, []string{"code"}),
	}
	rs := promreg.Set{R: r}
	m.batchSize = promreg.Add(&rs, m.batchSize)
	m.batchDuration = promreg.Add(&rs, m.batchDuration)
	m.rows = promreg.Add(&rs, m.rows)
	m.duplicates = promreg.Add(&rs, m.duplicates)
	m.insertErrors = promreg.Add(&rs, m.insertErrors)
	m.invalid = promreg.Add(&rs, m.invalid)
	m.rejected = promreg.Add(&rs, m.rejected)
	m.lag = promreg.Add(&rs, m.lag)
	m.pending = promreg.Add(&rs, m.pending)
	m.ackPending = promreg.Add(&rs, m.ackPending)
	m.usageQueries = promreg.Add(&rs, m.usageQueries)
	return m, rs.Err
}
