package guestfs

import (
	"archive/tar"
	"bytes"
	"io/fs"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"

	"github.com/wasmwiz/wasmwiz/bundle"
)

func mustOpen(t *testing.T, f *FS, p string, flag experimentalsys.Oflag) experimentalsys.File {
	t.Helper()
	h, errno := f.OpenFile(p, flag, 0o644)
	if errno != 0 {
		t.Fatalf("open %s: %v", p, errno)
	}
	return h
}

func names(t *testing.T, f *FS, p string) string {
	t.Helper()
	d := mustOpen(t, f, p, experimentalsys.O_RDONLY|experimentalsys.O_DIRECTORY)
	defer d.Close()
	ents, errno := d.Readdir(-1)
	if errno != 0 {
		t.Fatal(errno)
	}
	var s []string
	for _, e := range ents {
		s = append(s, e.Name)
	}
	return strings.Join(s, " ")
}

// TestFS_Tree: the fixed tree, /dev wired to the streams, links resolved inside the tree only.
func TestFS_Tree(t *testing.T) {
	var out bytes.Buffer
	f := New(Config{ScratchMax: 1 << 20, Stdin: strings.NewReader("in"), Stdout: &out})
	if got := names(t, f, "."); got != "dev tmp" {
		t.Fatalf("root holds %q", got)
	}
	if got := names(t, f, "dev"); got != "null random stderr stdin stdout urandom" {
		t.Fatalf("/dev holds %q", got)
	}
	h := mustOpen(t, f, "dev/stdout", experimentalsys.O_WRONLY|experimentalsys.O_TRUNC)
	if n, errno := h.Write([]byte("to stdout")); n != 9 || errno != 0 || out.String() != "to stdout" {
		t.Fatalf("write /dev/stdout: %d %v %q", n, errno, out.String())
	}
	buf := make([]byte, 8)
	if n, _ := mustOpen(t, f, "dev/stdin", experimentalsys.O_RDONLY).Read(buf); string(buf[:n]) != "in" {
		t.Fatalf("read /dev/stdin: %q", buf[:n])
	}
	if errno := f.Unlink("dev/null"); errno != experimentalsys.EROFS {
		t.Fatalf("unlink /dev/null: %v", errno)
	}

	// A link that climbs out names a path of this tree ("/etc/passwd" here), never the host's.
	if errno := f.Symlink("../../../../etc/passwd", "tmp/escape"); errno != 0 {
		t.Fatal(errno)
	}
	if _, errno := f.OpenFile("tmp/escape", experimentalsys.O_RDONLY, 0); errno != experimentalsys.ENOENT {
		t.Fatalf("open of a link out: %v", errno)
	}
	if errno := f.Mkdir("etc", 0o755); errno != 0 {
		t.Fatal(errno)
	}
	h = mustOpen(t, f, "etc/passwd", experimentalsys.O_WRONLY|experimentalsys.O_CREAT)
	h.Write([]byte("guest's own"))
	h.Close()
	if n, _ := mustOpen(t, f, "tmp/escape", experimentalsys.O_RDONLY).Read(buf); string(buf[:n]) != "guest's " {
		t.Fatalf("link resolved to %q", buf[:n])
	}
	// A loop ends with ELOOP.
	f.Symlink("b", "tmp/a")
	f.Symlink("a", "tmp/b")
	if _, errno := f.Stat("tmp/a"); errno != experimentalsys.ELOOP {
		t.Fatalf("loop: %v", errno)
	}
}

