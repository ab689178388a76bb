package test

import (
	"encoding/json"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/wasmwiz/wasmwiz/internal/fixtures"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// Under deploy/nats/accounts.conf, tenant A subscribed to ">" on its own NATS account sees none
// of tenant B's direct-NATS API traffic, while B's requests are served.
func TestNATSAccounts_TenantsSeeNothingOfEachOther(t *testing.T) {
	opts, err := server.ProcessConfigFile("../deploy/nats/accounts.conf")
	if err != nil {
		t.Fatal(err)
	}
	opts.Host, opts.Port = "127.0.0.1", -1
	opts.StoreDir = t.TempDir()
	opts.NoLog, opts.NoSigs = true, true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(srv.Shutdown)
	u, _ := url.Parse(srv.ClientURL())
	withUser := func(user, pass string) string {
		v := *u
		v.User = url.UserPassword(user, pass)
		return v.String()
	}

	// The roles run in account WASMWIZ.
	dir := t.TempDir()
	common := []string{"WASMWIZ_NATS_URL=" + withUser("wasmwiz", "CHANGE-ME-wasmwiz")}
	s := startCore(t, common, dir)
	keyB := s.newTenant(t, "globex", "basic")

	spy, err := nats.Connect(withUser("acme", "CHANGE-ME-acme"))
	if err != nil {
		t.Fatal(err)
	}
	defer spy.Close()
	var seen atomic.Int64
	if _, err := spy.Subscribe(">", func(m *nats.Msg) { seen.Add(1); t.Logf("tenant A saw %s", m.Subject) }); err != nil {
		t.Fatal(err)
	}
	if err := spy.Flush(); err != nil {
		t.Fatal(err)
	}

	b, err := nats.Connect(withUser("globex", "CHANGE-ME-globex"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	st, data := natsCall(t, b, schemas.OpModulesUpload, keyB, fixtures.Wasm("echo"))
	if st != "200" {
		t.Fatalf("B upload over its account: %s %s", st, data)
	}
	var m schemas.Module
	_ = json.Unmarshal(data, &m)
	body, _ := json.Marshal(schemas.ExecutionRequest{ModuleID: m.ID, Stdin: "secret of B"})
	st, data = natsCall(t, b, schemas.OpExecutionsCreate, keyB, body)
	if st != "200" {
		t.Fatalf("B execute over its account: %s %s", st, data)
	}
	// A's own request works through its own import, and is all A sees.
	if err := spy.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := seen.Load(); n != 0 {
		t.Fatalf("tenant A saw %d messages of tenant B's traffic", n)
	}
	// And A cannot reach the roles' own subjects (streams, KV, executors) at all.
	if _, err := spy.Request(schemas.SubjectExecutorPing, nil, 500*time.Millisecond); err == nil {
		t.Error("tenant A reached an executor subject")
	}
}
