package bundle

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/wasmwiz/wasmwiz/schemas"
)

type entry struct {
	name, body, link string
	typ              byte
}

func archive(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.body)), Typeflag: tar.TypeReg, Linkname: e.link}
		if e.typ != 0 {
			h.Typeflag, h.Size = e.typ, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e.body))
	}
	tw.Close()
	return buf.Bytes()
}

func TestScan(t *testing.T) {
	good := archive(t, entry{name: "./", typ: tar.TypeDir}, entry{name: "./a/b.txt", body: "bee"},
		entry{name: "c", body: "sea"}, entry{name: "a/link", link: "../c", typ: tar.TypeSymlink})
	idx, err := ScanBytes(good, Limits{MaxEntries: 10, MaxBytes: 100})
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, e := range idx.Entries {
		paths = append(paths, e.Path)
	}
	if strings.Join(paths, " ") != "a a/b.txt c a/link" || idx.Files != 2 || idx.Bytes != 6 {
		t.Fatalf("entries %v files %d bytes %d", paths, idx.Files, idx.Bytes)
	}
	if e := idx.Entries[1]; string(good[e.Offset:e.Offset+e.Size]) != "bee" {
		t.Fatalf("offset %d does not hold the data", e.Offset)
	}
	// A directory listed after its contents is the directory added for them, with its own mode
	// (as a zip of a map's entries in random order arrives); listed twice, it is a duplicate.
	late := archive(t, entry{name: "sub/deep.txt", body: "deep"}, entry{name: "sub/", typ: tar.TypeDir})
	idx, err = ScanBytes(late, Limits{})
	if err != nil {
		t.Fatalf("directory after its contents: %v", err)
	}
	if len(idx.Entries) != 2 || idx.Entries[0].Path != "sub" || idx.Entries[0].Type != TypeDir || idx.Entries[0].Mode != 0o644 || idx.Entries[1].Path != "sub/deep.txt" {
		t.Fatalf("directory after its contents: %+v", idx.Entries)
	}

	for _, tc := range []struct {
		name string
		tar  []byte
		lim  Limits
		code schemas.Code
		msg  string
	}{
		{"dotdot", archive(t, entry{name: "a/../../etc/passwd", body: "x"}), Limits{}, schemas.CodeInvalid, `".." is not allowed`},
		{"absolute", archive(t, entry{name: "/etc/passwd", body: "x"}), Limits{}, schemas.CodeInvalid, "absolute paths"},
		{"link out", archive(t, entry{name: "a/l", link: "../../x", typ: tar.TypeSymlink}), Limits{}, schemas.CodeInvalid, "outside the bundle"},
		{"link absolute", archive(t, entry{name: "l", link: "/etc/passwd", typ: tar.TypeSymlink}), Limits{}, schemas.CodeInvalid, "absolute path"},
		{"device", archive(t, entry{name: "null", typ: tar.TypeChar}), Limits{}, schemas.CodeInvalid, "device files"},
		{"fifo", archive(t, entry{name: "p", typ: tar.TypeFifo}), Limits{}, schemas.CodeInvalid, "FIFOs"},
		{"hard link", archive(t, entry{name: "h", link: "c", typ: tar.TypeLink}), Limits{}, schemas.CodeInvalid, "hard links"},
		{"duplicate", archive(t, entry{name: "a", body: "1"}, entry{name: "./a", body: "2"}), Limits{}, schemas.CodeInvalid, "twice"},
		{"directory twice", archive(t, entry{name: "d/x", body: "1"}, entry{name: "d/", typ: tar.TypeDir}, entry{name: "d", typ: tar.TypeDir}), Limits{}, schemas.CodeInvalid, "twice"},
		{"file where its contents made a directory", archive(t, entry{name: "d/x", body: "1"}, entry{name: "d", body: "2"}), Limits{}, schemas.CodeInvalid, "twice"},
		{"under a file", archive(t, entry{name: "a", body: "1"}, entry{name: "a/b", body: "2"}), Limits{}, schemas.CodeInvalid, "not a directory"},
		{"under a link", archive(t, entry{name: "d", typ: tar.TypeDir}, entry{name: "l", link: "d", typ: tar.TypeSymlink}, entry{name: "l/x", body: "2"}), Limits{}, schemas.CodeInvalid, "not a directory"},
		{"too many", archive(t, entry{name: "a"}, entry{name: "b"}, entry{name: "c"}), Limits{MaxEntries: 2}, schemas.CodeTooLarge, "more than 2"},
		{"too many bytes", archive(t, entry{name: "a", body: "12345"}), Limits{MaxBytes: 4}, schemas.CodeTooLarge, "more than 4 bytes"},
		{"not a tar", []byte("hello, this is not an archive at all, but it is long enough to be read as one block of a tar header....................................................................................................................................................................................................................................................................................................................................................................................................................................................................................."), Limits{}, schemas.CodeInvalid, "not a valid tar"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ScanBytes(tc.tar, tc.lim)
			var se *schemas.Error
			if !errors.As(err, &se) || se.Code != tc.code || !strings.Contains(se.Message, tc.msg) {
				t.Fatalf("got %v, want %s containing %q", err, tc.code, tc.msg)
			}
		})
	}
}

