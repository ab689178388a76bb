package executor

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmwiz/wasmwiz/internal/natstest"
	"github.com/wasmwiz/wasmwiz/internal/streams"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// TestSecurity_Hole9_ResultChargesRaceSafely: executors storing results of one tenant at once
// each see the others' charges (compare-and-set on the tenant's usage record), so the results
// stored never take more than the tier's result_bytes, apart from the outputless results the
// quota cannot refuse (an accepted execution is always recorded); every result is charged
// exactly what is stored; a result that did not fit says so; another tenant is not charged.
func TestSecurity_Hole9_ResultChargesRaceSafely(t *testing.T) {
	s := natstest.RunJetStream(t)
	js := natstest.JetStream(t, s)
	ctx := context.Background()
	tiers := schemas.DefaultTiers()
	free := tiers[schemas.TierFree]
	free.ResultBytes = 1 << 20
	tiers[schemas.TierFree] = free
	if err := streams.Ensure(ctx, js, streams.Options{Tiers: tiers}); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, schemas.BucketStorage)
	if err != nil {
		t.Fatal(err)
	}
	var nodes []*Node // three executors sharing the bucket
	for range 3 {
		m, err := newMetrics(prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, &Node{cfg: Config{Tiers: tiers}, storage: kv, resultsTTL: time.Hour, m: m})
	}

	const results = 30
	out := bytes.Repeat([]byte("x"), 100_000) // ~133 KB stored (base64): eight fit in 1 MiB
	var mu sync.Mutex
	var stored, cut, lost int64
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() {
			res := &schemas.Result{ID: fmt.Sprintf("e%d", i), TenantID: "hoarder", Tier: schemas.TierFree, Status: schemas.StatusSucceeded, Stdout: out}
			b, _ := json.Marshal(res)
			got, gb, err := nodes[i%len(nodes)].chargeResult(ctx, res, b, 0)
			if err != nil {
				t.Error(err)
				return
			}
			var back schemas.Result
			if err := json.Unmarshal(gb, &back); err != nil || back.Status != schemas.StatusSucceeded || back.ID != res.ID {
				t.Errorf("stored result %s: %v %+v", res.ID, err, back)
			}
			mu.Lock()
			defer mu.Unlock()
			stored += int64(len(gb))
			switch {
			case got.StorageQuotaExceeded && back.StorageQuotaExceeded && back.StdoutTruncated:
				cut++
			case len(back.Stdout) != len(out):
				lost++ // output gone without the flag
			}
			if len(res.Stdout) != len(out) {
				t.Error("chargeResult changed the caller's result")
			}
		})
	}
	wg.Wait()
	e, err := kv.Get(ctx, schemas.ResultUsageKey("hoarder"))
	if err != nil {
		t.Fatal(err)
	}
	var u schemas.ResultUsage
	if err := json.Unmarshal(e.Value(), &u); err != nil {
		t.Fatal(err)
	}
	charged, _ := u.Live(time.Now(), time.Hour)
	t.Logf("%d results: %d bytes stored, %d charged, %d cut", results, stored, charged, cut)
	if charged != stored {
		t.Errorf("charged %d bytes for %d stored: charges were lost to races", charged, stored)
	}
	if limit := free.ResultBytes + results*1024; stored > limit {
		t.Errorf("stored %d bytes, over the quota %d plus an outputless result each", stored, free.ResultBytes)
	}
	if cut == 0 || cut == results || lost != 0 {
		t.Errorf("%d of %d results cut, %d lost output without saying so", cut, results, lost)
	}
	if _, err := kv.Get(ctx, schemas.ResultUsageKey("neighbour")); err == nil {
		t.Error("another tenant was charged")
	}
}

// chargeNode is a node that charges results into the storage bucket of s over a connection of
// its own, whose sent messages tell what a charge cost.
func chargeNode(t *testing.T, s *server.Server, tiers map[string]schemas.Tier) (*Node, *nats.Conn) {
	t.Helper()
	nc := natstest.Connect(t, s)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(context.Background(), schemas.BucketStorage)
	if err != nil {
		t.Fatal(err)
	}
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return &Node{cfg: Config{Tiers: tiers}, storage: kv, resultsTTL: time.Hour, m: m}, nc
}

func chargeTiers(t *testing.T, s *server.Server) map[string]schemas.Tier {
	t.Helper()
	tiers := schemas.DefaultTiers()
	free := tiers[schemas.TierFree]
	free.ResultBytes = 1 << 20
	tiers[schemas.TierFree] = free
	if err := streams.Ensure(context.Background(), natstest.JetStream(t, s), streams.Options{Tiers: tiers}); err != nil {
		t.Fatal(err)
	}
	return tiers
}

