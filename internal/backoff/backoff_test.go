package backoff

import (
	"context"
	"testing"
	"time"
)

func TestBackoff_DoublesUpToMax(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: time.Second}
	var got []time.Duration
	for range 6 {
		got = append(got, b.Next())
	}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("delays %v, want %v ms", got, want)
		}
	}
	b.Reset()
	if d := b.Next(); d != 100*time.Millisecond {
		t.Errorf("after Reset: %v", d)
	}
}

func TestBackoff_ZeroValueStartsAt100ms(t *testing.T) {
	var b Backoff
	if d := b.Next(); d != 100*time.Millisecond {
		t.Errorf("first delay %v", d)
	}
}

func TestBackoff_JitterStaysInHalfToFull(t *testing.T) {
	b := Backoff{Min: time.Second, Max: time.Second, Jitter: true}
	seen := map[time.Duration]bool{}
	for range 200 {
		d := b.Next()
		if d < 500*time.Millisecond || d > time.Second {
			t.Fatalf("jittered delay %v outside [500ms, 1s]", d)
		}
		seen[d] = true
	}
	if len(seen) < 10 {
		t.Errorf("only %d distinct delays in 200: no jitter", len(seen))
	}
}

func TestSleep_EndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Error("Sleep reported the full hour on a cancelled context")
	}
	if !Sleep(context.Background(), time.Millisecond) {
		t.Error("Sleep of 1ms did not complete")
	}
}
