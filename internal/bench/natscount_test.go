package bench

import (
	"bytes"
	"strings"
	"testing"
)

func TestPerExec(t *testing.T) {
	before := NATSCounts{
		Conns:   map[string]MsgCounts{"wasmwiz-gateway": {In: 10, Out: 20}, "wasmwiz-executor": {In: 5, Out: 5}, "idle": {In: 3, Out: 3}},
		Streams: map[string]StreamCounts{"WASMWIZ_EXEC_UNLIMITED": {LastSeq: 100, Msgs: 0}, "KV_wasmwiz_results": {LastSeq: 50, Msgs: 50}},
	}
	after := NATSCounts{
		Conns: map[string]MsgCounts{"wasmwiz-gateway": {In: 20, Out: 40}, "wasmwiz-executor": {In: 45, Out: 35}, "idle": {In: 3, Out: 3},
			"new": {In: 10, Out: 0}},
		Streams: map[string]StreamCounts{"WASMWIZ_EXEC_UNLIMITED": {LastSeq: 110, Msgs: 0}, "KV_wasmwiz_results": {LastSeq: 60, Msgs: 55}},
	}
	c := perExec(before, after, 10)
	if c.In != 1+4+1 || c.Out != 2+3 {
		t.Errorf("in %v out %v, want 6 and 5", c.In, c.Out)
	}
	if _, ok := c.ByConn["idle"]; ok {
		t.Error("a connection that did nothing is listed")
	}
	if r := c.ByConn["wasmwiz-executor"]; r.In != 4 || r.Out != 3 {
		t.Errorf("executor %+v, want 4/3", r)
	}
	// 20 writes over 10 executions; the work queue removed all 10 of its own, the bucket 5.
	if c.Writes != 2 || c.Removes != 1.5 || c.Streams["KV_wasmwiz_results"] != 1 {
		t.Errorf("writes %v removes %v by stream %v", c.Writes, c.Removes, c.Streams)
	}
	if perExec(before, after, 0) != nil {
		t.Error("no executions: want no figures")
	}
	o := &benchOutput{Cells: []benchCell{{Module: "echo", Mode: modeREST, Concurrency: 1, NATS: c}}}
	var buf bytes.Buffer
	o.printNATS(&buf)
	if !strings.Contains(buf.String(), "executor 4.00/3.00") || !strings.Contains(buf.String(), "2.00 writes") {
		t.Errorf("printed:\n%s", buf.String())
	}
}
