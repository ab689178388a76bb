package wasmmodule

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/tetratelabs/wabin/leb128"
)

// bigModule is a valid WASI command of about size bytes: a _start whose body is bodyBytes of
// nops, and one data segment holding the rest.
func bigModule(size, bodyBytes int) []byte {
	var out bytes.Buffer
	out.WriteString("\x00asm\x01\x00\x00\x00")
	sec := func(id byte, body []byte) {
		out.WriteByte(id)
		out.Write(leb128.EncodeUint32(uint32(len(body))))
		out.Write(body)
	}
	sec(secType, []byte{1, 0x60, 0, 0})
	sec(secFunction, []byte{1, 0})
	sec(secMemory, []byte{1, 0, 0x80, 0x04}) // 512 pages: 32 MiB
	sec(secExport, []byte{2, 6, '_', 's', 't', 'a', 'r', 't', 0, 0, 6, 'm', 'e', 'm', 'o', 'r', 'y', 2, 0})
	body := append([]byte{0}, bytes.Repeat([]byte{0x01}, bodyBytes-2)...) // no locals, nops
	body = append(body, 0x0b)
	code := append([]byte{1}, leb128.EncodeUint32(uint32(len(body)))...)
	sec(secCode, append(code, body...))
	data := max(size-out.Len()-32, 0)
	seg := append([]byte{1, 0, 0x41, 0, 0x0b}, leb128.EncodeUint32(uint32(data))...)
	sec(secData, append(seg, make([]byte, data)...))
	return out.Bytes()
}

// TestInspectReader_Streams shows that a large upload is inspected from its spool file in
// little memory: function bodies and data are skipped, not held (issue 12, hole 6).
func TestInspectReader_Streams(t *testing.T) {
	const size = 40 << 20
	wasm := bigModule(size, 4<<20)
	path := filepath.Join(t.TempDir(), "m.wasm")
	if err := os.WriteFile(path, wasm, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	before := allocatedBytes()
	info, err := InspectReader(f, int64(len(wasm)))
	allocated := allocatedBytes() - before
	if err != nil {
		t.Fatal(err)
	}
	want, err := Inspect(wasm)
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != int64(len(wasm)) || info.LargestBody != 4<<20 || info.DataSegments != 1 || !info.IsCommand || !info.HasMemory {
		t.Fatalf("info %+v", info)
	}
	if info.LargestBody != want.LargestBody || info.DataSegments != want.DataSegments || info.Size != want.Size {
		t.Fatalf("InspectReader %+v, Inspect %+v", info, want)
	}
	t.Logf("inspected a %d MiB module from a file with %d KiB allocated", len(wasm)>>20, allocated>>10)
	if allocated > 1<<20 {
		t.Fatalf("InspectReader allocated %d bytes for a %d-byte module: it must not hold the module", allocated, len(wasm))
	}
}
