package gateway

import (
	"context"
	"sync"
	"testing"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// TestSecurity_CompilesInFlightPerTenant: a tenant holds at most its tier's compiles_in_flight
// compile slots, counted by JetStream across gateways (two limiters on two connections race
// for them), and a released slot can be taken again (issue 12, hole 8).
func TestSecurity_CompilesInFlightPerTenant(t *testing.T) {
	ls, tier := newTestLimiters(t, 2)
	ctx := context.Background()
	slots := tier.CompileSlots()
	var mu sync.Mutex
	var taken []uint64
	refused := 0
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			seq, err := ls[i%2].take(ctx, tier.Name, schemas.WindowCompiling, "acme")
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if seq == 0 {
				refused++
			} else {
				taken = append(taken, seq)
			}
		})
	}
	wg.Wait()
	if len(taken) != slots || refused != 8-slots {
		t.Fatalf("%d compile slots taken, %d refused; want %d taken", len(taken), refused, slots)
	}
	if seq, _ := ls[0].take(ctx, tier.Name, schemas.WindowCompiling, "other"); seq == 0 {
		t.Fatal("another tenant was refused a compile slot")
	}
	ls[1].release(ctx, tier.Name, schemas.WindowCompiling, taken[0])
	if seq, err := ls[0].take(ctx, tier.Name, schemas.WindowCompiling, "acme"); err != nil || seq == 0 {
		t.Fatalf("after a release: seq %d, %v; want a slot", seq, err)
	}
}
