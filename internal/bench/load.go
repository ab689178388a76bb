package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/nats-io/nats.go"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// Target is one way of reaching WasmWiz. Execute returns the outcome's label: "200" for a
// succeeded execution, otherwise the HTTP status (or NATS service error code), "200:<status>"
// for an execution that did not succeed, or "error:<what>" when there was no answer.
type Target interface {
	Upload(ctx context.Context, name string, wasm []byte) (string, error)
	Execute(ctx context.Context, body []byte) string
}

// OutcomeOK is the outcome of a succeeded execution.
const OutcomeOK = "200"

// executionOutcome is "200" for a succeeded execution and "200:<status>" otherwise.
func executionOutcome(b []byte) string {
	var ex struct {
		Status schemas.Status `json:"status"`
	}
	if err := json.Unmarshal(b, &ex); err != nil {
		return "error:decode"
	}
	if ex.Status != schemas.StatusSucceeded {
		return OutcomeOK + ":" + string(ex.Status)
	}
	return OutcomeOK
}

// NATSTarget reaches WasmWiz over its direct NATS API.
type NATSTarget struct {
	nc   *nats.Conn
	auth string
}

// NewNATSTarget connects to the NATS server at u (with opts: credentials, TLS).
func NewNATSTarget(u, key string, opts ...nats.Option) (*NATSTarget, error) {
	nc, err := nats.Connect(u, append(opts, nats.Name("wasmwiz-load"))...)
	if err != nil {
		return nil, err
	}
	return &NATSTarget{nc: nc, auth: "Bearer " + key}, nil
}

// Close closes the NATS connection.
func (t *NATSTarget) Close() { t.nc.Close() }

func (t *NATSTarget) Upload(ctx context.Context, name string, wasm []byte) (string, error) {
	msg := nats.NewMsg(schemas.APISubject(schemas.OpModulesUpload))
	msg.Header.Set("Authorization", t.auth)
	msg.Header.Set(schemas.HeaderModuleName, name)
	msg.Data = wasm
	resp, err := t.nc.RequestMsgWithContext(ctx, msg)
	if err != nil {
		return "", err
	}
	if code := resp.Header.Get("Nats-Service-Error-Code"); code != "" {
		return "", fmt.Errorf("%s: %s", code, resp.Data)
	}
	var m schemas.Module
	if err := json.Unmarshal(resp.Data, &m); err != nil {
		return "", err
	}
	return m.ID, nil
}

func (t *NATSTarget) Execute(ctx context.Context, body []byte) string {
	msg := nats.NewMsg(schemas.APISubject(schemas.OpExecutionsCreate))
	msg.Header.Set("Authorization", t.auth)
	msg.Data = body
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	resp, err := t.nc.RequestMsgWithContext(ctx, msg)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return "error:no_responders"
		}
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
			return "error:timeout"
		}
		return "error:transport"
	}
	if code := resp.Header.Get("Nats-Service-Error-Code"); code != "" {
		return code
	}
	return executionOutcome(resp.Data)
}

// LoadConfig says how Generate sends.
type LoadConfig struct {
	Concurrency int
	Duration    time.Duration // ignored when Requests > 0
	Requests    int
	Rate        float64   // > 0: open loop at this arrival rate
	Progress    io.Writer // nil: no progress line
	Label       string    // prefix of the progress line
}

// Report is what a run measured. Latencies are in milliseconds.
type Report struct {
	Mode        string           `json:"mode"` // closed or open
	Concurrency int              `json:"concurrency"`
	Rate        float64          `json:"rate,omitempty"`
	Requests    int64            `json:"requests"`
	Errors      int64            `json:"errors"`
	Seconds     float64          `json:"seconds"`
	PerSecond   float64          `json:"per_second"` // completed requests (ok or not) per second
	OKPerSecond float64          `json:"ok_per_second"`
	Latency     LatencySummary   `json:"latency_ms"`
	Outcomes    map[string]int64 `json:"outcomes"` // "200" is a succeeded execution
	// Retried counts attempts that failed and were sent again (keyed REST requests), by what
	// failed: clients saw these and rode them out; Errors are the requests that failed for good.
	Retried map[string]int64 `json:"retried,omitempty"`
}

type LatencySummary struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// recorder collects latencies (µs, 1 µs to 10 min, 3 significant digits) and outcomes.
type recorder struct {
	mu       sync.Mutex
	h        *hdrhistogram.Histogram
	outcomes map[string]int64
	n, errs  atomic.Int64
}

func newRecorder() *recorder {
	return &recorder{h: hdrhistogram.New(1, int64(10*time.Minute/time.Microsecond), 3), outcomes: map[string]int64{}}
}

func (r *recorder) record(d time.Duration, outcome string) {
	r.mu.Lock()
	_ = r.h.RecordValue(max(1, d.Microseconds()))
	r.outcomes[outcome]++
	r.mu.Unlock()
	r.n.Add(1)
	if outcome != OutcomeOK {
		r.errs.Add(1)
	}
}

