package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmwiz/wasmwiz/internal/natstest"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// A gateway reads a tenant's result usage at most once per resultUsageFresh: the checks in
// between are answered from its copy and send nothing. A result it relays that was cut to fit
// makes it read again at once (forget), and so does a copy older than resultUsageFresh.
func TestCheckResultQuota_ReadsOncePerFresh(t *testing.T) {
	tg := startTestGateway(t, Config{})
	g := tg.g
	ctx := context.Background()
	// The usage bucket on a connection of its own, whose sent messages are the checks' reads
	// alone (the gateway's connection carries its watches too).
	nc := natstest.Connect(t, tg.srv)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if g.storage, err = js.KeyValue(ctx, schemas.BucketStorage); err != nil {
		t.Fatal(err)
	}
	tier := schemas.DefaultTiers()[schemas.TierBasic]
	tier.ResultBytes = 1 << 20
	p := &Principal{TenantID: "acme", Tier: tier}
	sent := func(f func()) uint64 {
		before := nc.Stats().OutMsgs
		f()
		return nc.Stats().OutMsgs - before
	}
	check := func() error { return g.checkResultQuota(ctx, p) }
	if n := sent(func() {
		if err := check(); err != nil {
			t.Fatalf("a tenant without results: %v", err)
		}
	}); n != 1 {
		t.Errorf("the first check sent %d messages, want 1 (the read)", n)
	}
	if n := sent(func() {
		for range 5 {
			if err := check(); err != nil {
				t.Fatal(err)
			}
		}
	}); n != 0 {
		t.Errorf("5 checks within %v sent %d messages, want none", resultUsageFresh, n)
	}

	// The executors fill the quota: the copy still admits, until it is forgotten.
	var u schemas.ResultUsage
	u.Add(time.Now(), g.resultsTTL, tier.ResultBytes)
	b, _ := json.Marshal(&u)
	if _, err := g.storage.Put(ctx, schemas.ResultUsageKey("acme"), b); err != nil {
		t.Fatal(err)
	}
	if err := check(); err != nil {
		t.Fatalf("within %v of the read: %v", resultUsageFresh, err)
	}
	g.usageReads.forget("acme")
	var se *schemas.Error
	if err := check(); !errors.As(err, &se) || se.Code != schemas.CodeStorageQuotaExceeded || se.RetryAfter < 1 {
		t.Fatalf("a full quota read again: %v, want storage_quota_exceeded with a Retry-After", err)
	}

	// Room again (say, the executors' record started over): refused from the copy until it is
	// older than resultUsageFresh, then read again.
	if _, err := g.storage.Put(ctx, schemas.ResultUsageKey("acme"), []byte(`{"windows":{}}`)); err != nil {
		t.Fatal(err)
	}
	if err := check(); err == nil {
		t.Fatal("admitted without reading again within resultUsageFresh")
	}
	r := g.usageReads.of("acme")
	r.mu.Lock()
	r.at = r.at.Add(-resultUsageFresh)
	r.mu.Unlock()
	if err := check(); err != nil {
		t.Fatalf("after %v: %v", resultUsageFresh, err)
	}
}