// TestDecompress_Bomb: a gzip stream of a huge archive stops at the limit.
func TestDecompress_Bomb(t *testing.T) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	tw.WriteHeader(&tar.Header{Name: "zeros", Mode: 0o644, Size: 64 << 20, Typeflag: tar.TypeReg})
	zeros := make([]byte, 1<<20)
	for range 64 {
		tw.Write(zeros)
	}
	tw.Close()
	zw.Close()
	if buf.Len() > 4<<20 {
		t.Fatalf("the bomb is %d bytes compressed", buf.Len())
	}
	r, err := Decompress(bytes.NewReader(buf.Bytes()), 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Scan(r, Limits{}, io.Discard)
	var se *schemas.Error
	if !errors.As(err, &se) || se.Code != schemas.CodeTooLarge {
		t.Fatalf("got %v, want too_large", err)
	}
}

// deepArchive is a bundle of files files in one directory depth levels deep ("a/a/…/a/f0").
func deepArchive(t testing.TB, depth, files int) []byte {
	dir := strings.Repeat("a/", depth)
	var es []entry
	for i := range files {
		es = append(es, entry{name: dir + "f" + strconv.Itoa(i)})
	}
	return archive(t, es...)
}

// TestSecurity_DeepBundlePathQuadratic: checking an entry's parents walked every one of them up
// to the root, each step cleaning the whole path, so a gzip of 15 KB (a directory 1,990 levels
// deep holding 1,000 empty files) took the gateway 13 s of CPU, and 5,000 files outlasted the
// REST body timeout (a 422 "i/o timeout" after 60 s; over NATS nothing bounds it). A directory's
// own parents are checked when it is added, so the walk stops at the nearest known one: each
// entry costs one step beyond the directories it adds.
func TestSecurity_DeepBundlePathQuadratic(t *testing.T) {
	const depth, files = 1990, 300
	idx, err := ScanBytes(deepArchive(t, depth, files), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if len(idx.Entries) != depth+files || idx.Files != files {
		t.Fatalf("%d entries, %d files; want %d, %d", len(idx.Entries), idx.Files, depth+files, files)
	}
	// The first file adds the depth directories (depth steps); every other file looks at one.
	if limit := 2 * len(idx.Entries); idx.walked > limit {
		t.Errorf("checking the parents of %d entries looked at %d directories, want at most %d", len(idx.Entries), idx.walked, limit)
	}
	// The walk still finds a file above an entry however deep it is.
	bad := archive(t, entry{name: "x"}, entry{name: "x/" + strings.Repeat("b/", 500) + "c"})
	if _, err := ScanBytes(bad, Limits{}); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("an entry under a file: %v", err)
	}
	mixed := archive(t, entry{name: strings.Repeat("d/", 100) + "f"}, entry{name: "d/d/g", typ: tar.TypeSymlink, link: "f"},
		entry{name: "d/d/g/" + strings.Repeat("e/", 100) + "h"})
	if _, err := ScanBytes(mixed, Limits{}); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("an entry under a link: %v", err)
	}
}

// failingReader yields data, then fails with err.
type failingReader struct {
	data []byte
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// TestSecurity_BundleUploadReadErrorBlamesArchive: an upload whose body stopped arriving (the
// REST read timeout) or whose connection failed was answered 422 "not a valid tar archive",
// with the gateway's own address in the detail ("read tcp 127.0.0.1:8080->127.0.0.1:37018: i/o
// timeout"). Now it is a timeout, or a bad request, naming no address; tar, tar.gz and zip.
func TestSecurity_BundleUploadReadErrorBlamesArchive(t *testing.T) {
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}
	timeout := &net.OpError{Op: "read", Net: "tcp", Addr: addr, Err: os.ErrDeadlineExceeded}
	reset := &net.OpError{Op: "read", Net: "tcp", Addr: addr, Err: syscall.ECONNRESET}
	full := archive(t, entry{name: "a.txt", body: strings.Repeat("a", 4096)}, entry{name: "b.txt", body: "b"})
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(full)
	zw.Close()
	for _, c := range []struct {
		name   string
		upload []byte
		err    error
		code   schemas.Code
	}{
		{"tar timeout", full[:1024], timeout, schemas.CodeTimeout},
		{"tar reset", full[:1024], reset, schemas.CodeBadRequest},
		{"tar.gz timeout", gz.Bytes()[:20], timeout, schemas.CodeTimeout},
		{"zip reset", []byte("PK\x03\x04 and then nothing"), reset, schemas.CodeBadRequest},
	} {
		r, err := Open(&failingReader{data: c.upload, err: c.err}, 1<<20, 100)
		if err == nil {
			_, err = Scan(r, Limits{}, nil)
			r.Close()
		}
		var se *schemas.Error
		if !errors.As(err, &se) || se.Code != c.code || strings.Contains(se.Message, "127.0.0.1") {
			t.Errorf("%s: %v, want %s naming no address", c.name, err, c.code)
		}
	}
}
