package bench

import (
	"strings"
	"testing"
)

func TestParseWrk(t *testing.T) {
	out := `Running 1s test @ http://127.0.0.1:18765/
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     8.31ms   12.27ms    1.20s   86.77%
    Req/Sec   485.60    258.04     0.94k    70.00%
  Latency Distribution
     50%  812.00us
     75%    8.60ms
     90%   25.63ms
     99%   57.68ms
  500 requests in 1.02s, 1.98MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 5
Requests/sec:    490.20
Transfer/sec:      1.94MB
`
	rep, err := parseWrk([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests != 500 || rep.Errors != 10 || rep.Outcomes[OutcomeOK] != 490 || rep.Outcomes["error:timeout"] != 3 || rep.Outcomes["non-2xx"] != 5 {
		t.Errorf("counts: %+v", rep)
	}
	if rep.PerSecond != 490.2 || rep.OKPerSecond < 480 || rep.OKPerSecond > 481 || rep.Seconds != 1.02 {
		t.Errorf("rates: %v ok %v over %v s", rep.PerSecond, rep.OKPerSecond, rep.Seconds)
	}
	if rep.Latency.P50 != 0.812 || rep.Latency.P90 != 25.63 || rep.Latency.P99 != 57.68 || rep.Latency.Max != 1200 || rep.Latency.Mean != 8.31 {
		t.Errorf("latency: %+v", rep.Latency)
	}
	if _, err := parseWrk([]byte("unable to connect to 127.0.0.1:1 Connection refused\n")); err == nil {
		t.Error("a report without counts parsed")
	}
}

func TestLuaString(t *testing.T) {
	for _, s := range []string{`{"a":"b"}`, `]]`, `x]=]y]]`} {
		q := luaString(s)
		if !strings.HasSuffix(q, "]") || strings.Count(q, s) != 1 {
			t.Errorf("%q -> %q", s, q)
		}
		eq := q[1 : strings.IndexByte(q[1:], '[')+1]
		if strings.Contains(s, "]"+eq+"]") {
			t.Errorf("%q -> %q: the closing bracket occurs in the string", s, q)
		}
	}
}
