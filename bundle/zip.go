package bundle

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// zipMagic starts every zip archive with at least one entry ("PK\x03\x04") or none ("PK\x05\x06").
var zipMagic = [][]byte{[]byte("PK\x03\x04"), []byte("PK\x05\x06")}

// Open returns the tar archive an upload holds, read as it streams in: the upload itself (tar),
// gunzipped (tar.gz), or a tar written from a zip archive. A zip keeps its directory at its end,
// so it is first spooled to a temporary file, at most limit bytes of it; its entries are then
// written out as a tar stream in the order of that directory. Either way, at most limit
// decompressed bytes are read (a zip bomb stops there with too_large), and what Scan then checks
// (paths, types, links, limits) applies to zip entries exactly as to tar entries. Close removes
// the temporary file. limit <= 0 means no limit. maxEntries (> 0) bounds the entries of a zip's
// directory before archive/zip reads it (it holds every entry in memory, ~256 bytes each, before
// Scan's own count could refuse them): more is a too_large error.
func Open(r io.Reader, limit int64, maxEntries int) (io.ReadCloser, error) {
	br := bufio.NewReader(r)
	magic, _ := br.Peek(4)
	for _, m := range zipMagic {
		if bytes.Equal(magic, m) {
			return openZip(br, limit, maxEntries)
		}
	}
	out, err := Decompress(br, limit)
	if err != nil {
		return nil, err
	}
	return io.NopCloser(out), nil
}

// zipTar is a tar stream written from a spooled zip archive.
type zipTar struct {
	pipe  *io.PipeReader
	spool *os.File
}

func (z *zipTar) Close() error {
	z.pipe.Close() // stops the writer at its next write
	z.spool.Close()
	return os.Remove(z.spool.Name())
}

func openZip(r io.Reader, limit int64, maxEntries int) (io.ReadCloser, error) {
	spool, err := os.CreateTemp("", "wasmwiz-bundle-*.zip")
	if err != nil {
		return nil, err
	}
	fail := func(err error) (io.ReadCloser, error) {
		spool.Close()
		os.Remove(spool.Name())
		return nil, err
	}
	src := r
	if limit > 0 {
		src = &limitReader{r: r, left: limit}
	}
	size, err := io.Copy(spool, src)
	if err != nil {
		if errors.Is(err, errTooLarge) {
			return fail(schemas.Errorf(schemas.CodeTooLarge, "bundle archive is larger than allowed"))
		}
		if ue := uploadError(err); ue != nil {
			return fail(ue)
		}
		return fail(err)
	}
	var src2 io.ReaderAt = spool
	var counter *dirCounter
	if maxEntries > 0 {
		counter = &dirCounter{r: spool, max: maxEntries}
		src2 = counter
	}
	zr, err := zip.NewReader(src2, size)
	if counter != nil {
		counter.done = true // entries' data is read through it too: that is not counted
	}
	if counter != nil && counter.over {
		return fail(schemas.Errorf(schemas.CodeTooLarge, "bundle has more than %d files and directories", maxEntries))
	}
	if err != nil {
		return fail(invalid("not a valid zip archive (%v)", err))
	}
	// The sizes the directory declares bound what decompression may produce: refuse a declared
	// bomb before inflating anything. The tar writer below also stops at each declared size, and
	// archive/zip fails an entry whose data does not match its declared size and checksum.
	var declared uint64
	for _, f := range zr.File {
		declared += f.UncompressedSize64
		if limit > 0 && declared > uint64(limit) {
			return fail(schemas.Errorf(schemas.CodeTooLarge, "bundle archive is larger than allowed"))
		}
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeTar(pw, zr)) }()
	var out io.Reader = pr
	if limit > 0 {
		out = &limitReader{r: pr, left: limit}
	}
	return &struct {
		io.Reader
		io.Closer
	}{out, &zipTar{pipe: pr, spool: spool}}, nil
}

// writeTar writes the entries of zr as a tar archive to w.
func writeTar(w io.Writer, zr *zip.Reader) error {
	tw := tar.NewWriter(w)
	for _, f := range zr.File {
		if f.Flags&0x1 != 0 {
			return invalid("%s: encrypted zip entries are not supported", quote(f.Name))
		}
		mode := f.Mode()
		h := &tar.Header{Name: f.Name, Mode: int64(mode.Perm()), ModTime: f.Modified, Format: tar.FormatPAX}
		switch {
		case mode.IsDir():
			h.Typeflag = tar.TypeDir
		case mode&fs.ModeSymlink != 0:
			target, err := readSmall(f, maxPathBytes)
			if err != nil {
				return err
			}
			h.Typeflag, h.Linkname = tar.TypeSymlink, string(target)
		case mode.IsRegular():
			h.Typeflag, h.Size = tar.TypeReg, int64(f.UncompressedSize64)
			if h.Size < 0 {
				return invalid("%s: bad size", quote(f.Name))
			}
		default:
			return invalid("%s: device files and FIFOs are not allowed", quote(f.Name))
		}
		if err := tw.WriteHeader(h); err != nil {
			return invalid("%s: %v", quote(f.Name), err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			return invalid("%s: %v", quote(f.Name), err)
		}
		_, err = io.CopyN(tw, rc, h.Size)
		if err == nil { // read to the end, so that archive/zip checks the size and the checksum
			_, err = io.Copy(io.Discard, rc)
		}
		rc.Close()
		if err != nil {
			if errors.Is(err, io.ErrClosedPipe) {
				return err
			}
			return invalid("%s: %v", quote(f.Name), err)
		}
	}
	return tw.Close()
}

// readSmall reads a zip entry of at most max bytes (a symbolic link's target).
func readSmall(f *zip.File, max int) ([]byte, error) {
	if f.UncompressedSize64 > uint64(max) {
		return nil, invalid("%s: bad symbolic link target", quote(f.Name))
	}
	rc, err := f.Open()
	if err != nil {
		return nil, invalid("%s: %v", quote(f.Name), err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, int64(max)+1))
	if err != nil || len(b) > max {
		return nil, invalid("%s: bad symbolic link target", quote(f.Name))
	}
	return b, nil
}

// dirCounter is the spooled zip as zip.NewReader reads it: it counts the central directory
// signatures ("PK\x01\x02") in what is read and fails the read that passes max of them, so that
// a directory of millions of tiny entries (46 bytes each) is refused before archive/zip holds
// them all. Every entry archive/zip reads starts with the signature, so the count is at least
// the entries read so far (a name may hold the signature too: that only counts more). A
// signature split between two consecutive reads is counted once.
type dirCounter struct {
	r     io.ReaderAt
	max   int
	n     int
	end   int64   // where the previous read ended
	tail  [3]byte // its last bytes
	ntail int
	over  bool
	done  bool // the directory has been read
}

var errTooManyEntries = errors.New("too many zip entries")

func (c *dirCounter) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	if c.done {
		return n, err
	}
	b := p[:n]
	if off == c.end && c.ntail > 0 { // signatures across the seam
		joined := append(append([]byte{}, c.tail[:c.ntail]...), b[:min(len(b), 3)]...)
		c.n += bytes.Count(joined, zipDirSig)
	}
	c.n += bytes.Count(b, zipDirSig)
	c.end, c.ntail = off+int64(n), copy(c.tail[:], b[max(0, len(b)-3):])
	if c.n > c.max {
		c.over = true
		return 0, errTooManyEntries
	}
	return n, err
}

var zipDirSig = []byte("PK\x01\x02")
