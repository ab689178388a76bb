//go:build faults

package test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// The faults a single process's death does not make: no quorum (two of the three NATS servers
// killed at once) and partitions (a server's routes to the others, a gateway's connections to
// NATS, dropped by relays that stop forwarding without closing anything). During each, a prober
// sends an async execution every 200 ms to each gateway in turn, with an Idempotency-Key and a
// 15 s deadline of its own, and records every answer: what it may be is a 202, or a 503 with
// Retry-After; a 500, a 503 without Retry-After or no answer within the deadline is a failure.
// After the fault, every probe refused with a 503 must not have run (a refusal is not an
// acceptance), and every probe that got no answer, or a 503 that names its execution (the queue
// neither took nor refused it in time, or took it and it could not be recorded), is sent again
// with its key: what is then accepted counts as accepted, like the load's executions.

// probeDeadline is the prober's client deadline: an answer must come within it.
const probeDeadline = 15 * time.Second

type probeResult struct {
	key, gateway string
	sent         time.Time
	latency      time.Duration
	kind         string // "accepted", "503", "503 without Retry-After", "no answer in 15 s", "transport", or a status
	id           string // of an accepted probe
}

type prober struct {
	c      *faultCluster
	name   string
	hc     *http.Client
	stop   chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	result []*probeResult
}

func (c *faultCluster) startProber(t *testing.T, name string) *prober {
	t.Helper()
	p := &prober{c: c, name: name, hc: &http.Client{Timeout: probeDeadline}, stop: make(chan struct{})}
	p.wg.Go(func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			gw := c.gateways[n%len(c.gateways)].opsURL
			key := fmt.Sprintf("probe-%s-%d", name, n)
			p.wg.Go(func() { p.send(gw, key) })
		}
	})
	return p
}

func (p *prober) body() []byte {
	b, _ := json.Marshal(schemas.ExecutionRequest{ModuleID: p.c.hello, TimeoutMS: 10000, Async: true})
	return b
}

// post sends the probe key's request once to gw.
func (p *prober) post(gw, key string) (int, http.Header, []byte, error) {
	req, err := http.NewRequest(http.MethodPost, gw+"/v1/executions", bytes.NewReader(p.body()))
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+p.c.key)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := p.hc.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, resp.Header, b.Bytes(), nil
}

func (p *prober) send(gw, key string) {
	r := &probeResult{key: key, gateway: gw, sent: time.Now()}
	status, h, b, err := p.post(gw, key)
	r.latency = time.Since(r.sent)
	var ue *url.Error
	switch {
	case err != nil && errors.As(err, &ue) && ue.Timeout():
		r.kind = "no answer in 15 s"
	case err != nil:
		r.kind = "transport"
	case status == http.StatusAccepted || status == http.StatusOK:
		var e schemas.Execution
		if json.Unmarshal(b, &e) == nil && e.ID != "" {
			r.kind, r.id = "accepted", e.ID
		} else {
			r.kind = fmt.Sprintf("%d undecodable", status)
		}
	case status == http.StatusServiceUnavailable && h.Get("Retry-After") != "" && bytes.Contains(b, []byte(probeExecutionID(key))):
		r.kind = "503 naming its execution" // it may run: not a refusal, resolved below like an unanswered probe
	case status == http.StatusServiceUnavailable && h.Get("Retry-After") != "":
		r.kind = "503"
	case status == http.StatusServiceUnavailable:
		r.kind = "503 without Retry-After"
	default:
		r.kind = fmt.Sprint(status)
	}
	p.mu.Lock()
	p.result = append(p.result, r)
	p.mu.Unlock()
}

// probeExecutionID is the id the gateway gives the probe key's execution (gateway
// newExecutionID): SHA-256 of tenant and key, so a refused probe's execution can be looked for.
func probeExecutionID(key string) string {
	sum := sha256.Sum256([]byte(faultsTenant + "\x00" + key))
	return "ex_" + base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding).EncodeToString(sum[:16])
}

// probeSummary is what the prober saw, once stopped and its unanswered probes resolved.
type probeSummary struct {
	kinds      map[string]int
	maxLatency time.Duration
	first503   time.Time
	last503    time.Time
	accepted   []string // ids, the resolved ones included
	refused    []string // ids of probes answered 503 (or another refusal): they must not run
	bad        []string // failures: a 500, a 503 without Retry-After, no answer, a wrong id
}

