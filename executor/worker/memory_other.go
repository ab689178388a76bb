//go:build !unix

package worker

func newLinearMemory(max uint64) *linearMemory { return &linearMemory{max: max} }

func (m *linearMemory) unmap() {}