// TestFS_DevRandom: /dev/urandom and /dev/random read the execution's random source, as many
// bytes as asked, so that a program seeding itself from them (SQLite) gets what random_get
// gives: new bytes every run, the same ones for the same seed.
func TestFS_DevRandom(t *testing.T) {
	src := bytes.Repeat([]byte("0123456789abcdef"), 4)
	f := New(Config{ScratchMax: 1 << 20, Random: bytes.NewReader(src)})
	var got []byte
	for _, p := range []string{"dev/urandom", "dev/random"} {
		h := mustOpen(t, f, p, experimentalsys.O_RDONLY)
		buf := make([]byte, 24)
		if n, errno := h.Read(buf); n != len(buf) || errno != 0 {
			t.Fatalf("read %s: %d %v", p, n, errno)
		}
		if st, errno := h.Stat(); errno != 0 || st.Mode&fs.ModeCharDevice == 0 {
			t.Errorf("stat %s: mode %v %v, want a character device", p, st.Mode, errno)
		}
		h.Close()
		got = append(got, buf...)
	}
	if !bytes.Equal(got, src[:48]) {
		t.Errorf("read %q, want the random source's first 48 bytes", got)
	}
	if errno := f.Unlink("dev/urandom"); errno != experimentalsys.EROFS {
		t.Errorf("unlink /dev/urandom: %v", errno)
	}
	// Without a source it is crypto/rand's: two reads differ.
	f = New(Config{ScratchMax: 1 << 20})
	a, b := make([]byte, 16), make([]byte, 16)
	mustOpen(t, f, "dev/urandom", experimentalsys.O_RDONLY).Read(a)
	mustOpen(t, f, "dev/urandom", experimentalsys.O_RDONLY).Read(b)
	if bytes.Equal(a, b) {
		t.Errorf("two reads of /dev/urandom gave %x", a)
	}
}

// TestFS_ScratchCap: data, inodes and names all count; a million empty files do not fit in a
// small budget; unlinking gives the space back.
func TestFS_ScratchCap(t *testing.T) {
	f := New(Config{ScratchMax: 1 << 20})
	made := 0
	for ; made < 1_000_000; made++ {
		h, errno := f.OpenFile("tmp/f"+strings.Repeat("x", 10)+string(rune('a'+made%26))+itoa(made), experimentalsys.O_WRONLY|experimentalsys.O_CREAT, 0o644)
		if errno != 0 {
			if errno != experimentalsys.EIO || !f.Full() {
				t.Fatalf("file %d: %v", made, errno)
			}
			break
		}
		h.Close()
	}
	if made == 0 || made > (1<<20)/nodeCost {
		t.Fatalf("made %d empty files in 1 MiB", made)
	}
	if f.Used() > f.ScratchMax() || f.Peak() > f.ScratchMax() {
		t.Fatalf("used %d peak %d over %d", f.Used(), f.Peak(), f.ScratchMax())
	}

	g := New(Config{ScratchMax: 1 << 20})
	h := mustOpen(t, g, "tmp/data", experimentalsys.O_RDWR|experimentalsys.O_CREAT)
	if _, errno := h.Pwrite([]byte("x"), 2<<20); errno != experimentalsys.EIO {
		t.Fatalf("write past the cap: %v", errno)
	}
	if errno := h.Truncate(1 << 30); errno != experimentalsys.EIO {
		t.Fatalf("truncate past the cap: %v", errno)
	}
	if _, errno := h.Write(make([]byte, 512<<10)); errno != 0 {
		t.Fatal(errno)
	}
	h.Close()
	used := g.Used()
	if errno := g.Link("tmp/data", "tmp/data2"); errno != 0 {
		t.Fatal(errno)
	}
	g.Unlink("tmp/data")
	if want := used + int64(len("data2")-len("data")); g.Used() != want { // the names differ
		t.Fatalf("after unlinking one of two names: used %d, want %d", g.Used(), want)
	}
	g.Unlink("tmp/data2")
	if g.Used() != 0 {
		t.Fatalf("after unlinking everything: used %d", g.Used())
	}
}

func itoa(i int) string {
	var b [20]byte
	n := len(b)
	for {
		n--
		b[n] = byte('0' + i%10)
		if i /= 10; i == 0 {
			return string(b[n:])
		}
	}
}

