package test

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/wasmwiz/wasmwiz/internal/fixtures"
	"github.com/wasmwiz/wasmwiz/internal/natstest"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// otlpReceiver is a minimal OTLP/HTTP trace endpoint: it keeps the spans it is sent.
type otlpReceiver struct {
	mu    sync.Mutex
	spans map[string][]string // trace id (hex) -> "service/span name"
}

func (o *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var req coltrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		service := ""
		for _, a := range rs.GetResource().GetAttributes() {
			if a.Key == "service.name" {
				service = a.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				id := hex.EncodeToString(s.TraceId)
				o.spans[id] = append(o.spans[id], service+"/"+s.Name)
			}
		}
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(nil)
}

func (o *otlpReceiver) trace(id string) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.spans[id]...)
}

// With OTEL_EXPORTER_OTLP_ENDPOINT set, an execution's spans reach the collector under the
// caller's trace id (W3C traceparent continued), and X-Request-Id is echoed.
func TestDev_Tracing(t *testing.T) {
	recv := &otlpReceiver{spans: map[string][]string{}}
	collector := httptest.NewServer(recv)
	defer collector.Close()
	s := startDevEnv(t, t.TempDir(), "OTEL_EXPORTER_OTLP_ENDPOINT="+collector.URL, "OTEL_BSP_SCHEDULE_DELAY=100")
	m := s.upload(t, s.DevKey, "hello", fixtures.Wasm("hello"))
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	body, _ := json.Marshal(schemas.ExecutionRequest{ModuleID: m.ID})
	r := s.do(t, http.MethodPost, "/v1/executions", s.DevKey, "application/json", body,
		"traceparent", "00-"+traceID+"-00f067aa0ba902b7-01", "X-Request-Id", "req-trace-test")
	if r.Status != 200 {
		t.Fatalf("execute: %d %s", r.Status, r.Body)
	}
	if got := r.Header.Get("X-Request-Id"); got != "req-trace-test" {
		t.Errorf("X-Request-Id %q", got)
	}
	want := map[string]bool{"wasmwiz-dev/create-execution": false, "wasmwiz-dev/execute": false}
	natstest.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		for _, sp := range recv.trace(traceID) {
			if _, ok := want[sp]; ok {
				want[sp] = true
			}
		}
		if !want["wasmwiz-dev/create-execution"] || !want["wasmwiz-dev/execute"] {
			return fmt.Errorf("spans of trace %s: %v; want %v", traceID, recv.trace(traceID), want)
		}
		return nil
	})
}
