package accounting

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
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
	var err error
	m.batchSize = register(r, m.batchSize, &err)
	m.batchDuration = register(r, m.batchDuration, &err)
	m.rows = register(r, m.rows, &err)
	m.duplicates = register(r, m.duplicates, &err)
	m.insertErrors = register(r, m.insertErrors, &err)
	m.invalid = register(r, m.invalid, &err)
	m.rejected = register(r, m.rejected, &err)
	m.lag = register(r, m.lag, &err)
	m.pending = register(r, m.pending, &err)
	m.ackPending = register(r, m.ackPending, &err)
	m.usageQueries = register(r, m.usageQueries, &err)
	return m, err
}

// register registers c, or returns the collector already registered under its name (a second
// Consumer in one process, e.g. after a restart in tests).
func register[C prometheus.Collector](r prometheus.Registerer, c C, errp *error) C {
	if err := r.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		*errp = errors.Join(*errp, err)
	}
	return c
}
