package schemas

import (
	"testing"
	"time"
)

// A window's bytes count from when they are written until the window's end plus the TTL, never
// less; Add forgets the windows that no longer count.
func TestResultUsage_Windows(t *testing.T) {
	ttl := 24 * time.Hour
	t0 := time.Date(2026, 12, 2, 10, 30, 0, 0, time.UTC)
	var u ResultUsage
	u.Add(t0, ttl, 100)
	u.Add(t0.Add(20*time.Minute), ttl, 50) // same window (10:00–11:00)
	u.Add(t0.Add(time.Hour), ttl, 7)       // next window
	if n, frees := u.Live(t0.Add(time.Hour), ttl); n != 157 || !frees.Equal(time.Date(2026, 12, 3, 11, 0, 0, 0, time.UTC)) {
		t.Errorf("live %d, frees at %v", n, frees)
	}
	// The first window's results expire by 11:00 the next day at the latest.
	if n, _ := u.Live(time.Date(2026, 12, 3, 10, 59, 0, 0, time.UTC), ttl); n != 157 {
		t.Errorf("a result written at 10:50 is still stored at 10:59 the next day: live %d", n)
	}
	if n, _ := u.Live(time.Date(2026, 12, 3, 11, 0, 0, 0, time.UTC), ttl); n != 7 {
		t.Errorf("after the first window's expiry: live %d, want 7", n)
	}
	u.Add(time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC), ttl, 1)
	if len(u.Windows) != 1 {
		t.Errorf("expired windows kept: %v", u.Windows)
	}
}
