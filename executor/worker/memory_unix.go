//go:build unix

package worker

import "syscall"

func newLinearMemory(max uint64) *linearMemory {
	m := &linearMemory{max: max}
	if max == 0 {
		return m
	}
	// MAP_NORESERVE: reserve address space only; pages are committed (zeroed) when touched.
	b, err := syscall.Mmap(-1, 0, int(max), syscall.PROT_READ|syscall.PROT_WRITE,
		syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_NORESERVE)
	if err == nil {
		m.mapped = b
	}
	return m
}

func (m *linearMemory) unmap() {
	if m.mapped != nil {
		_ = syscall.Munmap(m.mapped)
		m.mapped, m.buf = nil, nil
	}
}