// finish stops the prober and sends each probe that got no answer again with its key, until it
// is answered (what a client with an Idempotency-Key does).
func (p *prober) finish(t *testing.T) *probeSummary {
	t.Helper()
	close(p.stop)
	p.wg.Wait()
	s := &probeSummary{kinds: map[string]int{}}
	for _, r := range p.result {
		s.kinds[r.kind]++
		s.maxLatency = max(s.maxLatency, r.latency)
		switch r.kind {
		case "accepted":
			if want := probeExecutionID(r.key); r.id != want {
				s.bad = append(s.bad, fmt.Sprintf("%s: id %s, want %s", r.key, r.id, want))
			}
			s.accepted = append(s.accepted, r.id)
		case "503":
			if s.first503.IsZero() || r.sent.Before(s.first503) {
				s.first503 = r.sent
			}
			if r.sent.After(s.last503) {
				s.last503 = r.sent
			}
			s.refused = append(s.refused, probeExecutionID(r.key))
		case "no answer in 15 s", "transport", "503 naming its execution":
			if r.kind == "no answer in 15 s" {
				s.bad = append(s.bad, fmt.Sprintf("%s to %s: no answer in %v", r.key, r.gateway, probeDeadline))
			}
			// Its fate is unknown to the client: it asks again with the same key.
			var id string
			eventually(t, time.Minute, "an unanswered probe is not answered when sent again", func() bool {
				status, _, b, err := p.post(p.c.gateways[1].opsURL, r.key)
				var e schemas.Execution
				if err == nil && (status == http.StatusAccepted || status == http.StatusOK) && json.Unmarshal(b, &e) == nil {
					id = e.ID
				}
				return id != ""
			})
			s.accepted = append(s.accepted, id)
		default:
			s.bad = append(s.bad, fmt.Sprintf("%s to %s: %s after %v", r.key, r.gateway, r.kind, r.latency.Round(time.Millisecond)))
			if strings.HasPrefix(r.kind, "503") {
				s.refused = append(s.refused, probeExecutionID(r.key))
			}
		}
	}
	return s
}

func (s *probeSummary) String() string {
	var parts []string
	for k, v := range s.kinds {
		if k != "accepted" {
			parts = append(parts, fmt.Sprintf("%s×%d", k, v))
		}
	}
	slices.Sort(parts)
	if len(parts) == 0 {
		parts = []string{"none"}
	}
	return fmt.Sprintf("probe: %d accepted, refused %s, slowest answer %.1f s", s.kinds["accepted"], strings.Join(parts, " "), s.maxLatency.Seconds())
}

// refusedRan reports the probes that were refused yet ran: found by their id once everything
// settled (the check before waited for every accepted execution to be final).
func (c *faultCluster) refusedRan(t *testing.T, refused []string) []string {
	t.Helper()
	var ran []string
	for _, id := range refused {
		r := c.sys.do(t, http.MethodGet, "/v1/executions/"+id, c.key, "", nil)
		if r.Status != http.StatusNotFound {
			ran = append(ran, fmt.Sprintf("%s: %d %s", id, r.Status, r.Body))
		}
	}
	return ran
}

// partitionNode drops every route between node v and the others, both ways.
func (c *faultCluster) partitionNode(v int, cut bool) {
	for i := range c.nodes {
		for _, r := range []*tcpRelay{c.routeRelays[i][v], c.routeRelays[v][i]} {
			if r == nil {
				continue
			}
			if cut {
				r.blackhole()
			} else {
				r.heal()
			}
		}
	}
}

func (c *faultCluster) nodeIndex(n *natsNode) int { return slices.Index(c.nodes, n) }

// waitServed waits until both gateways accept an execution again: the ids they gave.
func (c *faultCluster) waitServed(t *testing.T) []string {
	t.Helper()
	var ids []string
	b, _ := json.Marshal(schemas.ExecutionRequest{ModuleID: c.hello, TimeoutMS: 10000, Async: true})
	for _, g := range c.gateways {
		eventually(t, 2*time.Minute, "a gateway does not accept executions after the fault", func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, g.opsURL+"/v1/executions", bytes.NewReader(b))
			req.Header.Set("Authorization", "Bearer "+c.key)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			var e schemas.Execution
			if resp.StatusCode != http.StatusAccepted || json.NewDecoder(resp.Body).Decode(&e) != nil {
				return false
			}
			ids = append(ids, e.ID)
			return true
		})
	}
	return ids
}
