package executor

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmwiz/wasmwiz/internal/promreg"
)

// metrics are the node's Prometheus collectors, all named wasmwiz_*.
type metrics struct {
	executions      *prometheus.CounterVec   // tier, status
	duration        *prometheus.HistogramVec // tier
	queueWait       *prometheus.HistogramVec // tier
	cacheHits       *prometheus.CounterVec   // cache = file | compiled
	cacheMisses     *prometheus.CounterVec   // cache = file | compiled
	workerRestarts  *prometheus.CounterVec   // reason
	workers         *prometheus.GaugeVec     // state = idle | busy | spare
	compileDuration prometheus.Histogram
	fetchFailures   *prometheus.CounterVec // tier
	deadLetters     *prometheus.CounterVec // tier
	resultsCut      *prometheus.CounterVec // tier

	// Children set on every execution, looked up once.
	workersBusy, workersIdle, workersSpare prometheus.Gauge
	fileHits, compiledHits                 prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		executions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmwiz_executions_total",
			Help: "Executions finished by this node, by tier and final status.",
		}, []string{"tier", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "wasmwiz_execution_duration_seconds",
			Help:    "Wall time of executions (instantiate and _start, in the worker).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10), // 0.5ms .. ~131s
		}, []string{"tier"}),
		queueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "wasmwiz_queue_wait_seconds",
			Help:    "Time from the request's creation to the start of its execution.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"tier"}),
		cacheHits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmwiz_module_cache_hits_total",
			Help: "Module cache hits: cache=file (node's module files), cache=compiled (worker's compiled modules).",
		}, []string{"cache"}),
		cacheMisses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmwiz_module_cache_misses_total",
			Help: "Module cache misses: cache=file (fetched from the object store), cache=compiled (compiled).",
		}, []string{"cache"}),
		workerRestarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmwiz_worker_restarts_total",
			Help: "Worker processes replaced, by reason: deadline (killed at its guest's deadline), memory (killed, its guest over its memory limit), compile_timeout, crashed, recycled (a guest left it holding too much memory).",
		}, []string{"reason"}),
		workers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "wasmwiz_workers",
			Help: "Worker processes by state (spare: started and warmed, replacing the next worker lost).",
		}, []string{"state"}),
		compileDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "wasmwiz_compile_duration_seconds",
			Help:    "Compilation time of modules in workers (cache misses only).",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9),
		}),
		fetchFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmwiz_executor_fetch_failures_total",
			Help: "Pulls from a tier's consumer that failed (no responders while the consumer has no leader, leadership changed, NATS errors); each is followed by a backoff.",
		}, []string{"tier"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmwiz_dead_letters_total",
			Help: "Execution requests this node moved to the dead letters (WASMWIZ_DLQ) after their last delivery failed.",
		}, []string{"tier"}),
		resultsCut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmwiz_results_cut_total",
			Help: "Results whose outputs were cut because their tenant's stored results had reached its tier's result_bytes (storage_quota_exceeded).",
		}, []string{"tier"}),
	}
	rs := promreg.Set{R: reg}
	m.executions = promreg.Add(&rs, m.executions)
	m.duration = promreg.Add(&rs, m.duration)
	m.queueWait = promreg.Add(&rs, m.queueWait)
	m.cacheHits = promreg.Add(&rs, m.cacheHits)
	m.cacheMisses = promreg.Add(&rs, m.cacheMisses)
	m.workerRestarts = promreg.Add(&rs, m.workerRestarts)
	m.workers = promreg.Add(&rs, m.workers)
	m.compileDuration = promreg.Add(&rs, m.compileDuration)
	m.fetchFailures = promreg.Add(&rs, m.fetchFailures)
	m.deadLetters = promreg.Add(&rs, m.deadLetters)
	m.resultsCut = promreg.Add(&rs, m.resultsCut)
	if rs.Err != nil {
		return nil, rs.Err
	}
	m.workersBusy, m.workersIdle = m.workers.WithLabelValues("busy"), m.workers.WithLabelValues("idle")
	m.workersSpare = m.workers.WithLabelValues("spare")
	m.fileHits, m.compiledHits = m.cacheHits.WithLabelValues("file"), m.cacheHits.WithLabelValues("compiled")
	return m, nil
}
