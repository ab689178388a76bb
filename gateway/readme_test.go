package gateway

import (
	"os"
	"strings"
	"testing"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// TestOperations_READMEListsNATS fails when the README's "Direct NATS" section leaves out an
// operation the NATS micro service serves, or names one it does not.
func TestOperations_READMEListsNATS(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	start := strings.Index(readme, "\n## Direct NATS\n")
	if start < 0 {
		t.Fatal(`README.md has no "## Direct NATS" section`)
	}
	section := readme[start+1:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	served := map[string]bool{}
	g := &Server{cfg: Config{Tiers: schemas.DefaultTiers()}}
	for _, o := range g.operations() {
		if o.NATS == "" {
			continue
		}
		served[o.NATS] = true
		if !strings.Contains(section, "`"+o.NATS+"`") {
			t.Errorf("README's Direct NATS section does not list %s (%s %s)", o.NATS, o.Method, o.Path)
		}
	}
	if len(served) < 5 {
		t.Fatalf("only %d NATS operations in the table: the check is blind", len(served))
	}
	// Every `word.word` in the table's first column is an operation that exists.
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		first := strings.Split(line, "|")[1]
		for _, f := range strings.Split(first, "`") {
			if f = strings.TrimSpace(f); f != "" && f != "," && !served[f] {
				t.Errorf("README lists NATS operation %q, which the service does not serve", f)
			}
		}
	}
}
