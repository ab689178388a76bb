package worker

import (
	"bytes"
	"testing"

	"github.com/tetratelabs/wazero/experimental"
)

func lin(m experimental.LinearMemory) *linearMemory { return m.(*countedMemory).linearMemory }

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
	if got := first.bytes.Load(); got != 128<<10 {
		t.Errorf("job memory counted %d bytes, want %d", got, 128<<10)
	}
	first.release()

	second := jobMemory{spare: &spare}
	m2 := second.allocator().Allocate(0, max)
	if lin(m2) != lin(m) {
		t.Fatal("a small memory was not reused")
	}
	if lin(m2).mapped != nil {
		if b := m2.Reallocate(max); !bytes.Equal(b, make([]byte, max)) {
			t.Fatal("a reused memory holds the last guest's bytes")
		}
	}
	second.release() // grew to 16 MiB: not kept
	third := jobMemory{spare: &spare}
	m3 := third.allocator().Allocate(0, max)
	if lin(m3) == lin(m2) {
		t.Fatal("a large memory was reused")
	}
	third.release() // untouched: kept
	if other := (&jobMemory{spare: &spare}).allocator().Allocate(0, 2*max); lin(other) == lin(m3) {
		t.Fatal("a memory of another maximum was reused")
	}
}
