package test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
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

// TestLoadCommand_MakesUnlimitedKey runs `wasmwiz load` beside a dev system without --key: it
// makes itself a key on the unlimited tier, so 600 executions in a few seconds all succeed where
// the dev key's tier (pro: 500 a minute) would answer 429 past the 500th.
func TestLoadCommand_MakesUnlimitedKey(t *testing.T) {
	base := t.TempDir()
	s := startDev(t, filepath.Join(base, "wasmwiz-data"))
	echo, err := filepath.Abs("../internal/fixtures/wasm/echo.wasm")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin(), "load", "--url", s.URL, "--module", echo,
		"--stdin", "hi", "--requests", "600", "--concurrency", "16", "--json")
	cmd.Dir = base
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("wasmwiz load: %v\n%s\n%s", err, out, stderr.String())
	}
	var rep struct {
		Requests, Errors int64
		Outcomes         map[string]int64
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if rep.Requests != 600 || rep.Errors != 0 || rep.Outcomes["200"] != 600 {
		t.Errorf("report %+v, want 600 succeeded executions", rep)
	}
	if !strings.Contains(stderr.String(), "tenant wasmwiz-load on the unlimited tier") {
		t.Errorf("stderr %q does not say which tenant ran the load", stderr.String())
	}
}

// BenchmarkSystem_NATSPerExecution counts what one synchronous execution of the echo module
// costs the message path of a whole system (`wasmwiz bench`'s embedded NATS): messages clients
// sent the server and the server sent them, and stream writes, per execution, over REST and
// direct NATS at concurrency 1 and 16. The figures are counts, not times: they change only when
// the path does. go test ./test -run XXX -bench NATSPerExecution -benchtime 1x
func BenchmarkSystem_NATSPerExecution(b *testing.B) {
	for b.Loop() {
		cmd := exec.Command(bin(), "bench", "--json", "--modules", "echo", "--modes", "nats,rest", "--concurrency", "1,16", "--cell", "1s")
		cmd.Dir = b.TempDir()
		out, err := cmd.Output()
		if err != nil {
			b.Fatalf("wasmwiz bench: %v\n%s", err, out)
		}
		var res struct {
			Cells []struct {
				Mode        string
				Concurrency int
				NATS        *struct {
					In      float64 `json:"in_per_exec"`
					Out     float64 `json:"out_per_exec"`
					Writes  float64 `json:"stream_writes_per_exec"`
					Removes float64 `json:"stream_removes_per_exec"`
				}
			}
		}
		if err := json.Unmarshal(out, &res); err != nil {
			b.Fatalf("bench JSON: %v\n%s", err, out)
		}
		for _, c := range res.Cells {
			if c.NATS == nil {
				b.Fatalf("%s c=%d: no NATS counts", c.Mode, c.Concurrency)
			}
			unit := func(what string) string { return fmt.Sprintf("%s-%s-c%d/exec", what, c.Mode, c.Concurrency) }
			b.ReportMetric(c.NATS.In+c.NATS.Out, unit("msgs"))
			b.ReportMetric(c.NATS.Writes, unit("writes"))
			b.ReportMetric(c.NATS.Removes, unit("removes"))
		}
	}
}
