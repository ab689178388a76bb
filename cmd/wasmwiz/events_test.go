package main

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"
	"time"
)

func TestEventFilters(t *testing.T) {
	for _, tc := range []struct {
		types, tenants []string
		want           []string
		bad            bool
	}{
		{nil, nil, []string{"wasmwiz.events.*.*.*"}, false},
		{nil, []string{"acme"}, []string{"wasmwiz.events.*.*.acme"}, false},
		{[]string{"execution.completed"}, nil, []string{"wasmwiz.events.execution.completed.*"}, false},
		{[]string{"execution.*", "key.created"}, []string{"acme", "beta"}, []string{
			"wasmwiz.events.execution.*.acme", "wasmwiz.events.execution.*.beta",
			"wasmwiz.events.key.created.acme", "wasmwiz.events.key.created.beta",
		}, false},
		{[]string{"execution.exploded"}, nil, nil, true},
		{[]string{"execution.>"}, nil, nil, true},
		{[]string{">"}, nil, nil, true},
		{nil, []string{"acme.*"}, nil, true},
		{nil, []string{"*"}, nil, true},
	} {
		got, err := eventFilters(tc.types, tc.tenants)
		if tc.bad != (err != nil) || !slices.Equal(got, tc.want) {
			t.Errorf("eventFilters(%q, %q) = %q, %v", tc.types, tc.tenants, got, err)
		}
	}
}

func TestListFlag(t *testing.T) {
	var l listFlag
	for _, s := range []string{"a,b", " c ,a", ""} {
		if err := l.Set(s); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(l, []string{"a", "b", "c"}) {
		t.Errorf("listFlag = %q", l)
	}
}

func TestEventLine(t *testing.T) {
	var b bytes.Buffer
	if err := eventLine(&b, 42, []byte("{\n  \"id\": \"x\",\n  \"type\": \"key.created\"\n}")); err != nil {
		t.Fatal(err)
	}
	if got, want := b.String(), `{"stream_seq":42,"id":"x","type":"key.created"}`+"\n"; got != want {
		t.Errorf("eventLine = %q, want %q", got, want)
	}
	b.Reset()
	if err := eventLine(&b, 1, []byte("{}")); err != nil || b.String() != `{"stream_seq":1}`+"\n" {
		t.Errorf("empty object: %q %v", b.String(), err)
	}
	var v map[string]any
	if json.Unmarshal(bytes.TrimSpace(b.Bytes()), &v) != nil {
		t.Errorf("not JSON: %q", b.String())
	}
	for _, bad := range []string{"", "[]", "not json", `"s"`} {
		if err := eventLine(&b, 1, []byte(bad)); err == nil {
			t.Errorf("eventLine(%q) succeeded", bad)
		}
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"1h":                   now.Add(-time.Hour),
		"2026-11-25":           time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC),
		"2026-11-25T10:00:00Z": time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC),
	} {
		got, err := parseSince(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "yesterday", "-1h", "2026-13-01"} {
		if _, err := parseSince(bad, now); err == nil {
			t.Errorf("parseSince(%q) succeeded", bad)
		}
	}
}

func TestReconcileReport_Failed(t *testing.T) {
	ok := ReconcileReport{StreamCovers: true}
	if ok.Failed() {
		t.Error("an empty report failed")
	}
	for name, r := range map[string]ReconcileReport{
		"missing":    {Missing: []string{"a"}},
		"duplicates": {Duplicates: []string{"a"}},
		"unexpected": {Unexpected: []string{"a"}, StreamCovers: true},
	} {
		if !r.Failed() {
			t.Errorf("%s: not failed", name)
		}
	}
	if (&ReconcileReport{Unexpected: []string{"a"}}).Failed() {
		t.Error("rows older than the stream's first event failed the report")
	}
}
