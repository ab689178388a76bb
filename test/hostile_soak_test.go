//go:build soak

package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/internal/fixtures"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// TestSoak_HostileNeighbour is the mixed soak of issue 3: a benign tenant (tier pro) runs a
// small module at a steady open-loop rate, first alone, then while a hostile tenant (tier
// basic: 5 in flight, 100 a minute) fires hostile modules at its full rate (infinite loops and
// loop-free call trees at the tier's full 10 s wall time, output floods, memory grown to the
// cap, runtime table growth that crashes its worker). It reports the benign tenant's latency
// (p50/p99/max) and errors in both phases, the hostile outcomes, and the dev process's memory.
//
// Benign errors must be 0, the benign p99 under 2 s, and no benign execution may wait as long
// as one hostile execution (the basic tier's wall time). Before the scheduler kept the last free
// slot for an active higher tier, the hostile tenant took back every slot that freed (it was
// owed one dispatch in four, and pro's take a millisecond) and held all four workers: benign
// p50 was 3.4 s and the benign tenant ran into its own in-flight cap (429s).
//
//	go test -tags soak -run TestSoak_HostileNeighbour -v ./test   ($WASMWIZ_SOAK_PHASE, default 60s per phase)
func TestSoak_HostileNeighbour(t *testing.T) {
	phase := 60 * time.Second
	if v := os.Getenv("WASMWIZ_SOAK_PHASE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 5*time.Second {
			t.Fatalf("WASMWIZ_SOAK_PHASE=%q: want a duration ≥ 5s", v)
		}
		phase = d
	}
	const workers, benignEvery = 4, 200 * time.Millisecond
	s := startDevEnv(t, t.TempDir(), "WASMWIZ_WORKERS="+strconv.Itoa(workers), "WASMWIZ_SYNC_WAIT=60s")
	pid := s.procs[0].cmd.Process.Pid
	benignKey := s.DevKey // tier pro
	hostileKey := s.newTenant(t, "hostile", schemas.TierBasic)
	basic := schemas.DefaultTiers()[schemas.TierBasic]

	hello := s.upload(t, benignKey, "hello", fixtures.Wasm("hello"))
	type hostileMod struct {
		name string
		req  schemas.ExecutionRequest
	}
	var hostile []hostileMod
	for _, h := range []struct {
		fixture string
		req     schemas.ExecutionRequest
	}{
		{"loop", schemas.ExecutionRequest{}},     // the tier's full wall time, then timed out
		{"expcalls", schemas.ExecutionRequest{}}, // the full wall time, then killed with its worker
		{"stdoutflood", schemas.ExecutionRequest{}},
		{"stderrflood", schemas.ExecutionRequest{}},
		{"memgrow", schemas.ExecutionRequest{}}, // to the tier's 256 MiB
		{"tablegrow", schemas.ExecutionRequest{}},
	} {
		m := s.upload(t, hostileKey, h.fixture, fixtures.Wasm(h.fixture))
		h.req.ModuleID = m.ID
		hostile = append(hostile, hostileMod{h.fixture, h.req})
	}
	for range workers * 2 { // warm every worker
		if e := s.run(t, benignKey, schemas.ExecutionRequest{ModuleID: hello.ID}); e.Status != schemas.StatusSucceeded {
			t.Fatalf("warm-up: %+v", e)
		}
	}
	memBefore := procMem(t, pid)

	client := &http.Client{Timeout: 2 * time.Minute}
	post := func(key string, req schemas.ExecutionRequest) (int, *schemas.Execution, error) {
		body, _ := json.Marshal(req)
		hr, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, s.URL+"/v1/executions", bytes.NewReader(body))
		hr.Header.Set("Authorization", "Bearer "+key)
		hr.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(hr)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var e schemas.Execution
		if resp.StatusCode == 200 {
			if err := json.Unmarshal(b, &e); err != nil {
				return resp.StatusCode, nil, err
			}
		}
		return resp.StatusCode, &e, nil
	}

	type benignStats struct {
		lat  []time.Duration
		errs []string
	}
	// runBenign fires one hello every benignEvery for d, each on its own goroutine (open loop:
	// a slow answer does not delay the next request), and waits for every answer.
	runBenign := func(d time.Duration) benignStats {
		var (
			mu sync.Mutex
			st benignStats
			wg sync.WaitGroup
		)
		tick := time.NewTicker(benignEvery)
		defer tick.Stop()
		end := time.After(d)
		for {
			select {
			case <-end:
				wg.Wait()
				return st
			case <-tick.C:
				wg.Go(func() {
					start := time.Now()
					code, e, err := post(benignKey, schemas.ExecutionRequest{ModuleID: hello.ID})
					lat := time.Since(start)
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err != nil:
						st.errs = append(st.errs, err.Error())
					case code != 200 || e.Status != schemas.StatusSucceeded || e.Stdout != "hello, world\n":
						st.errs = append(st.errs, fmt.Sprintf("%d %s %q", code, e.Status, e.Error))
					default:
						st.lat = append(st.lat, lat)
					}
				})
			}
		}
	}

	// Phase 1: benign alone.
	alone := runBenign(phase)

	// Phase 2: benign with the hostile tenant at its full rate: as many clients as its in-flight
	// cap, each sending the next hostile module as soon as the previous answer (or a 429) came,
	// paced to at most 10 attempts a second per client after a refusal.
	var (
		hmu      sync.Mutex
		outcomes = map[string]int{}
		stop     atomic.Bool
		hwg      sync.WaitGroup
		next     atomic.Int64
	)
	for range basic.InFlight {
		hwg.Go(func() {
			for !stop.Load() {
				h := hostile[int(next.Add(1)-1)%len(hostile)]
				code, e, err := post(hostileKey, h.req)
				key := h.name + " → "
				switch {
				case err != nil:
					key += "error: " + err.Error()
				case code == 200:
					key += string(e.Status)
					if e.Error != "" {
						key += " (" + e.Error + ")"
					}
				default:
					key += strconv.Itoa(code)
				}
				hmu.Lock()
				outcomes[key]++
				hmu.Unlock()
				if code != 200 {
					select {
					case <-time.After(100 * time.Millisecond):
					case <-t.Context().Done():
						return
					}
				}
			}
		})
	}
	withHostile := runBenign(phase)
	stop.Store(true)
	hwg.Wait()
	memAfter := procMem(t, pid)

	if !s.procs[0].alive() {
		t.Fatal("the dev process died")
	}
	if e := s.run(t, benignKey, schemas.ExecutionRequest{ModuleID: hello.ID}); e.Status != schemas.StatusSucceeded {
		t.Errorf("hello after the soak: %+v", e)
	}
	report := func(name string, st benignStats) string {
		if len(st.lat) == 0 {
			return fmt.Sprintf("%s: no successful executions, %d errors", name, len(st.errs))
		}
		slices.Sort(st.lat)
		q := func(p float64) time.Duration { return st.lat[min(len(st.lat)-1, int(p*float64(len(st.lat))))] }
		return fmt.Sprintf("%-26s %4d ok, %d errors; p50 %v, p99 %v, max %v", name+":", len(st.lat), len(st.errs),
			q(0.50).Round(100*time.Microsecond), q(0.99).Round(100*time.Microsecond), st.lat[len(st.lat)-1].Round(time.Millisecond))
	}
	var keys []string
	for k := range outcomes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var ob bytes.Buffer
	for _, k := range keys {
		fmt.Fprintf(&ob, "  %5d  %s\n", outcomes[k], k)
	}
	metrics := string(s.do(t, http.MethodGet, "/metrics", "", "", nil).Body)
	t.Logf("\nmixed soak, %v per phase, %d workers, benign hello every %v from tenant dev (pro), hostile tenant on basic (%d in flight, %d/min):\n%s\n%s\nhostile requests and outcomes:\n%sworker restarts: %s\ndev process: VmRSS %.0f → %.0f MiB, VmHWM %.0f → %.0f MiB (peak)",
		phase, workers, benignEvery, basic.InFlight, basic.ExecPerMinute,
		report("benign alone", alone), report("benign + hostile", withHostile), ob.String(),
		metricSum(metrics, "wasmwiz_worker_restarts_total"), mib(memBefore.rss), mib(memAfter.rss), mib(memBefore.hwm), mib(memAfter.hwm))

	for _, st := range []benignStats{alone, withHostile} {
		if len(st.errs) > 0 {
			t.Errorf("%d benign executions failed, e.g. %s", len(st.errs), st.errs[0])
		}
	}
	if len(withHostile.lat) > 0 {
		if worst := slices.Max(withHostile.lat); worst > basic.WallTime+500*time.Millisecond {
			t.Errorf("a benign execution took %v beside the hostile tenant: more than one hostile execution (%v + grace)", worst, basic.WallTime)
		}
		lat := slices.Sorted(slices.Values(withHostile.lat))
		if p99 := lat[min(len(lat)-1, len(lat)*99/100)]; p99 > 2*time.Second {
			t.Errorf("benign p99 %v beside the hostile tenant: it is holding the workers", p99)
		}
	}
	if len(outcomes) == 0 {
		t.Error("the hostile tenant sent nothing")
	}
	if grow := memAfter.hwm - memBefore.hwm; grow > 256<<20 {
		t.Errorf("the dev process's peak RSS grew by %.0f MiB during the soak", mib(grow))
	}
}
