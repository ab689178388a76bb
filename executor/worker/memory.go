package worker

import "github.com/tetratelabs/wazero/experimental"

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
// memory; release unmaps it after the call has returned, when no guest code runs.
type jobMemory struct {
	mems []*linearMemory
}

func (j *jobMemory) allocator() experimental.MemoryAllocator {
	return experimental.MemoryAllocatorFunc(func(cap, max uint64) experimental.LinearMemory {
		m := newLinearMemory(max)
		j.mems = append(j.mems, m)
		return m
	})
}

// release unmaps every memory of the job. Call it only once no guest code of the job can run.
func (j *jobMemory) release() {
	for _, m := range j.mems {
		m.unmap()
	}
	j.mems = j.mems[:0]
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
