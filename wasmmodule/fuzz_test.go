package wasmmodule

import (
	"errors"
	"os"
	"runtime/metrics"
	"slices"
	"strings"
	"testing"

	"github.com/tetratelabs/wabin/binary"

	"github.com/wasmwiz/wasmwiz/internal/fixtures"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// allocatedBytes is the process's cumulative heap allocation.
func allocatedBytes() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// maxAlloc bounds what Inspect may allocate for an input of n bytes: linear in the input, with a
// factor that covers wabin's structures (a 3-byte function type becomes a ~100-byte struct).
func maxAlloc(n int) uint64 { return 256*uint64(n) + 1<<20 }

// FuzzInspect checks that Inspect and Check never panic, that their errors are the ones they
// document, that what Inspect reports is consistent, and that a small input cannot make the
// decoder allocate much more than its own size (the guard's job).
func FuzzInspect(f *testing.F) {
	for _, name := range fixtures.Names() {
		f.Add(fixtures.Wasm(name))
	}
	kitchen, err := os.ReadFile("testdata/kitchen.wasm")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(kitchen)
	f.Add([]byte("\x00asm\x0d\x00\x01\x00"))
	f.Add([]byte("\x00asm\x01\x00\x00\x00\x01\x08\x01\x60\xff\xff\xff\xff\x0f\x00"))
	f.Add([]byte("\x00asm\x01\x00\x00\x00\x01\x04\x01\x60\x00\x00\x03\x02\x01\x00\x0a\x0a\x01\x08\x01\xff\xff\xff\xff\x0f\x7f\x0b"))
	policy := PolicyFor(schemas.DefaultTiers()[schemas.TierFree])

	f.Fuzz(func(t *testing.T, b []byte) {
		before := allocatedBytes()
		info, err := Inspect(b)
		if got := allocatedBytes() - before; got > maxAlloc(len(b)) {
			t.Fatalf("Inspect of %d bytes allocated %d bytes", len(b), got)
		}
		if err != nil {
			var se *schemas.Error
			if info != nil || !errors.As(err, &se) || se.Code != schemas.CodeInvalidModule || se.Message == "" {
				t.Fatalf("Inspect: info %v, error %#v", info, err)
			}
			return
		}
		if info.Size != int64(len(b)) || !slices.IsSorted(info.Imports) || !slices.IsSorted(info.Exports) ||
			len(slices.Compact(slices.Clone(info.Imports))) != len(info.Imports) ||
			info.Memories > 1 || info.MemoryMinPages > maxMemoryPages ||
			(info.HasMemoryMax && info.MemoryMaxPages < info.MemoryMinPages) ||
			(info.IsCommand && !info.HasStart) || info.CustomSectionBytes > int64(len(b)) {
			t.Fatalf("inconsistent info %+v", info)
		}
		if err := Check(info, policy); err != nil {
			var se *schemas.Error
			if !errors.As(err, &se) || (se.Code != schemas.CodeInvalidModule && se.Code != schemas.CodeTooLarge) || se.Message == "" {
				t.Fatalf("Check: %#v", err)
			}
		}
	})
}

func BenchmarkInspect(b *testing.B) {
	wasm := fixtures.Probe(b)
	b.SetBytes(int64(len(wasm)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Inspect(wasm); err != nil {
			b.Fatal(err)
		}
	}
}

// TestGuard_Allocation shows why the guard exists and that FuzzInspect's allocation check can
// fail: a 17-byte module declaring 2^24 parameters makes wabin alone allocate 32 MiB (two 16 MiB
// slices), while Inspect refuses it within the bound.
func TestGuard_Allocation(t *testing.T) {
	b := []byte("\x00asm\x01\x00\x00\x00\x01\x07\x01\x60\x80\x80\x80\x08\x00")
	before := allocatedBytes()
	if _, err := binary.DecodeModule(b, features); err == nil {
		t.Fatal("wabin decoded a truncated type section")
	}
	if got := allocatedBytes() - before; got <= maxAlloc(len(b)) {
		t.Fatalf("wabin allocated only %d bytes; this test no longer shows anything", got)
	}

	before = allocatedBytes()
	_, err := Inspect(b)
	if got := allocatedBytes() - before; got > maxAlloc(len(b)) {
		t.Fatalf("Inspect allocated %d bytes", got)
	}
	if err == nil || !strings.Contains(err.Error(), "16777216 parameters cannot fit in the 1 bytes left") {
		t.Fatalf("Inspect: %v", err)
	}
}
