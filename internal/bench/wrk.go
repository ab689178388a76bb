package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// modeWrk is rest measured by wrk, an external load generator in a process of its own, to show
// whether the in-process generator holds the rest cells back.
const modeWrk = "rest-wrk"

// wrkScript makes every wrk request a POST /v1/executions with the same body and key.
func wrkScript(dir, key string, body []byte) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "wrk.method = \"POST\"\n")
	fmt.Fprintf(&b, "wrk.body = %s\n", luaString(string(body)))
	fmt.Fprintf(&b, "wrk.headers[\"Content-Type\"] = \"application/json\"\n")
	fmt.Fprintf(&b, "wrk.headers[\"Authorization\"] = %s\n", luaString("Bearer "+key))
	path := filepath.Join(dir, "wrk-execute.lua")
	return path, os.WriteFile(path, []byte(b.String()), 0o600)
}

// luaString quotes s as a Lua long-bracket string, which takes every byte as it is.
func luaString(s string) string {
	eq := ""
	for strings.Contains(s, "]"+eq+"]") {
		eq += "="
	}
	return "[" + eq + "[" + s + "]" + eq + "]"
}

// runWrk runs wrk with c connections for d against url (POST, by script) and reads its report.
// wrk counts every 2xx answer as a success: for the bench's guests, which all succeed, that is a
// succeeded execution.
func runWrk(ctx context.Context, wrk, script, url string, c int, d time.Duration) (*Report, error) {
	threads := min(c, 2)
	secs := max(1, int(d.Round(time.Second)/time.Second))
	cmd := exec.CommandContext(ctx, wrk, "-t", strconv.Itoa(threads), "-c", strconv.Itoa(c),
		"-d", strconv.Itoa(secs)+"s", "--timeout", "60s", "--latency", "-s", script, url)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("wrk: %v: %s", err, firstLine(stderr.String()))
	}
	rep, err := parseWrk(out)
	if err != nil {
		return nil, fmt.Errorf("wrk: %w\n%s", err, out)
	}
	rep.Concurrency = c
	return rep, nil
}

// parseWrk reads the report wrk prints with --latency.
func parseWrk(out []byte) (*Report, error) {
	rep := &Report{Mode: "closed", Outcomes: map[string]int64{}}
	var have int
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "Requests/sec:":
			rep.PerSecond, _ = strconv.ParseFloat(f[1], 64)
			have++
		case len(f) >= 5 && f[1] == "requests" && f[2] == "in":
			// "12345 requests in 10.00s, 3.21MB read"
			rep.Requests, _ = strconv.ParseInt(f[0], 10, 64)
			if d, err := time.ParseDuration(strings.TrimSuffix(f[3], ",")); err == nil {
				rep.Seconds = d.Seconds()
			}
			have++
		case len(f) == 2 && strings.HasSuffix(f[0], "%"):
			ms, err := wrkMS(f[1])
			if err != nil {
				continue
			}
			switch f[0] {
			case "50%":
				rep.Latency.P50 = ms
			case "90%":
				rep.Latency.P90 = ms
			case "99%":
				rep.Latency.P99 = ms
			}
		case len(f) >= 5 && f[0] == "Latency":
			rep.Latency.Mean, _ = wrkMS(f[1])
			rep.Latency.Max, _ = wrkMS(f[3])
		case len(f) == 5 && f[0] == "Non-2xx":
			// "Non-2xx or 3xx responses: 12"
			n, _ := strconv.ParseInt(f[4], 10, 64)
			rep.Errors += n
			rep.Outcomes["non-2xx"] = n
		case len(f) >= 2 && f[0] == "Socket" && f[1] == "errors:":
			// "Socket errors: connect 0, read 0, write 0, timeout 3"
			for i := 2; i+1 < len(f); i += 2 {
				n, _ := strconv.ParseInt(strings.TrimSuffix(f[i+1], ","), 10, 64)
				if n > 0 {
					rep.Errors += n
					rep.Outcomes["error:"+f[i]] = n
				}
			}
		}
	}
	if have < 2 {
		return nil, errors.New("no request count and rate in its report")
	}
	ok := max(rep.Requests-rep.Errors, 0)
	rep.Outcomes[OutcomeOK] = ok
	if rep.Requests > 0 {
		rep.OKPerSecond = rep.PerSecond * float64(ok) / float64(rep.Requests)
	}
	return rep, nil
}

// wrkMS reads one of wrk's durations ("812.00us", "1.23ms", "2.00s", "1.50m") as milliseconds.
func wrkMS(s string) (float64, error) {
	units := []struct {
		suffix string
		ms     float64
	}{{"us", 0.001}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}}
	for _, u := range units {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f * u.ms, err
		}
	}
	return 0, fmt.Errorf("bad duration %q", s)
}
