package executor

import (
	"sync"
	"testing"
)

// keyedMutex holds one lock per key: holders of a key take turns, other keys do not wait for
// them, and a key nobody holds or waits for is forgotten.
func TestKeyedMutex(t *testing.T) {
	var k keyedMutex
	inside := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range 64 {
		key := []string{"a", "b"}[i%2]
		wg.Go(func() {
			unlock := k.lock(key)
			mu.Lock()
			inside[key]++
			if inside[key] > 1 {
				t.Errorf("%d holders of %s at once", inside[key], key)
			}
			mu.Unlock()
			mu.Lock()
			inside[key]--
			mu.Unlock()
			unlock()
		})
	}
	wg.Wait()
	// A holder of a does not keep b waiting.
	unlockA := k.lock("a")
	k.lock("b")()
	unlockA()
	if len(k.m) != 0 {
		t.Errorf("%d keys left after every holder unlocked", len(k.m))
	}
}
