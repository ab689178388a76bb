package worker

import (
	"runtime/metrics"
	"sync"
	"sync/atomic"

	"github.com/tetratelabs/wazero/experimental"
)

// memoryUsage is what a running guest makes its worker hold: its linear memories (exactly, as
// they grow) and the Go heap grown since the run started — tables (wazero keeps them as Go
// slices, outside WithMemoryLimitPages), the instance's structures, its stack, its output so
// far, and its environment. The heap is read as the bytes of its objects, live or not yet
// swept: a guest growing a table leaves the old copies behind until the collector runs (which
// may be never, while it runs: see collectAfter), and they are host memory it made the worker
// hold; a table grown a million entries at a time holds two to three times its size. Counting the heap, not resident pages, also
// counts memory allocated and not yet touched (a table grown and never filled), and does not
// count what the worker keeps between guests (compiled code, zeroed spare memories).
//
// The guest's scratch files are Go heap too, and the heap's growth can miss them: the collector
// may free, during the run, garbage that was there before it (a compile's, a previous run's),
// which offsets what the run grew (a Python guest writing a 16 MiB file grew the heap by nothing
// measurable). So the heap is counted as at least the scratch space in use (scratch).
type memoryUsage struct {
	linear  *atomic.Int64
	scratch func() int64 // the scratch space in use; nil for none. Set before reports start.
	heap0   int64
	peak    atomic.Int64
}

func newMemoryUsage(linear *atomic.Int64) *memoryUsage {
	return &memoryUsage{linear: linear, heap0: heapBytes()}
}

// MemoryHeadroom is how far past its linear memory limit (RunJob.MemoryPages) what a guest holds
// may go: its instance's structures, its stack and its output, which a guest using all of its
// linear memory needs too. (A deep recursion alone holds up to ~150 MB of wazero stack.)
const MemoryHeadroom = 32 << 20

// MemoryLimit is the most a guest with a linear memory limit of pages may hold.
func MemoryLimit(pages uint32) int64 { return int64(pages)*65536 + MemoryHeadroom }

// now is what the guest holds now; it also raises the peak.
func (u *memoryUsage) now() int64 {
	heap := u.heapGrowth()
	if u.scratch != nil {
		heap = max(heap, u.scratch())
	}
	n := u.linear.Load() + heap
	for {
		p := u.peak.Load()
		if n <= p || u.peak.CompareAndSwap(p, n) {
			return n
		}
	}
}

// peakNow is the most the guest has held, looking once more now.
func (u *memoryUsage) peakNow() int64 {
	u.now()
	return u.peak.Load()
}

func (u *memoryUsage) heapGrowth() int64 { return max(0, heapBytes()-u.heap0) }

// heapBytes is the size of the worker's Go heap objects (runtime/metrics; about a microsecond).
func heapBytes() int64 {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(sample)
	if sample[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(sample[0].Value.Uint64())
}

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
// several CPUs, a TLB shootdown on each of them; and every page the next guest touches in a fresh
// mapping is a page fault, in which the kernel zeroes it. On a virtual machine a fault can cost
// 10 µs or more (12 µs per 4 KiB page measured on the 2-vCPU CI machines): a Go guest touching
// 4 MiB paid ~12 ms in faults, while zeroing the same 4 MiB in place takes ~0.15 ms. So a memory
// of up to reuseMax is zeroed and kept for the next job (spareMemories), within a budget of
// resident bytes; a larger one is unmapped.
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
			if m.mapped == nil && max > 0 && j.spare.drop() {
				m = newLinearMemory(max) // the spares' reservations were in the way
			}
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
	// reuseMax is the largest memory zeroed for reuse, and the most resident memory the spares
	// hold together: an idle worker keeps at most this much of its guests' memory (zeroed).
	reuseMax = 32 << 20
	// sparesMax bounds the memories kept, and reserveMax the address space they reserve
	// together: reservations count against the worker's RLIMIT_DATA, and spares of other sizes
	// must not leave the next guest too little of it.
	sparesMax  = 4
	reserveMax = 512 << 20
)

// spareMemories holds zeroed mappings for the next jobs. Another tenant's guest may get one,
// so give zeroes everything the last guest could reach: the memory's whole current length (a
// guest cannot shrink a memory, and wazero checks every access against that length).
type spareMemories struct {
	mu       sync.Mutex
	free     []*linearMemory
	resident int    // the free memories' resident bytes, summed
	reserved uint64 // the free memories' reservations (max), summed
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
			s.resident -= m.resident
			s.reserved -= m.max
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
	// The pages past len(m.buf) that an earlier guest touched were zeroed when it gave the
	// memory back, and this guest could not reach them.
	clear(m.mapped[:len(m.buf)])
	m.resident = max(m.resident, len(m.buf))
	m.buf = m.mapped[:0:0]
	s.mu.Lock()
	defer s.mu.Unlock()
	s.free = append(s.free, m)
	s.resident += m.resident
	s.reserved += m.max
	for len(s.free) > sparesMax || s.resident > reuseMax || s.reserved > reserveMax {
		s.dropOldest()
	}
}

// dropOldest unmaps the spare given back longest ago. Call with s.mu held.
func (s *spareMemories) dropOldest() {
	m := s.free[0]
	s.resident -= m.resident
	s.reserved -= m.max
	m.unmap()
	s.free = append(s.free[:0], s.free[1:]...)
}

// drop unmaps every spare: a new mapping failed, perhaps for want of the address space they
// hold.
func (s *spareMemories) drop() bool {
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	had := len(s.free) > 0
	for len(s.free) > 0 {
		s.dropOldest()
	}
	return had
}

// linearMemory is a reserved mapping (or, where mapping fails, a Go slice) backing one memory.
type linearMemory struct {
	mapped   []byte // the whole reservation; nil when backed by a Go slice
	buf      []byte
	max      uint64
	resident int // the most of mapped any guest has touched (all zero while spare)
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
