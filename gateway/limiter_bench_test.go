package gateway

import (
	"context"
	"testing"
)

// BenchmarkLimiter_AdmitStatus is what a rate-limited execution costs the limiter: Admit (both
// windows) and then Status (the RateLimit-Remaining and -Reset figures), as createExecution
// does. 16 tenants, so that reads of one tenant's window are not all the same message.
func BenchmarkLimiter_AdmitStatus(b *testing.B) {
	l, pro := benchLimiter(b)
	tenants := []string{"t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8", "t9", "ta", "tb", "tc", "td", "te", "tf"}
	b.SetParallelism(8)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			tenant := tenants[i%len(tenants)]
			d, err := l.Admit(context.Background(), tenant, pro)
			if err != nil || !d.Allowed {
				b.Error(d, err)
				return
			}
			if err := l.Status(context.Background(), tenant, pro, d); err != nil {
				b.Error(err)
				return
			}
			if d.Remaining <= 0 || d.Reset <= 0 {
				b.Errorf("remaining %d reset %v", d.Remaining, d.Reset)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "execs/s")
}
