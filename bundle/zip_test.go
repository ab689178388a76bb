package bundle

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"runtime"
	"strings"
	"testing"

	"github.com/wasmwiz/wasmwiz/schemas"
)

type zipEntry struct {
	name string
	body string
	mode fs.FileMode
}

func zipArchive(t testing.TB, entries ...zipEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate}
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		h.SetMode(mode)
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, e.body)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// scanUpload is what the gateway does with an upload: Open, then Scan into a stored copy.
func scanUpload(t testing.TB, upload []byte, limit int64, lim Limits) (*Index, []byte, error) {
	t.Helper()
	r, err := Open(bytes.NewReader(upload), limit, lim.MaxEntries)
	if err != nil {
		return nil, nil, err
	}
	defer r.Close()
	var stored bytes.Buffer
	idx, err := Scan(r, lim, &stored)
	return idx, stored.Bytes(), err
}

// TestOpen_Zip: a zip upload becomes a tar bundle with the same files, directories and links,
// each file's data at its offset in the stored archive.
func TestOpen_Zip(t *testing.T) {
	z := zipArchive(t,
		zipEntry{name: "data/", mode: fs.ModeDir | 0o755},
		zipEntry{name: "data/a.txt", body: "hello"},
		zipEntry{name: "data/big.bin", body: strings.Repeat("x", 100_000)},
		zipEntry{name: "bin/run.sh", body: "#!/bin/sh\n", mode: 0o755},
		zipEntry{name: "link", body: "data/a.txt", mode: fs.ModeSymlink | 0o777},
	)
	idx, stored, err := scanUpload(t, z, 1<<20, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if idx.Files != 3 || idx.Bytes != 5+100_000+10 {
		t.Fatalf("files %d bytes %d", idx.Files, idx.Bytes)
	}
	got := map[string]Entry{}
	for _, e := range idx.Entries {
		got[e.Path] = e
	}
	for p, want := range map[string]string{"data/a.txt": "hello", "data/big.bin": strings.Repeat("x", 100_000), "bin/run.sh": "#!/bin/sh\n"} {
		e, ok := got[p]
		if !ok || e.Type != TypeFile {
			t.Fatalf("%s: %+v", p, e)
		}
		if data := string(stored[e.Offset : e.Offset+e.Size]); data != want {
			t.Fatalf("%s holds %.20q", p, data)
		}
	}
	if e := got["bin/run.sh"]; e.Mode != 0o755 {
		t.Fatalf("bin/run.sh mode %v", e.Mode)
	}
	if e := got["bin"]; e.Type != TypeDir {
		t.Fatalf("implicit directory bin: %+v", e)
	}
	if e := got["link"]; e.Type != TypeSymlink || e.Target != "data/a.txt" {
		t.Fatalf("link: %+v", e)
	}
	// The stored tar is itself a bundle: scanning it again gives the same index.
	again, err := ScanBytes(stored, Limits{})
	if err != nil || len(again.Entries) != len(idx.Entries) {
		t.Fatalf("rescan: %v, %d entries", err, len(again.Entries))
	}
}

// TestOpen_ZipRefused: zip entries get the checks tar entries get, and bombs stop at the limit.
func TestOpen_ZipRefused(t *testing.T) {
	zeros := strings.Repeat("\x00", 4<<20)
	for _, tc := range []struct {
		name  string
		zip   []byte
		limit int64
		lim   Limits
		code  schemas.Code
		msg   string
	}{
		{"dotdot", zipArchive(t, zipEntry{name: "a/../../etc/passwd", body: "x"}), 0, Limits{}, schemas.CodeInvalid, `".." is not allowed`},
		{"absolute", zipArchive(t, zipEntry{name: "/etc/passwd", body: "x"}), 0, Limits{}, schemas.CodeInvalid, "absolute paths"},
		{"backslash", zipArchive(t, zipEntry{name: `..\evil`, body: "x"}), 0, Limits{}, schemas.CodeInvalid, "backslashes"},
		{"link out", zipArchive(t, zipEntry{name: "a/l", body: "../../x", mode: fs.ModeSymlink | 0o777}), 0, Limits{}, schemas.CodeInvalid, "outside the bundle"},
		{"link absolute", zipArchive(t, zipEntry{name: "l", body: "/etc/passwd", mode: fs.ModeSymlink | 0o777}), 0, Limits{}, schemas.CodeInvalid, "absolute path"},
		{"device", zipArchive(t, zipEntry{name: "null", mode: fs.ModeDevice | fs.ModeCharDevice | 0o666}), 0, Limits{}, schemas.CodeInvalid, "device files"},
		{"fifo", zipArchive(t, zipEntry{name: "p", mode: fs.ModeNamedPipe | 0o666}), 0, Limits{}, schemas.CodeInvalid, "FIFOs"},
		{"duplicate", zipArchive(t, zipEntry{name: "a", body: "1"}, zipEntry{name: "./a", body: "2"}), 0, Limits{}, schemas.CodeInvalid, "twice"},
		{"too many", zipArchive(t, zipEntry{name: "a"}, zipEntry{name: "b"}, zipEntry{name: "c"}), 0, Limits{MaxEntries: 2}, schemas.CodeTooLarge, "more than 2"},
		{"bomb", zipArchive(t, zipEntry{name: "zeros", body: zeros}), 1 << 20, Limits{}, schemas.CodeTooLarge, "larger than allowed"},
		{"spool too large", zipArchive(t, zipEntry{name: "a", body: "x"}), 16, Limits{}, schemas.CodeTooLarge, "larger than allowed"},
		{"truncated", zipArchive(t, zipEntry{name: "a", body: "hello"})[:30], 0, Limits{}, schemas.CodeInvalid, "not a valid zip"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "bomb" && len(tc.zip) > 64<<10 {
				t.Fatalf("the bomb is %d bytes compressed", len(tc.zip))
			}
			_, _, err := scanUpload(t, tc.zip, tc.limit, tc.lim)
			var se *schemas.Error
			if !errors.As(err, &se) || se.Code != tc.code || !strings.Contains(se.Message, tc.msg) {
				t.Fatalf("got %v, want %s containing %q", err, tc.code, tc.msg)
			}
		})
	}
}

