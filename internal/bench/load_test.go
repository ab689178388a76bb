package bench

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

func TestGenerateLoad_Requests(t *testing.T) {
	var n atomic.Int64
	rep := Generate(context.Background(), LoadConfig{Concurrency: 4, Requests: 100}, func(context.Context) string {
		if n.Add(1)%10 == 0 {
			return "503"
		}
		return OutcomeOK
	})
	if rep.Requests != 100 || n.Load() != 100 || rep.Errors != 10 || rep.Outcomes["503"] != 10 || rep.Outcomes[OutcomeOK] != 90 {
		t.Fatalf("report %+v after %d calls", rep, n.Load())
	}
}

// An open loop measures from the intended send time: a stalled server shows as latency of the
// requests that were due meanwhile, not as fewer samples.
func TestGenerateLoad_OpenLoopCountsTheWait(t *testing.T) {
	var n atomic.Int64
	rep := Generate(context.Background(), LoadConfig{Concurrency: 1, Requests: 20, Rate: 1000}, func(context.Context) string {
		if n.Add(1) == 1 {
			time.Sleep(50 * time.Millisecond) // the server stalls once
		}
		return OutcomeOK
	})
	if rep.Requests != 20 || rep.Mode != "open" {
		t.Fatalf("report %+v", rep)
	}
	// Requests due at 1 ms intervals waited behind the 50 ms stall: the median is well above
	// the service time (~0) and the stall shows in p90.
	if rep.Latency.P90 < 30 {
		t.Fatalf("p90 %.2f ms: the open loop hid the stall", rep.Latency.P90)
	}
}
