package gateway

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmwiz/wasmwiz/internal/promreg"
)

type metrics struct {
	httpRequests        *prometheus.CounterVec
	httpDuration        *prometheus.HistogramVec
	natsRequests        *prometheus.CounterVec
	natsDuration        *prometheus.HistogramVec
	executionsPublished *prometheus.CounterVec
	compileSeconds      prometheus.Histogram
	rateLimited         *prometheus.CounterVec
	rateLimitErrors     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmwiz_http_requests_total", Help: "HTTP requests by method, route and status.",
		}, []string{"method", "route", "status"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "wasmwiz_http_request_duration_seconds", Help: "HTTP request duration by method and route.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18),
		}, []string{"method", "route"}),
		natsRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmwiz_nats_api_requests_total", Help: "Direct NATS API requests by operation and status.",
		}, []string{"operation", "status"}),
		natsDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "wasmwiz_nats_api_request_duration_seconds", Help: "Direct NATS API request duration by operation.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18),
		}, []string{"operation"}),
		executionsPublished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmwiz_executions_published_total", Help: "Execution requests published to JetStream by tier.",
		}, []string{"tier"}),
		compileSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "wasmwiz_upload_compile_duration_seconds", Help: "Compile time of uploaded modules, as reported by executors.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmwiz_ratelimit_rejections_total", Help: "Execution requests refused by a limit, by tier and limit (per_minute, per_day, in_flight).",
		}, []string{"tier", "limit"}),
		rateLimitErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wasmwiz_ratelimit_errors_total", Help: "Execution requests refused because the rate limiter's store was unreachable (fail closed).",
		}),
	}
	rs := promreg.Set{R: reg}
	m.httpRequests = promreg.Add(&rs, m.httpRequests)
	m.httpDuration = promreg.Add(&rs, m.httpDuration)
	m.natsRequests = promreg.Add(&rs, m.natsRequests)
	m.natsDuration = promreg.Add(&rs, m.natsDuration)
	m.executionsPublished = promreg.Add(&rs, m.executionsPublished)
	m.compileSeconds = promreg.Add(&rs, m.compileSeconds)
	m.rateLimited = promreg.Add(&rs, m.rateLimited)
	m.rateLimitErrors = promreg.Add(&rs, m.rateLimitErrors)
	return m, rs.Err
}
