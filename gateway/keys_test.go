package gateway

import (
	"strings"
	"testing"
)

func TestAPIKey_Format(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		k, err := NewAPIKey()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(k, "ww_") || len(k) != 3+43+1+6 {
			t.Fatalf("bad key shape %q", k)
		}
		if !WellFormedAPIKey(k) {
			t.Fatalf("own key %q not well formed", k)
		}
		if seen[k] {
			t.Fatal("duplicate key")
		}
		seen[k] = true
		// Any single-character change breaks the checksum (or the shape).
		b := []byte(k)
		b[10] ^= 0x01
		if WellFormedAPIKey(string(b)) {
			t.Fatalf("corrupted key %q accepted", b)
		}
	}
	for _, bad := range []string{"", "ww_", "Bearer x", "ww_" + strings.Repeat("A", 43) + "_AAAAAA", strings.Repeat("x", 53)} {
		if WellFormedAPIKey(bad) {
			t.Errorf("WellFormedAPIKey(%q) = true", bad)
		}
	}
}

func FuzzWellFormedAPIKey(f *testing.F) {
	k, _ := NewAPIKey()
	f.Add(k)
	f.Add("ww__")
	f.Fuzz(func(t *testing.T, s string) {
		_ = WellFormedAPIKey(s)
	})
}