// TestFS_Bundle: a mounted bundle is read in place and cannot be changed.
func TestFS_Bundle(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range []struct{ name, body string }{{"lib/a.txt", "alpha"}, {"lib/b.txt", "beta"}} {
		tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.body)), Typeflag: tar.TypeReg})
		tw.Write([]byte(e.body))
	}
	tw.Close()
	archive := bytes.NewReader(buf.Bytes())
	idx, err := bundle.Scan(archive, bundle.Limits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewBundle(idx, archive, 1)
	if err != nil {
		t.Fatal(err)
	}
	f := New(Config{})
	if err := f.Mount("/share/data", b); err != nil {
		t.Fatal(err)
	}
	if err := f.Mount("/share/data", b); err == nil {
		t.Fatal("mounted twice at one path")
	}
	if got := names(t, f, "share/data/lib"); got != "a.txt b.txt" {
		t.Fatalf("bundle holds %q", got)
	}
	p := make([]byte, 16)
	h := mustOpen(t, f, "share/data/lib/b.txt", experimentalsys.O_RDONLY)
	if n, _ := h.Read(p); string(p[:n]) != "beta" {
		t.Fatalf("read %q", p[:n])
	}
	for what, errno := range map[string]experimentalsys.Errno{
		"unlink": f.Unlink("share/data/lib/a.txt"),
		"mkdir":  f.Mkdir("share/data/new", 0o755),
		"rename": f.Rename("share/data/lib/a.txt", "tmp/a.txt"),
		"rmdir":  f.Rmdir("share/data"),
		"chmod":  f.Chmod("share/data/lib/a.txt", fs.ModePerm),
	} {
		if errno != experimentalsys.EROFS {
			t.Errorf("%s in a bundle: %v", what, errno)
		}
	}
	if _, errno := f.OpenFile("share/data/lib/a.txt", experimentalsys.O_WRONLY, 0); errno != experimentalsys.EROFS {
		t.Errorf("open for writing: %v", errno)
	}
	if _, errno := f.OpenFile("share/data/lib/c.txt", experimentalsys.O_WRONLY|experimentalsys.O_CREAT, 0o644); errno != experimentalsys.EROFS {
		t.Errorf("create: %v", errno)
	}
	outs, _ := f.Collect([]string{"/share/data/*/*.txt"}, 6, 10)
	if len(outs) != 2 || string(outs[0].Data) != "alpha" || outs[0].Truncated || string(outs[1].Data) != "b" || !outs[1].Truncated {
		t.Fatalf("collect: %+v", outs)
	}
}

// TestFS_CopyInAndSub: a writable copy of a bundle is charged to scratch and changes only the
// copy; Sub sees the same nodes under another root (a preopen under its own name).
func TestFS_CopyInAndSub(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "a.txt", Mode: 0o444, Size: 5, Typeflag: tar.TypeReg})
	tw.Write([]byte("alpha"))
	tw.Close()
	archive := bytes.NewReader(buf.Bytes())
	idx, err := bundle.Scan(archive, bundle.Limits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewBundle(idx, archive, 1)
	f := New(Config{ScratchMax: 1 << 20})
	if err := f.CopyIn("/fs-tests.dir", b); err != nil {
		t.Fatal(err)
	}
	if f.Used() < 5+nodeCost {
		t.Fatalf("copy charged %d bytes", f.Used())
	}
	sub := f.Sub("fs-tests.dir")
	h, errno := sub.OpenFile("a.txt", experimentalsys.O_WRONLY|experimentalsys.O_TRUNC, 0)
	if errno != 0 {
		t.Fatalf("open the copy for writing: %v", errno)
	}
	h.Write([]byte("changed"))
	h.Close()
	p := make([]byte, 16)
	if n, _ := mustOpen(t, f, "fs-tests.dir/a.txt", experimentalsys.O_RDONLY).Read(p); string(p[:n]) != "changed" {
		t.Fatalf("through the root: %q", p[:n])
	}
	if n, _ := b.root.children["a.txt"].src.ReadAt(p[:5], b.root.children["a.txt"].off); string(p[:n]) != "alpha" {
		t.Fatalf("the bundle itself changed: %q", p[:n])
	}
	small := New(Config{ScratchMax: 64})
	if err := small.CopyIn("/d", b); err == nil {
		t.Fatal("a copy larger than the scratch space fit")
	}
}