func (r *recorder) quantile(q float64) float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return float64(r.h.ValueAtQuantile(q)) / 1000
}

// Generate runs do under cfg and reports. do returns the outcome label (OutcomeOK is success).
// Closed loop by default (cfg.Concurrency callers, each sending its next request when the last
// one is answered); with cfg.Rate, open loop at a constant arrival rate, latency measured from
// each request's intended send time, so a stall shows up as latency instead of fewer samples
// (no coordinated omission).
func Generate(ctx context.Context, cfg LoadConfig, do func(context.Context) string) *Report {
	rec := newRecorder()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Requests are only sent before the end; those in flight at the end are waited for.
	var deadline time.Time
	start := time.Now()
	if cfg.Requests == 0 {
		deadline = start.Add(cfg.Duration)
	}
	var issued atomic.Int64
	next := func() bool {
		if cfg.Requests > 0 {
			return issued.Add(1) <= int64(cfg.Requests)
		}
		return time.Now().Before(deadline)
	}
	stopProgress := make(chan struct{})
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		if cfg.Progress == nil {
			return
		}
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		var lastN int64
		last := start
		for {
			select {
			case <-stopProgress:
				fmt.Fprint(cfg.Progress, "\r\033[K")
				return
			case now := <-t.C:
				n := rec.n.Load()
				rate := float64(n-lastN) / now.Sub(last).Seconds()
				lastN, last = n, now
				fmt.Fprintf(cfg.Progress, "\r\033[K%s%5.1fs  %8.0f/s  done %d  errors %d  p99 %.2f ms",
					cfg.Label, now.Sub(start).Seconds(), rate, n, rec.errs.Load(), rec.quantile(99))
			}
		}
	}()

	var wg sync.WaitGroup
	if cfg.Rate <= 0 {
		for range cfg.Concurrency {
			wg.Go(func() {
				for ctx.Err() == nil && next() {
					t0 := time.Now()
					out := do(ctx)
					rec.record(time.Since(t0), out)
				}
			})
		}
	} else {
		// Open loop: request i is due at start + i/rate. A sender that is late (every sender
		// busy) still measures from the due time.
		interval := time.Duration(float64(time.Second) / cfg.Rate)
		due := make(chan time.Time, cfg.Concurrency)
		for range cfg.Concurrency {
			wg.Go(func() {
				for at := range due {
					out := do(ctx)
					rec.record(time.Since(at), out)
				}
			})
		}
		for i := 0; ctx.Err() == nil; i++ {
			at := start.Add(time.Duration(i) * interval)
			if (cfg.Requests > 0 && i >= cfg.Requests) || (cfg.Requests == 0 && !at.Before(deadline)) {
				break
			}
			if d := time.Until(at); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
				}
			}
			select {
			case due <- at:
			case <-ctx.Done():
			}
		}
		close(due)
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(stopProgress)
	<-progressDone

	rep := &Report{Mode: "closed", Concurrency: cfg.Concurrency, Rate: cfg.Rate, Seconds: elapsed.Seconds(), Outcomes: rec.outcomes}
	if cfg.Rate > 0 {
		rep.Mode = "open"
	}
	rep.Requests, rep.Errors = rec.n.Load(), rec.errs.Load()
	rep.PerSecond = float64(rep.Requests) / elapsed.Seconds()
	rep.OKPerSecond = float64(rep.Requests-rep.Errors) / elapsed.Seconds()
	h := rec.h
	rep.Latency = LatencySummary{
		P50: float64(h.ValueAtQuantile(50)) / 1000, P90: float64(h.ValueAtQuantile(90)) / 1000,
		P99: float64(h.ValueAtQuantile(99)) / 1000, P999: float64(h.ValueAtQuantile(99.9)) / 1000,
		Max: float64(h.Max()) / 1000, Mean: h.Mean() / 1000,
	}
	return rep
}

// Print writes the report for people.
func (r *Report) Print(w io.Writer) {
	mode := fmt.Sprintf("closed loop, %d concurrent", r.Concurrency)
	if r.Mode == "open" {
		mode = fmt.Sprintf("open loop at %.0f/s, up to %d concurrent", r.Rate, r.Concurrency)
	}
	fmt.Fprintf(w, "%s: %d requests in %.2fs, %.0f/s (%.0f/s succeeded), %d errors\n",
		mode, r.Requests, r.Seconds, r.PerSecond, r.OKPerSecond, r.Errors)
	l := r.Latency
	fmt.Fprintf(w, "latency ms: p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f  mean %.2f\n", l.P50, l.P90, l.P99, l.P999, l.Max, l.Mean)
	fmt.Fprintf(w, "outcomes (200 = succeeded execution): %s\n", joinCounts(r.Outcomes))
	if len(r.Retried) > 0 {
		fmt.Fprintf(w, "attempts retried (same Idempotency-Key, next gateway): %s\n", joinCounts(r.Retried))
	}
}

// joinCounts is "a: 1, b: 2", sorted by label.
func joinCounts(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s: %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
