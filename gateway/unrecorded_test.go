package gateway

import (
	"context"
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
