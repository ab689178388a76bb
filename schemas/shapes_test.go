package schemas

import (
	"regexp"
	"strings"
	"testing"
)

// The shapes ValidToken, ParseModuleID and ValidExecutionID check by hand, as regular
// expressions: the oracle they are fuzzed against.
var (
	tokenOracle       = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	moduleIDOracle    = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	executionIDOracle = regexp.MustCompile(`^[0-9a-zA-Z_-]{16,64}$`)
)

func FuzzShapes(f *testing.F) {
	hex := strings.Repeat("0123456789abcdef", 4)
	for _, s := range []string{"", "a", "_a", "-a", "acme", "acme_1-x", "Acme", strings.Repeat("a", 63), strings.Repeat("a", 64),
		"sha256:" + hex, "sha256:" + strings.ToUpper(hex), "sha256:" + hex[:63], "sha256:" + hex + "0", "sha512:" + hex, "sha256:" + hex[:63] + "g",
		"ex_0123456789abcdef", "0123456789abcde", strings.Repeat("Z", 64), strings.Repeat("z", 65), "ex_0123456789abcdé", "a.b", "a\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := ValidToken(s), tokenOracle.MatchString(s); got != want {
			t.Errorf("ValidToken(%q) = %v, want %v", s, got, want)
		}
		hexDigest, err := ParseModuleID(s)
		if want := moduleIDOracle.MatchString(s); (err == nil) != want {
			t.Errorf("ParseModuleID(%q) error %v, want valid %v", s, err, want)
		} else if want && hexDigest != s[len("sha256:"):] || !want && hexDigest != "" {
			t.Errorf("ParseModuleID(%q) = %q", s, hexDigest)
		}
		if got, want := ValidExecutionID(s), executionIDOracle.MatchString(s); got != want {
			t.Errorf("ValidExecutionID(%q) = %v, want %v", s, got, want)
		}
	})
}
