package wasmwiz_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	wasmwiz "github.com/wasmwiz/wasmwiz/clients/go"
)

// A refusal comes back as an *Error with the server's code, detail and Retry-After; the key
// travels as a bearer token; a body that is not problem+json still gives the status.
func TestCheckResponse(t *testing.T) {
	var auth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth = r.Header.Get("Authorization")
		switch r.URL.Path {
		case "/v1/executions/ex_busy":
			w.Header().Set("Content-Type", "application/problem+json")
			w.Header().Set("Retry-After", "3")
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = w.Write([]byte(`{"title":"Too Many Requests","status":429,"code":"rate_limited","detail":"10 executions a minute"}`))
		case "/v1/executions/ex_proxy":
			w.WriteHeader(http.StatusBadGateway)
			_, _ = w.Write([]byte("<html>bad gateway</html>"))
		default:
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"id":"ex_ok","status":"succeeded","module_id":"sha256:00","stdout":"hi","stderr":"","stdout_truncated":false,"stderr_truncated":false,"duration_ms":1,"memory_peak_bytes":65536,"created_at":"2026-01-01T00:00:00Z","exit_code":0}`))
		}
	}))
	defer srv.Close()
	c, err := wasmwiz.NewClientWithResponses(srv.URL, wasmwiz.WithAPIKey("wwk_test"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	r, err := c.GetExecutionWithResponse(ctx, "ex_ok")
	if err != nil || wasmwiz.CheckResponse(r.HTTPResponse, r.Body) != nil {
		t.Fatalf("get: %v %v", err, wasmwiz.CheckResponse(r.HTTPResponse, r.Body))
	}
	if auth != "Bearer wwk_test" {
		t.Errorf("Authorization %q", auth)
	}
	if ex := r.JSON200; ex == nil || ex.ID != "ex_ok" || !ex.Status.Final() || ex.ExitCode == nil || *ex.ExitCode != 0 {
		t.Errorf("execution %+v", r.JSON200)
	}

	r, err = c.GetExecutionWithResponse(ctx, "ex_busy")
	if err != nil {
		t.Fatal(err)
	}
	var e *wasmwiz.Error
	if err := wasmwiz.CheckResponse(r.HTTPResponse, r.Body); !errors.As(err, &e) || e.Code != "rate_limited" || e.Status != 429 || e.RetryAfter != 3*time.Second ||
		err.Error() != "429 rate_limited: 10 executions a minute" {
		t.Errorf("429: %v %+v", err, e)
	}

	r, err = c.GetExecutionWithResponse(ctx, "ex_proxy")
	if err != nil {
		t.Fatal(err)
	}
	if err := wasmwiz.CheckResponse(r.HTTPResponse, r.Body); !errors.As(err, &e) || e.Status != 502 || e.Code != "http_502" || e.RetryAfter != 0 {
		t.Errorf("502 without a problem body: %v %+v", err, e)
	}
}

func TestExecutionStatus_Final(t *testing.T) {
	for s, want := range map[wasmwiz.ExecutionStatus]bool{
		wasmwiz.ExecutionStatusQueued: false, wasmwiz.ExecutionStatusRunning: false,
		wasmwiz.ExecutionStatusSucceeded: true, wasmwiz.ExecutionStatusFailed: true,
		wasmwiz.ExecutionStatusTimedOut: true, wasmwiz.ExecutionStatusKilled: true,
	} {
		if s.Final() != want {
			t.Errorf("%s.Final() = %v", s, !want)
		}
	}
}

// With WithProblemErrors a refusal is the call's error; a success is parsed as usual.
func TestWithProblemErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/modules/sha256:00" {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"id":"sha256:00","name":"m","size":8,"imports":null,"exports":["_start"],"tenant_id":"t","created_at":"2026-01-01T00:00:00Z"}`))
			return
		}
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"title":"Not Found","status":404,"code":"not_found","detail":"no such module"}`))
	}))
	defer srv.Close()
	c, err := wasmwiz.NewClientWithResponses(srv.URL, wasmwiz.WithProblemErrors(srv.Client()))
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.GetModuleWithResponse(context.Background(), "sha256:00")
	if err != nil || r.JSON200 == nil || r.JSON200.Name != "m" || len(r.JSON200.Exports) != 1 {
		t.Fatalf("get: %v %+v", err, r)
	}
	_, err = c.GetModuleWithResponse(context.Background(), "sha256:11")
	var e *wasmwiz.Error
	if !errors.As(err, &e) || e.Code != "not_found" || e.Status != 404 {
		t.Errorf("404: %v", err)
	}
}
