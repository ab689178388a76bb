package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nuid"

	"github.com/wasmwiz/wasmwiz/internal/backoff"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// RESTOptions is what a RESTTarget does beyond one POST per request to one gateway.
type RESTOptions struct {
	// URLs are the gateways. Requests start on them in turn; a retried request moves on to the
	// next. Uploads go to the first that answers.
	URLs []string
	// IdempotencyKeys sends an Idempotency-Key (<KeyPrefix>-<n>, one per request) and retries a
	// request that got no answer, a 502/503/504 or a timeout, with the same key, on the next
	// URL, until Deadline: the gateways run a keyed request once however often it is sent.
	// Without keys nothing is retried (a retry could run the execution twice).
	IdempotencyKeys bool
	KeyPrefix       string        // default: a random one per target
	AttemptTimeout  time.Duration // one POST or GET (default 30 s)
	Deadline        time.Duration // a request's acceptance, its retries included (default 1 min)
	// Async polls GET /v1/executions/{id} (every PollEvery, default 200 ms; on the next URL
	// when one does not answer) after a 202, until the execution is final or Wait (default
	// 5 min) has passed: the outcome is then its final status. The body must ask for async.
	Async     bool
	PollEvery time.Duration
	Wait      time.Duration
	// Record, when set, is called once for every accepted execution (200 or 202), as soon as
	// it is accepted.
	Record func(Accepted)
}

// Accepted is an execution a gateway accepted: what `wasmwiz load --record` writes, one JSON
// object a line.
type Accepted struct {
	ID             string    `json:"id"`
	IdempotencyKey string    `json:"idempotency_key,omitempty"`
	HTTPStatus     int       `json:"http_status"` // 200 (answered) or 202 (queued or still running)
	Status         string    `json:"status"`      // the execution's status in that answer
	Attempts       int       `json:"attempts"`    // POSTs it took, the accepted one included
	URL            string    `json:"url"`         // the gateway that accepted it
	SentAt         time.Time `json:"sent_at"`     // the first attempt
	AcceptedAt     time.Time `json:"accepted_at"`
}

// RESTTarget reaches WasmWiz over its REST API.
type RESTTarget struct {
	opts RESTOptions
	auth string
	hc   *http.Client
	next atomic.Uint64 // round robin over URLs, and the key counter
	seq  atomic.Uint64

	mu      sync.Mutex
	retried map[string]int64 // failed attempts that were retried, by what failed
}

// NewRESTTarget keeps up to concurrency+16 idle connections to base.
func NewRESTTarget(base, key string, concurrency int) *RESTTarget {
	return NewRESTTargetWith(key, concurrency, RESTOptions{URLs: []string{base}})
}

// NewRESTTargetWith is NewRESTTarget with opts (one or more gateways, keys and retries, async).
func NewRESTTargetWith(key string, concurrency int, opts RESTOptions) *RESTTarget {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = (concurrency + 16) * len(opts.URLs)
	tr.MaxIdleConnsPerHost = concurrency + 16
	for i, u := range opts.URLs {
		opts.URLs[i] = strings.TrimRight(u, "/")
	}
	if opts.KeyPrefix == "" {
		opts.KeyPrefix = "load-" + strings.ToLower(nuid.Next()[:12])
	}
	if opts.AttemptTimeout <= 0 {
		opts.AttemptTimeout = 30 * time.Second
	}
	if opts.Deadline <= 0 {
		opts.Deadline = time.Minute
	}
	if opts.PollEvery <= 0 {
		opts.PollEvery = 200 * time.Millisecond
	}
	if opts.Wait <= 0 {
		opts.Wait = 5 * time.Minute
	}
	timeout := 2 * time.Minute // a synchronous execution's answer waits for it to run
	if opts.IdempotencyKeys || opts.Async {
		timeout = opts.AttemptTimeout
	}
	return &RESTTarget{opts: opts, auth: "Bearer " + key, hc: &http.Client{Transport: tr, Timeout: timeout}, retried: map[string]int64{}}
}

// Retried counts the attempts that failed and were tried again, by what failed ("503",
// "error:transport", …): what clients saw and rode out.
func (t *RESTTarget) Retried() map[string]int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]int64, len(t.retried))
	for k, v := range t.retried {
		out[k] = v
	}
	return out
}

func (t *RESTTarget) Upload(ctx context.Context, name string, wasm []byte) (string, error) {
	var last error
	for _, base := range t.opts.URLs {
		id, err := t.upload(ctx, base, name, wasm)
		if err == nil {
			return id, nil
		}
		last = err
	}
	return "", last
}

func (t *RESTTarget) upload(ctx context.Context, base, name string, wasm []byte) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/modules?name="+url.QueryEscape(name), bytes.NewReader(wasm))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", t.auth)
	req.Header.Set("Content-Type", "application/wasm")
	resp, err := t.hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", resp.Status, b)
	}
	var m schemas.Module
	if err := json.Unmarshal(b, &m); err != nil {
		return "", err
	}
	return m.ID, nil
}

