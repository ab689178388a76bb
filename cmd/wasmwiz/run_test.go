package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestRun_CutOutputIsSaid: a guest's stdout or stderr cut at the tier's stdout_max is printed as
// it came back, and the CLI says on stderr that it was cut, as it does for output files. zstd
// -dc of a 2.8 MB file piped to a file on pro left 1 MiB, exit code 0 and not a word.
func TestRun_CutOutputIsSaid(t *testing.T) {
	for _, tc := range []struct {
		name            string
		execution       map[string]any
		stdout, warning string
	}{
		{"stdout", map[string]any{"stdout": "abc", "stdout_truncated": true, "stderr": "e\n"}, "abc", "wasmwiz run: stdout was cut at the tier's stdout_max: only its first 3 bytes came back (write larger output to a file and --output it)\n"},
		{"stderr", map[string]any{"stdout": "abc", "stderr": "0123456789", "stderr_truncated": true}, "abc", "wasmwiz run: stderr was cut at the tier's stdout_max: only its first 10 bytes came back (write larger output to a file and --output it)\n"},
		{"quota", map[string]any{"stdout": "abc", "stdout_truncated": true, "storage_quota_exceeded": true}, "abc", "wasmwiz run: stdout was cut to fit the tier's result_bytes, which your stored results filled: only its first 3 bytes came back (write larger output to a file and --output it)\n"},
		{"whole", map[string]any{"stdout": "abc", "stderr": "e\n"}, "abc", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodPost || r.URL.Path != "/v1/executions" {
					http.NotFound(w, r)
					return
				}
				ex := map[string]any{"id": "ex_1", "status": "succeeded", "exit_code": 0, "module_id": "sha256:" + strings.Repeat("0", 64),
					"duration_ms": 1, "memory_peak_bytes": 1, "created_at": "2026-01-01T00:00:00Z", "stdout_truncated": false, "stderr_truncated": false}
				for k, v := range tc.execution {
					ex[k] = v
				}
				w.Header().Set("Content-Type", "application/json")
				_ = json.NewEncoder(w).Encode(ex)
			}))
			defer srv.Close()
			getenv := func(k string) string {
				if k == "WASMWIZ_CONFIG_DIR" {
					return t.TempDir()
				}
				return ""
			}
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), []string{"run", "--url", srv.URL, "--key", "ww_test", "sha256:" + strings.Repeat("0", 64)}, getenv, &stdout, &stderr)
			if code != 0 || stdout.String() != tc.stdout {
				t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
			}
			errOut := stderr.String()
			if tc.warning == "" {
				if strings.Contains(errOut, "was cut") {
					t.Errorf("stderr %q says cut", errOut)
				}
				return
			}
			if !strings.HasSuffix(errOut, tc.warning) {
				t.Errorf("stderr %q, want it to end in %q", errOut, tc.warning)
			}
		})
	}
}
