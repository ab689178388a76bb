package worker

import (
	"sync"
	"sync/atomic"

	"github.com/tetratelabs/wazero/experimental"
)

// jobMemory allocates the linear memories of one job's instance outside the Go heap (where
// the platform allows) and releases them when the job is over.
//
// Why: wazero's default linear memory is a Go slice that grows by copying (append), so a guest
// growing to N bytes briefly holds the old and the new copy and leaves garbage for the GC —
// about 3N of heap for an N-byte memory, which a memory backstop (RLIMIT_DATA) would mistake for abuse.
// A mapping of the maximum size, reserved without committing, grows in place: resident memory
// is what the guest touched, and the address space used is the limit itself.
//
// wazero calls Free when the module closes, and a module closes at its deadline from another
// goroutine while the guest may still be running until its next check. So Free only marks the
// memory; release gives it back after the call has returned, when no guest code runs.
//
// Mapping and unmapping per job costs two system calls and, for a process whose threads ran on
// several CPUs, a TLB shootdown on each of them. So a memory that stayed small is zeroed and kept
// for the next job (spareMemories); a large one is unmapped, and the kernel zeroes its pages.
type jobMemory struct {
	spare *spareMemories
	mems  []*linearMemory
	bytes atomic.Int64 // the job's linear memories' sizes, summed; read while the guest runs
}

func (j *jobMemory) allocator() experimental.MemoryAllocator {
	return experimental.MemoryAllocatorFunc(func(cap, max uint64) experimental.LinearMemory {
		m := j.spare.take(max)
		if m == nil {
			m = newLinearMemory(max)
		}
		j.mems = append(j.mems, m)
		return &countedMemory{linearMemory: m, total: &j.bytes}
	})
}

// countedMemory keeps its job's total up to date as the guest grows it.
type countedMemory struct {
	*linearMemory
	total *atomic.Int64
}

func (c *countedMemory) Reallocate(size uint64) []byte {
	before := len(c.buf)
	b := c.linearMemory.Reallocate(size)
	if b != nil {
		c.total.Add(int64(len(b) - before))
	}
	return b
}

// release gives back every memory of the job. Call it only once no guest code of the job can
// run.
func (j *jobMemory) release() {
	for _, m := range j.mems {
		j.spare.give(m)
	}
	j.mems = j.mems[:0]
}

const (
	// reuseMax is the largest memory zeroed for reuse; zeroing more costs about what a fresh
	// mapping does.
	reuseMax = 1 << 20
	// sparesMax bounds the memories kept, and with them the address space reserved while idle.
	sparesMax = 4
)

// spareMemories holds zeroed mappings for the next jobs. Another tenant's guest may get one,
// so give zeroes everything the last guest could reach: the memory's whole current length (a
// guest cannot shrink a memory, and wazero checks every access against that length).
type spareMemories struct {
	mu   sync.Mutex
	free []*linearMemory
}

func (s *spareMemories) take(max uint64) *linearMemory {
	if s == nil || max == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, m := range s.free {
		if m.max == max {
			s.free = append(s.free[:i], s.free[i+1:]...)
			return m
		}
	}
	return nil
}

func (s *spareMemories) give(m *linearMemory) {
	if s == nil || m.mapped == nil || len(m.buf) > reuseMax {
		m.unmap()
		return
	}
	clear(m.mapped[:len(m.buf)])
	m.buf = m.mapped[:0:0]
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.free) >= sparesMax {
		// Keep the most recent: drop the oldest.
		s.free[0].unmap()
		s.free = append(s.free[:0], s.free[1:]...)
	}
	s.free = append(s.free, m)
}

// linearMemory is a reserved mapping (or, where mapping fails, a Go slice) backing one memory.
type linearMemory struct {
	mapped []byte // the whole reservation; nil when backed by a Go slice
	buf    []byte
	max    uint64
}

func (m *linearMemory) Reallocate(size uint64) []byte {
	if size > m.max {
		return nil
	}
	if m.mapped != nil {
		m.buf = m.mapped[:size:size]
		return m.buf
	}
	if size <= uint64(cap(m.buf)) {
		m.buf = m.buf[:size]
		return m.buf
	}
	nb := make([]byte, size) // zeroed, as new pages must be
	copy(nb, m.buf)
	m.buf = nb
	return m.buf
}

func (m *linearMemory) Free() {} // see jobMemory
