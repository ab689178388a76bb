package schemas

import (
	"testing"
	"time"
)

func TestHistorySubject_RoundTrip(t *testing.T) {
	created := time.Date(2026, 12, 2, 18, 30, 59, 999, time.UTC)
	s := HistorySubject("acme", created)
	if s != "wasmwiz.history.acme.29937270" {
		t.Fatalf("HistorySubject = %q", s)
	}
	tenant, minute, err := ParseHistorySubject(s)
	if err != nil || tenant != "acme" || minute != HistoryMinute(created) {
		t.Fatalf("ParseHistorySubject(%q) = %q, %d, %v", s, tenant, minute, err)
	}
	for _, bad := range []string{"wasmwiz.history.acme", "wasmwiz.history.acme.x", "wasmwiz.history.acme.-1", "wasmwiz.history.acme.01", "wasmwiz.history.A.1", "wasmwiz.events.acme.1", "wasmwiz.history.acme.1.2"} {
		if _, _, err := ParseHistorySubject(bad); err == nil {
			t.Errorf("ParseHistorySubject(%q) accepted it", bad)
		}
	}
}

func TestHistoryCursor_RoundTrip(t *testing.T) {
	c := HistoryCursor{CreatedAt: time.Date(2026, 12, 2, 18, 30, 1, 123456789, time.UTC), ID: "ex_0123456789abcdefghjkmnpqrs"}
	got, err := ParseHistoryCursor(c.Encode())
	if err != nil || !got.CreatedAt.Equal(c.CreatedAt) || got.ID != c.ID {
		t.Fatalf("round trip: %+v, %v; want %+v", got, err, c)
	}
	if !c.Before(c.CreatedAt, "ex_0") || c.Before(c.CreatedAt, c.ID) || !c.Before(c.CreatedAt.Add(-1), "ex_z") || c.Before(c.CreatedAt.Add(1), "ex_0") {
		t.Fatal("Before orders (created_at, id) newest first")
	}
	for _, bad := range []string{"", "!!", "AAAA", c.Encode() + "%"} {
		if _, err := ParseHistoryCursor(bad); err == nil {
			t.Errorf("ParseHistoryCursor(%q) accepted it", bad)
		}
	}
}

func FuzzParseHistorySubject(f *testing.F) {
	f.Add("wasmwiz.history.acme.29937270")
	f.Add("wasmwiz.history.acme.0")
	f.Fuzz(func(t *testing.T, s string) {
		tenant, minute, err := ParseHistorySubject(s)
		if err == nil && HistorySubject(tenant, time.Unix(minute*60, 0)) != s {
			t.Fatalf("%q parsed to %q %d which rebuilds differently", s, tenant, minute)
		}
	})
}

func FuzzParseHistoryCursor(f *testing.F) {
	f.Add(HistoryCursor{CreatedAt: time.Unix(1, 2), ID: "ex_0123456789abcdefghjkmnpqrs"}.Encode())
	f.Add(HistoryCursor{CreatedAt: time.Unix(1, 2)}.Encode())
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseHistoryCursor(s)
		if err != nil {
			return
		}
		again, err := ParseHistoryCursor(c.Encode())
		if err != nil || !again.CreatedAt.Equal(c.CreatedAt) || again.ID != c.ID {
			t.Fatalf("%q parsed to %+v which does not round-trip: %+v %v", s, c, again, err)
		}
	})
}
