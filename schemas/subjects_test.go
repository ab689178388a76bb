package schemas

import (
	"strings"
	"testing"
)

func TestExecSubject_RoundTrip(t *testing.T) {
	for _, tc := range []struct{ tier, tenant string }{{"free", "acme"}, {"pro", "a-b_c9"}, {"unlimited", "0"}} {
		tier, tenant, err := ParseExecSubject(ExecSubject(tc.tier, tc.tenant))
		if err != nil || tier != tc.tier || tenant != tc.tenant {
			t.Errorf("round trip %v: got %q %q %v", tc, tier, tenant, err)
		}
	}
	for _, bad := range []string{"", "wasmwiz.exec.free", "wasmwiz.exec.free.acme.x", "wasmwiz.exec.Free.acme", "wasmwiz.exec.free.*", "wasmwiz.events.free.acme", "wasmwiz.exec..acme"} {
		if _, _, err := ParseExecSubject(bad); err == nil {
			t.Errorf("ParseExecSubject(%q) accepted", bad)
		}
	}
}

func TestEventSubject_RoundTrip(t *testing.T) {
	typ, tenant, err := ParseEventSubject(EventSubject(EventExecutionCompleted, "acme"))
	if err != nil || typ != EventExecutionCompleted || tenant != "acme" {
		t.Fatalf("got %q %q %v", typ, tenant, err)
	}
	for _, bad := range []string{"wasmwiz.events.execution.acme", "wasmwiz.events.execution.exploded.acme", "wasmwiz.events.execution.completed.ACME"} {
		if _, _, err := ParseEventSubject(bad); err == nil {
			t.Errorf("ParseEventSubject(%q) accepted", bad)
		}
	}
}

func TestParseModuleID(t *testing.T) {
	good := "sha256:" + strings.Repeat("ab", 32)
	if h, err := ParseModuleID(good); err != nil || h != strings.Repeat("ab", 32) {
		t.Fatalf("ParseModuleID(good) = %q, %v", h, err)
	}
	for _, bad := range []string{"", "sha256:", "sha256:" + strings.Repeat("AB", 32), "md5:" + strings.Repeat("ab", 32), "sha256:" + strings.Repeat("ab", 33)} {
		if _, err := ParseModuleID(bad); err == nil {
			t.Errorf("ParseModuleID(%q) accepted", bad)
		}
	}
}

// The parsers take subjects from the network; they must never panic, and whatever they accept
// must be rebuilt exactly by the matching constructor.
func FuzzParseExecSubject(f *testing.F) {
	f.Add("wasmwiz.exec.free.acme")
	f.Add("wasmwiz.exec.pro.a.b")
	f.Fuzz(func(t *testing.T, s string) {
		tier, tenant, err := ParseExecSubject(s)
		if err == nil && ExecSubject(tier, tenant) != s {
			t.Fatalf("%q parsed to %q %q which rebuilds differently", s, tier, tenant)
		}
	})
}

func FuzzParseEventSubject(f *testing.F) {
	f.Add("wasmwiz.events.execution.completed.acme")
	f.Add("wasmwiz.events.key.created.x")
	f.Fuzz(func(t *testing.T, s string) {
		typ, tenant, err := ParseEventSubject(s)
		if err == nil && EventSubject(typ, tenant) != s {
			t.Fatalf("%q parsed to %q %q which rebuilds differently", s, typ, tenant)
		}
	})
}

func FuzzParseAPISubject(f *testing.F) {
	f.Add("wasmwiz.api.v1.executions.create")
	f.Add("wasmwiz.api.v1.")
	f.Fuzz(func(t *testing.T, s string) {
		op, err := ParseAPISubject(s)
		if err == nil && APISubject(op) != s {
			t.Fatalf("%q parsed to %q which rebuilds differently", s, op)
		}
	})
}

func FuzzParseModuleID(f *testing.F) {
	f.Add("sha256:" + strings.Repeat("0f", 32))
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseModuleID(s)
		if err == nil && ModuleID(h) != s {
			t.Fatalf("%q parsed to %q which rebuilds differently", s, h)
		}
	})
}
