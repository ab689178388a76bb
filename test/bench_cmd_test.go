package test

import (
	"encoding/json"
	"os/exec"
	"testing"
	"time"
)

// TestBenchCommand runs `wasmwiz bench --quick` on the echo module (every mode but the wazero
// CLI peer, which may need a download) and checks that every cell ran without errors.
func TestBenchCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("short: the bench takes ~15 s")
	}
	cmd := exec.Command(bin(), "bench", "--quick", "--json", "--modules", "echo", "--concurrency", "1,4",
		"--modes", "limit,bus,bare,nats,rest,peer-compile")
	cmd.Dir = t.TempDir()
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-done:
		case <-time.After(3 * time.Minute):
			_ = cmd.Process.Kill()
		}
	}()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("wasmwiz bench: %v\n%s", err, out)
	}
	var res struct {
		Cells []struct {
			Module, Mode string
			Concurrency  int
			Report       struct {
				Requests, Errors int64
			}
		}
		Ratios []struct{ Name string }
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("bench JSON: %v\n%s", err, out)
	}
	if len(res.Cells) != 12 {
		t.Fatalf("%d cells, want 6 modes × 2 concurrencies", len(res.Cells))
	}
	for _, c := range res.Cells {
		if c.Report.Requests == 0 || c.Report.Errors != 0 {
			t.Errorf("%s %s c=%d: %d requests, %d errors", c.Module, c.Mode, c.Concurrency, c.Report.Requests, c.Report.Errors)
		}
	}
	if len(res.Ratios) == 0 {
		t.Error("no ratios")
	}
}