// chargedBytes is what tenant's usage record counts, and its revision.
func chargedBytes(t *testing.T, n *Node, tenant string) (int64, uint64) {
	t.Helper()
	e, err := n.storage.Get(context.Background(), schemas.ResultUsageKey(tenant))
	if err != nil {
		t.Fatal(err)
	}
	var u schemas.ResultUsage
	if err := json.Unmarshal(e.Value(), &u); err != nil {
		t.Fatal(err)
	}
	used, _ := u.Live(time.Now(), time.Hour)
	return used, e.Revision()
}

func chargeOne(t *testing.T, n *Node, id string) int64 {
	t.Helper()
	res := &schemas.Result{ID: id, TenantID: "busy", Tier: schemas.TierFree, Status: schemas.StatusSucceeded, Stdout: []byte("hello")}
	b, _ := json.Marshal(res)
	_, gb, err := n.chargeResult(context.Background(), res, b, 0)
	if err != nil {
		t.Fatal(err)
	}
	return int64(len(gb))
}

// A node remembers a tenant's usage record as its last compare-and-set left it: its next charge
// of the tenant is one message (the compare-and-set), not a read and then a write. When another
// node charged the tenant in between, the compare-and-set fails on the revision and the node
// reads the record again, so neither charge is lost.
func TestNode_ChargeResult_RemembersRecord(t *testing.T) {
	s := natstest.RunJetStream(t)
	tiers := chargeTiers(t, s)
	a, anc := chargeNode(t, s, tiers)
	b, _ := chargeNode(t, s, tiers)

	var want int64
	want += chargeOne(t, a, "e1") // reads (no record) and creates
	for i := range 3 {
		before := anc.Stats().OutMsgs
		want += chargeOne(t, a, fmt.Sprintf("e%d", i+2))
		if sent := anc.Stats().OutMsgs - before; sent != 1 {
			t.Errorf("charge %d sent %d messages, want 1 (the compare-and-set alone)", i+2, sent)
		}
	}
	want += chargeOne(t, b, "other-node")
	before := anc.Stats().OutMsgs
	want += chargeOne(t, a, "e5")
	if sent := anc.Stats().OutMsgs - before; sent != 3 {
		t.Errorf("charge after another node's sent %d messages, want 3 (a failed compare-and-set, a read, a compare-and-set)", sent)
	}
	if got, _ := chargedBytes(t, a, "busy"); got != want {
		t.Errorf("charged %d bytes, stored %d", got, want)
	}
}

// Results of one tenant that wait while a charge of the tenant is on its way are charged
// together: one compare-and-set for all of them, each charged what it stores.
func TestNode_ChargeResult_Batches(t *testing.T) {
	s := natstest.RunJetStream(t)
	tiers := chargeTiers(t, s)
	n, nc := chargeNode(t, s, tiers)
	want := chargeOne(t, n, "first")
	_, rev := chargedBytes(t, n, "busy")

	// A charge of the tenant is on its way: the next ones wait for it.
	key := schemas.ResultUsageKey("busy")
	n.charges.mu.Lock()
	n.charges.m[key].busy = true
	n.charges.mu.Unlock()
	const waiting = 10
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range waiting {
		wg.Go(func() {
			got := chargeOne(t, n, fmt.Sprintf("w%d", i))
			mu.Lock()
			want += got
			mu.Unlock()
		})
	}
	natstest.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		n.charges.mu.Lock()
		defer n.charges.mu.Unlock()
		if w := len(n.charges.m[key].waiting); w != waiting {
			return fmt.Errorf("%d charges waiting", w)
		}
		return nil
	})
	before := nc.Stats().OutMsgs
	// The charge on its way ends and hands the lead to the first that waited.
	n.charges.done(key, n.charges.m[key], nil, nil)
	wg.Wait()
	if sent := nc.Stats().OutMsgs - before; sent != 1 {
		t.Errorf("%d waiting charges sent %d messages, want 1 compare-and-set", waiting, sent)
	}
	got, rev2 := chargedBytes(t, n, "busy")
	if rev2 != rev+1 {
		t.Errorf("record revision %d → %d, want one write", rev, rev2)
	}
	if got != want {
		t.Errorf("charged %d bytes, stored %d", got, want)
	}
	n.charges.mu.Lock()
	defer n.charges.mu.Unlock()
	if tc := n.charges.m[key]; tc.busy || len(tc.waiting) != 0 {
		t.Errorf("tenant left busy %v with %d waiting", tc.busy, len(tc.waiting))
	}
}