// TestSecurity_DeepBundlePathQuadratic: placing each entry of a bundle walked its directory
// from the root (splitting the path), so a bundle with a directory 1,990 levels deep cost a
// worker depth × entries to mount. Now each entry is placed with one lookup of its directory.
// Counted in bytes allocated: the walk's split allocated 16 bytes per level for every entry.
func TestSecurity_DeepBundlePathQuadratic(t *testing.T) {
	const depth, files = 1990, 2000
	idx := &bundle.Index{}
	dir := ""
	for i := range depth {
		if i > 0 {
			dir += "/"
		}
		dir += "a"
		idx.Entries = append(idx.Entries, bundle.Entry{Path: dir, Type: bundle.TypeDir, Mode: 0o755})
	}
	for i := range files {
		idx.Entries = append(idx.Entries, bundle.Entry{Path: dir + "/f" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + strings.Repeat("0", i/26), Type: bundle.TypeFile})
		idx.Files++
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b, err := NewBundle(idx, bytes.NewReader(nil), 1)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	perEntry := (after.TotalAlloc - before.TotalAlloc) / uint64(len(idx.Entries))
	if perEntry > 2048 {
		t.Errorf("building a tree %d levels deep allocated %d bytes per entry, want at most 2048", depth, perEntry)
	}
	f := New(Config{})
	if err := f.Mount("/m", b); err != nil {
		t.Fatal(err)
	}
	if _, errno := f.Stat("m/" + idx.Entries[len(idx.Entries)-1].Path); errno != 0 {
		t.Errorf("the deepest file: %v", errno)
	}
}

// TestSecurity_OutputPathsUnbounded: wildcards match names of up to 255 bytes, so a 205-byte
// pattern ("/*" 102 times) returned 1,000 files whose paths were 25.6 KB each, a 25 MB result
// that no NATS message could carry: storing it failed, the execution was delivered (and run)
// again until it went to the dead letters, and stayed "running" meanwhile. Output paths are
// bounded like every path a request names.
func TestSecurity_OutputPathsUnbounded(t *testing.T) {
	f := New(Config{ScratchMax: 64 << 20})
	name := strings.Repeat("d", 255)
	deep := "/o" + strings.Repeat("/"+name, 100)
	for i := range 50 {
		if err := f.AddFile(deep+"/"+strings.Repeat("f", 200)+string(rune('a'+i%26))+strings.Repeat("g", i/26), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.AddFile("/o/"+name+"/"+name+"/short", []byte("y")); err != nil {
		t.Fatal(err)
	}
	outs, _ := f.Collect([]string{strings.Repeat("/*", 102), "/o/*/*/*"}, 1<<20, 1000)
	if len(outs) != 1 || outs[0].Path != "/o/"+name+"/"+name+"/short" {
		paths := 0
		for _, o := range outs {
			paths += len(o.Path)
		}
		t.Fatalf("%d outputs with %d bytes of paths, want only the one whose path is at most %d bytes", len(outs), paths, 1024)
	}
}

// TestFS_FileGrowthAllocates: a file written in pieces costs about its size in allocations. It
// was one slice grown by doubling, so 64 MiB written 1 MiB at a time allocated 127 MiB, and the
// copies left behind counted in the guest's memory until the collector ran (see fileData).
func TestFS_FileGrowthAllocates(t *testing.T) {
	for _, piece := range []int{1 << 20, 8 << 10, 1000} {
		f := New(Config{ScratchMax: 128 << 20})
		h := mustOpen(t, f, "tmp/big", experimentalsys.O_RDWR|experimentalsys.O_CREAT)
		block := bytes.Repeat([]byte("x"), piece)
		const size = 64 << 20
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for written := 0; written < size; written += piece {
			if _, errno := h.Write(block[:min(piece, size-written)]); errno != 0 {
				t.Fatal(errno)
			}
		}
		runtime.ReadMemStats(&after)
		if got := after.TotalAlloc - before.TotalAlloc; got > size+size/16 {
			t.Errorf("writing %d MiB in pieces of %d bytes allocated %.1f MiB", size>>20, piece, float64(got)/(1<<20))
		}
		if st, _ := h.Stat(); st.Size != size || f.Used() < size {
			t.Errorf("size %d, scratch used %d", st.Size, f.Used())
		}
	}
}

// TestFS_FileData: reads, writes past the end, truncates down and up (holes read as zeroes)
// across chunk boundaries agree with a plain byte slice.
func TestFS_FileData(t *testing.T) {
	f := New(Config{ScratchMax: 8 << 20})
	h := mustOpen(t, f, "tmp/f", experimentalsys.O_RDWR|experimentalsys.O_CREAT)
	var want []byte
	rnd := rand.New(rand.NewPCG(1, 2))
	for step := range 2000 {
		switch op := rnd.IntN(4); {
		case op <= 1: // write somewhere, often across a chunk boundary
			off := rnd.Int64N(int64(len(want)) + 3*chunkSize)
			if rnd.IntN(2) == 0 {
				off = int64(chunkSize*rnd.IntN(6)) - rnd.Int64N(100)
				off = max(off, 0)
			}
			p := make([]byte, rnd.IntN(3*chunkSize/2)+1)
			for i := range p {
				p[i] = byte(rnd.IntN(255) + 1)
			}
			if n, errno := h.Pwrite(p, off); n != len(p) || errno != 0 {
				t.Fatalf("step %d: pwrite %d at %d: %d %v", step, len(p), off, n, errno)
			}
			if end := off + int64(len(p)); end > int64(len(want)) {
				want = append(want, make([]byte, end-int64(len(want)))...)
			}
			copy(want[off:], p)
		case op == 2: // truncate, down or up
			size := rnd.Int64N(int64(len(want)) + 2*chunkSize + 1)
			if rnd.IntN(2) == 0 {
				size = rnd.Int64N(int64(len(want)) + 1)
			}
			if errno := h.Truncate(size); errno != 0 {
				t.Fatalf("step %d: truncate %d: %v", step, size, errno)
			}
			if size < int64(len(want)) {
				want = want[:size]
			} else {
				want = append(want, make([]byte, size-int64(len(want)))...)
			}
		default: // read a piece
			off := rnd.Int64N(int64(len(want)) + 10)
			p := make([]byte, rnd.IntN(2*chunkSize)+1)
			for i := range p {
				p[i] = 0xee
			}
			n, errno := h.Pread(p, off)
			wantN := max(0, min(len(p), len(want)-int(off)))
			if errno != 0 || n != wantN || !bytes.Equal(p[:n], want[min(off, int64(len(want))):int(off)+wantN]) {
				t.Fatalf("step %d: pread %d at %d of %d: %d %v, differs", step, len(p), off, len(want), n, errno)
			}
		}
		if st, _ := h.Stat(); st.Size != int64(len(want)) {
			t.Fatalf("step %d: size %d, want %d", step, st.Size, len(want))
		}
		if len(want) > 4<<20 {
			if errno := h.Truncate(0); errno != 0 {
				t.Fatal(errno)
			}
			want = want[:0]
		}
	}
	all := make([]byte, len(want))
	if n, _ := h.Pread(all, 0); n != len(want) || !bytes.Equal(all, want) {
		t.Fatal("the whole file differs")
	}
}
