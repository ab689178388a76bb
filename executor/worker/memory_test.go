package worker

import (
	"bytes"
	"testing"
)

// TestJobMemory_Reuse: a memory that stayed small goes to the next job zeroed, whatever the
// last guest wrote; a large one is unmapped instead.
func TestJobMemory_Reuse(t *testing.T) {
	const max = 16 << 20
	var spare spareMemories
	first := jobMemory{spare: &spare}
	m := first.allocator().Allocate(0, max)
	buf := m.Reallocate(64 << 10)
	buf = m.Reallocate(128 << 10) // grows in place
	for i := range buf {
		buf[i] = 0xa5
	}
	first.release()

	second := jobMemory{spare: &spare}
	m2 := second.allocator().Allocate(0, max)
	if m2 != m {
		t.Fatal("a small memory was not reused")
	}
	if m2.(*linearMemory).mapped != nil {
		if b := m2.Reallocate(max); !bytes.Equal(b, make([]byte, max)) {
			t.Fatal("a reused memory holds the last guest's bytes")
		}
	}
	second.release() // grew to 16 MiB: not kept
	third := jobMemory{spare: &spare}
	m3 := third.allocator().Allocate(0, max)
	if m3 == m2 {
		t.Fatal("a large memory was reused")
	}
	third.release() // untouched: kept
	if other := (&jobMemory{spare: &spare}).allocator().Allocate(0, 2*max); other == m3 {
		t.Fatal("a memory of another maximum was reused")
	}
}
