package test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/wasmwiz/wasmwiz/internal/fixtures"
	"github.com/wasmwiz/wasmwiz/internal/natstest"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// startRoles runs gateway, executor and accounting as separate processes against servers.
func startRoles(t *testing.T, servers []*server.Server, replicas string) *system {
	t.Helper()
	var urls []string
	for _, s := range servers {
		urls = append(urls, s.ClientURL())
	}
	natsURL := strings.Join(urls, ",")
	dir := t.TempDir()
	common := []string{"WASMWIZ_NATS_URL=" + natsURL, "WASMWIZ_REPLICAS=" + replicas}

	s := startCore(t, common, dir)
	s.NATSURL = natsURL
	ac := start(t, append(common, "WASMWIZ_SQLITE_PATH="+filepath.Join(dir, "acct.db"), "DATABASE_URL=", "WASMWIZ_METRICS_ADDR="+freeAddr(t)), "accounting")
	s.procs = append(s.procs, ac)
	waitReady(t, s.URL, s.procs...)
	return s
}

func exerciseRoles(t *testing.T, s *system) {
	key := s.newTenant(t, "acme", "basic")
	m := s.upload(t, key, "probe", fixtures.Probe(t))
	e := s.run(t, key, schemas.ExecutionRequest{ModuleID: m.ID, Args: []string{"args"}})
	if e.Status != schemas.StatusSucceeded || !strings.HasPrefix(e.Stdout, "probe\nargs\n") {
		t.Fatalf("execution: %+v", e)
	}
	r, a := s.execute(t, key, schemas.ExecutionRequest{ModuleID: m.ID, Stdin: "x", Async: true})
	if r.Status != 202 {
		t.Fatalf("async: %d %s", r.Status, r.Body)
	}
	if got := poll(t, s, key, a.ID); got.Status != schemas.StatusSucceeded {
		t.Errorf("async: %+v", got)
	}
}

func TestRoles_SingleServer(t *testing.T) {
	srv := natstest.RunJetStream(t)
	s := startRoles(t, []*server.Server{srv}, "1")
	exerciseRoles(t, s)
}

func TestRoles_Cluster(t *testing.T) {
	if testing.Short() {
		t.Skip("3-node cluster in -short mode")
	}
	servers := natstest.RunCluster(t, 3)
	s := startRoles(t, servers, "3")
	exerciseRoles(t, s)
}