// TestOpen_ZipLyingSize: an entry whose data is longer than its directory says is refused, not
// truncated silently or read past the declared size.
func TestOpen_ZipLyingSize(t *testing.T) {
	z := zipArchive(t, zipEntry{name: "a", body: strings.Repeat("y", 1000)})
	// Rewrite the declared uncompressed size (central directory and local header) to 10.
	for _, sig := range [][]byte{[]byte("PK\x01\x02"), []byte("PK\x03\x04")} {
		i := bytes.Index(z, sig)
		off := 22 // local header: uncompressed size at 22
		if sig[2] == 1 {
			off = 24 // central directory: at 24
		}
		copy(z[i+off:], []byte{10, 0, 0, 0})
	}
	_, _, err := scanUpload(t, z, 0, Limits{})
	var se *schemas.Error
	if !errors.As(err, &se) || se.Code != schemas.CodeInvalid || !strings.Contains(se.Message, "zip: not a valid zip file") {
		t.Fatalf("got %v, want invalid: zip: not a valid zip file", err)
	}
}

// tinyEntriesZip is a zip whose directory lists n entries named "a", each 46+1 bytes, all
// pointing at one empty local file: the most entries a zip of its size can declare.
func tinyEntriesZip(n int) []byte {
	var b bytes.Buffer
	le := binary.LittleEndian
	b.Write(le.AppendUint32(nil, 0x04034b50))
	b.Write(make([]byte, 22)) // version, flags, method, time, date, crc, sizes: all zero
	b.Write(le.AppendUint16(le.AppendUint16(nil, 1), 0))
	b.WriteString("a")
	dirStart := b.Len()
	entry := le.AppendUint32(nil, 0x02014b50)
	entry = append(entry, 20, 0, 20, 0)
	entry = append(entry, make([]byte, 20)...)            // flags … sizes
	entry = le.AppendUint16(entry, 1)                     // name length
	entry = append(entry, make([]byte, 8)...)             // extra, comment, disk, internal attributes
	entry = le.AppendUint32(le.AppendUint32(entry, 0), 0) // external attributes, local header at 0
	entry = append(entry, 'a')
	b.Write(bytes.Repeat(entry, n))
	end := le.AppendUint32(nil, 0x06054b50)
	end = le.AppendUint16(le.AppendUint16(end, 0), 0)
	end = le.AppendUint16(le.AppendUint16(end, uint16(n)), uint16(n))
	end = le.AppendUint32(le.AppendUint32(end, uint32(b.Len()-dirStart)), uint32(dirStart))
	b.Write(le.AppendUint16(end, 0))
	return b.Bytes()
}

// TestSecurity_ZipDirectoryEntriesUnbounded: archive/zip reads a zip's whole directory into
// memory (~256 bytes an entry) before Scan could count the entries against the tier's
// bundle_files, so an 18 MB zip from a free tenant (390,000 entries of 47 bytes) took ~100 MB
// of the gateway's memory, and a pro tenant's largest archive (~460 MB) ~2.6 GB, only to be
// refused afterwards. Now the directory's entries are counted as archive/zip reads them and the
// read stops past the limit: 413 too_large, with memory bounded by the limit.
func TestSecurity_ZipDirectoryEntriesUnbounded(t *testing.T) {
	const limitEntries = 1000
	z := tinyEntriesZip(200_000)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r, err := Open(bytes.NewReader(z), int64(len(z))+1, limitEntries)
	runtime.ReadMemStats(&after)
	if err == nil {
		r.Close()
	}
	var se *schemas.Error
	if !errors.As(err, &se) || se.Code != schemas.CodeTooLarge {
		t.Fatalf("a zip of 200,000 entries with a limit of %d: %v, want too_large", limitEntries, err)
	}
	// The zip itself is spooled through a 32 KiB copy buffer; its entries must not be held.
	if got := after.TotalAlloc - before.TotalAlloc; got > 4<<20 {
		t.Errorf("opening it allocated %d bytes, want at most 4 MiB (the entries are ~%d MB)", got, 200_000*256>>20)
	}
	// Entries' data is not counted: a zip holding a zip (whose directory signatures are
	// data here) opens under a limit far below the signatures it carries.
	inner := tinyEntriesZip(5000)
	outer := zipArchive(t, zipEntry{name: "inner.zip", body: string(inner)})
	idx, _, err := scanUpload(t, outer, 1<<30, Limits{MaxEntries: 10})
	if err != nil || idx.Files != 1 {
		t.Fatalf("a zip inside a zip: %v", err)
	}
}
