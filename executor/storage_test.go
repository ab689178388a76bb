package executor

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

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
