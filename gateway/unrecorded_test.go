package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmwiz/wasmwiz/internal/natstest"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// An async execution answered 202 can be looked up. When the queue takes it but the results
// bucket cannot record it (no quorum for that bucket, the fault suite's quorum fault), a 202
// was answered anyway and the client's polls got 404 for an execution it had been told was
// accepted. The answer is now a 503 that names the execution and says it will run; sent again
// with the same Idempotency-Key once the bucket is back, the request answers that execution.
func TestExecute_QueuedButUnrecordedIsNotA202(t *testing.T) {
	s := startAPISuite(t)
	mod := s.uploadModule(t, s.key, "hello")
	ctx := context.Background()
	js := natstest.JetStream(t, s.srv)
	results, err := js.KeyValue(ctx, schemas.BucketResults)
	if err != nil {
		t.Fatal(err)
	}
	cfg := results.(interface {
		Status(context.Context) (jetstream.KeyValueStatus, error)
	})
	st, err := cfg.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteKeyValue(ctx, schemas.BucketResults); err != nil {
		t.Fatal(err)
	}
	body := `{"module_id":"` + mod + `","async":true}`
	id := newExecutionID("acme", "unrecorded-1")
	resp, b := s.doBody(t, http.MethodPost, "/v1/executions", "Bearer "+s.key, body, "Content-Type", "application/json", "Idempotency-Key", "unrecorded-1")
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" ||
		!strings.Contains(string(b), id) || !strings.Contains(string(b), "will run") {
		t.Fatalf("async execution the results bucket cannot record: %d Retry-After %q %s, want a 503 with Retry-After naming %s as queued",
			resp.StatusCode, resp.Header.Get("Retry-After"), b, id)
	}
	var problem struct {
		Code        schemas.Code `json:"code"`
		ExecutionID string       `json:"execution_id"`
	}
	if err := json.Unmarshal(b, &problem); err != nil || problem.Code != schemas.CodeUnavailable || problem.ExecutionID != id {
		t.Errorf("503 body %s: want code %q and execution_id %q for a client to look it up without parsing the detail (%v)", b, schemas.CodeUnavailable, id, err)
	}

	// The bucket back: the same request again answers the same execution.
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: schemas.BucketResults, History: 1, TTL: st.TTL()}); err != nil {
		t.Fatal(err)
	}
	var got string
	natstest.CheckFor(t, 30*time.Second, poll, func() error {
		resp, b := s.doBody(t, http.MethodPost, "/v1/executions", "Bearer "+s.key, body, "Content-Type", "application/json", "Idempotency-Key", "unrecorded-1")
		if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusAccepted {
			return &schemas.Error{Code: schemas.CodeInternal, Message: resp.Status + " " + string(b)}
		}
		got = string(b)
		return nil
	})
	if !strings.Contains(got, id) {
		t.Errorf("sent again: %s, want execution %s", got, id)
	}
	s.mu.Lock()
	runs := s.runs[id]
	s.mu.Unlock()
	if runs > 1 {
		t.Errorf("%s ran %d times", id, runs)
	}
}

// The steps of one execution request ride out a stream without a leader each for up to 10 s;
// in turn, they kept a client waiting for longer than that (more than 15 s while two NATS
// servers of three were down). They share one budget now: here the queue comes back after 5 s
// and the results bucket never does, which took 15 s (5 s publishing, then 10 s for the queued
// record) before the budget.
func TestExecute_RideOutsShareOneBudget(t *testing.T) {
	s := startAPISuite(t)
	mod := s.uploadModule(t, s.key, "hello")
	ctx := context.Background()
	js := natstest.JetStream(t, s.srv)
	name := schemas.ExecStream(schemas.TierBasic)
	st, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	if err := js.DeleteStream(ctx, name); err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteKeyValue(ctx, schemas.BucketResults); err != nil {
		t.Fatal(err)
	}
	back := make(chan error, 1)
	go func() {
		time.Sleep(5 * time.Second)
		_, err := js.CreateStream(ctx, cfg)
		back <- err
	}()
	start := time.Now()
	resp, b := s.doBody(t, http.MethodPost, "/v1/executions", "Bearer "+s.key, `{"module_id":"`+mod+`","async":true}`, "Content-Type", "application/json")
	took := time.Since(start)
	if err := <-back; err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(b), "will run") {
		t.Errorf("queue back after 5 s, results bucket never: %d %s, want a 503 saying the execution will run", resp.StatusCode, b)
	}
	if budget := storeRetryFor + 2*time.Second; took > budget {
		t.Errorf("answered after %v, want within the request's ride-out budget and a last try (%v)", took.Round(time.Millisecond), budget)
	}
}