// Execute sends one execution request (and, keyed, its retries), then with Async polls it to
// its end. The outcome is the final answer's: "200" for a succeeded execution.
func (t *RESTTarget) Execute(ctx context.Context, body []byte) string {
	urls := t.opts.URLs
	first := int(t.next.Add(1)-1) % len(urls)
	var key string
	if t.opts.IdempotencyKeys {
		key = fmt.Sprintf("%s-%d", t.opts.KeyPrefix, t.seq.Add(1))
	}
	sent := time.Now()
	until := sent.Add(t.opts.Deadline)
	bo := backoff.Backoff{Min: 50 * time.Millisecond, Max: time.Second, Jitter: true}
	for attempt := 0; ; attempt++ {
		base := urls[(first+attempt)%len(urls)]
		status, b, outcome := t.post(ctx, base, body, key)
		if status == http.StatusOK || status == http.StatusAccepted {
			var e executionStatus
			if err := json.Unmarshal(b, &e); err != nil || e.ID == "" {
				return "error:decode"
			}
			if t.opts.Record != nil {
				t.opts.Record(Accepted{ID: e.ID, IdempotencyKey: key, HTTPStatus: status, Status: string(e.Status),
					Attempts: attempt + 1, URL: base, SentAt: sent, AcceptedAt: time.Now()})
			}
			switch {
			case status == http.StatusAccepted && !t.opts.Async:
				return strconv.Itoa(status) // a synchronous request whose wait ran out
			case status == http.StatusOK || e.Status.Final():
				return statusOutcome(e.Status)
			}
			return t.poll(ctx, (first+attempt)%len(urls), e.ID)
		}
		if key == "" || !retryable(status, outcome) || ctx.Err() != nil || time.Now().After(until) {
			return outcome
		}
		t.mu.Lock()
		t.retried[outcome]++
		t.mu.Unlock()
		// The next gateway at once; a round of them all failed: wait before the next round.
		if (attempt+1)%len(urls) == 0 && !backoff.Sleep(ctx, min(bo.Next(), time.Until(until))) {
			return "error:canceled"
		}
	}
}

// post is one POST /v1/executions: the status (0 without an answer), the body, the outcome.
func (t *RESTTarget) post(ctx context.Context, base string, body []byte, key string) (int, []byte, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/executions", bytes.NewReader(body))
	if err != nil {
		return 0, nil, "error:request"
	}
	req.Header.Set("Authorization", t.auth)
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	return t.do(ctx, req)
}

func (t *RESTTarget) do(ctx context.Context, req *http.Request) (int, []byte, string) {
	resp, err := t.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, nil, "error:canceled"
		}
		if ue := (*url.Error)(nil); errors.As(err, &ue) && ue.Timeout() {
			return 0, nil, "error:timeout"
		}
		return 0, nil, "error:transport"
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, nil, "error:read"
	}
	// A 200's outcome depends on the execution's status: the caller decodes the body once.
	return resp.StatusCode, b, strconv.Itoa(resp.StatusCode)
}

// executionStatus is what the load generator reads of an execution: the whole of it was decoded
// twice per request (its status, then the execution), ~16 µs per execution of the bench
// process's CPU that rest paid and bare, whose client reads no body, did not.
type executionStatus struct {
	ID     string         `json:"id"`
	Status schemas.Status `json:"status"`
}

// retryable: no answer, or an answer that says "not now" rather than "no".
func retryable(status int, outcome string) bool {
	switch status {
	case 0:
		return outcome != "error:canceled" && outcome != "error:request"
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// poll reads an accepted execution until it is final, moving to the next gateway when one
// does not answer.
func (t *RESTTarget) poll(ctx context.Context, at int, id string) string {
	urls := t.opts.URLs
	until := time.Now().Add(t.opts.Wait)
	for {
		if !backoff.Sleep(ctx, t.opts.PollEvery) {
			return "error:canceled"
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, urls[at]+"/v1/executions/"+id, nil)
		if err != nil {
			return "error:request"
		}
		req.Header.Set("Authorization", t.auth)
		status, b, outcome := t.do(ctx, req)
		switch {
		case status == http.StatusOK:
			var e executionStatus
			if err := json.Unmarshal(b, &e); err != nil {
				return "error:decode"
			}
			if e.Status.Final() {
				return statusOutcome(e.Status)
			}
		case !retryable(status, outcome):
			return outcome
		default:
			at = (at + 1) % len(urls)
		}
		if time.Now().After(until) {
			return "error:unfinished"
		}
	}
}

func statusOutcome(s schemas.Status) string {
	if s == schemas.StatusSucceeded {
		return OutcomeOK
	}
	return OutcomeOK + ":" + string(s)
}
