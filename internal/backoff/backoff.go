// Package backoff is WasmWiz's one retry delay: exponential from Min up to Max, with optional
// jitter so that many processes retrying the same thing do not retry in step.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff hands out the delays before successive retries. The zero value starts at 100 ms and
// never stops growing; set Max.
type Backoff struct {
	Min    time.Duration // first delay (default 100 ms)
	Max    time.Duration // cap (0: none)
	Jitter bool          // each delay is drawn from [d/2, d] instead of d
	cur    time.Duration
}

// Next returns the delay before the next retry: Min, then twice the last, up to Max.
func (b *Backoff) Next() time.Duration {
	lo := b.Min
	if lo <= 0 {
		lo = 100 * time.Millisecond
	}
	b.cur = max(2*b.cur, lo)
	if b.Max > 0 {
		b.cur = min(b.cur, b.Max)
	}
	if b.Jitter && b.cur > 1 {
		return b.cur/2 + rand.N(b.cur/2+1)
	}
	return b.cur
}

// Reset starts again from Min, after a success.
func (b *Backoff) Reset() { b.cur = 0 }

// Sleep waits for d or until ctx ends, and reports whether the whole d passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
