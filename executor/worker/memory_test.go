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
	const max = 2 * reuseMax
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
	second.release() // grew past reuseMax: not kept
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

// TestSpareMemories_Budget: the spares hold at most reuseMax resident bytes together, dropping
// the oldest first.
func TestSpareMemories_Budget(t *testing.T) {
	const max = 2 * reuseMax
	var spare spareMemories
	var given []*linearMemory
	jobs := make([]jobMemory, 3) // at once, so that each has a memory of its own
	for i := range jobs {
		jobs[i].spare = &spare
		m := jobs[i].allocator().Allocate(0, max)
		b := m.Reallocate(reuseMax / 2)
		if lin(m).mapped == nil {
			t.Skip("linear memories are Go slices on this platform")
		}
		b[len(b)-1] = 1
		given = append(given, lin(m))
	}
	for i := range jobs {
		jobs[i].release()
	}
	if len(spare.free) != 2 || spare.resident != reuseMax || spare.free[0] != given[1] || spare.free[1] != given[2] {
		t.Fatalf("spares %d holding %d bytes; want the two newest, %d bytes", len(spare.free), spare.resident, reuseMax)
	}
	if given[0].mapped != nil {
		t.Error("the dropped memory is still mapped")
	}
	j := jobMemory{spare: &spare}
	if m := j.allocator().Allocate(0, max); lin(m) != given[1] || spare.resident != reuseMax/2 {
		t.Errorf("take: got another memory, or %d bytes left", spare.resident)
	}
}

// TestSpareMemories_Reserved: the spares reserve at most reserveMax of address space together,
// which counts against the worker's RLIMIT_DATA.
func TestSpareMemories_Reserved(t *testing.T) {
	var spare spareMemories
	jobs := make([]jobMemory, 2)
	var given []*linearMemory
	for i := range jobs {
		jobs[i].spare = &spare
		m := jobs[i].allocator().Allocate(0, reserveMax/2+uint64(i+1)<<16) // two sizes, together over the budget
		if lin(m).mapped == nil {
			t.Skip("linear memories are Go slices on this platform")
		}
		m.Reallocate(64 << 10)
		given = append(given, lin(m))
	}
	for i := range jobs {
		jobs[i].release()
	}
	if len(spare.free) != 1 || spare.free[0] != given[1] || spare.reserved != given[1].max || given[0].mapped != nil {
		t.Fatalf("spares %d reserving %d bytes; want only the newest, %d", len(spare.free), spare.reserved, given[1].max)
	}
	if !spare.drop() || len(spare.free) != 0 || spare.reserved != 0 || spare.resident != 0 || given[1].mapped != nil {
		t.Errorf("drop left %d spares, %d reserved, %d resident", len(spare.free), spare.reserved, spare.resident)
	}
}
