package test

import (
	"testing"

	"github.com/wasmwiz/wasmwiz/internal/natstest"
)

func TestOpsDump(t *testing.T) {
	srv := natstest.RunJetStream(t)
	s := startSplit(t, srv.ClientURL(), 1, 1)
	driveTraffic(t, s.system)
	waitAccounted(t, s.accounting.opsURL, 5)
	for _, r := range s.roles() {
		f := scrape(t, r.opsURL)
		for _, n := range sortedKeys(f) {
			t.Logf("%s %s %s %v", r.name, n, f[n].GetType(), f.labelNames(n))
		}
	}
}
