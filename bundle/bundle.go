// Package bundle reads and checks bundles: tar archives of files that guests see as read-only
// directory trees. It is shared by the gateway (upload checks) and executor workers (which index
// a node's cached copy and read file data from it in place), and has no side effects beyond the
// temporary file Open spools a zip upload to.
//
// A bundle is a POSIX tar archive (ustar, PAX or GNU headers); an upload may be gzip-compressed
// or a zip archive (see Open), and is stored as a decompressed tar, so that a worker reads each
// file at its offset in the archive without unpacking anything. Scan accepts regular files, directories and symbolic links whose
// targets stay inside the bundle; it refuses absolute paths, ".." components, devices, FIFOs,
// hard links, sparse files, duplicate paths, entries under a file or a symbolic link, and more
// files or bytes than the limits allow. Its errors are *schemas.Error values for the uploader.
package bundle

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// Type is what an entry is.
type Type uint8

const (
	TypeFile Type = iota + 1
	TypeDir
	TypeSymlink
)

// Entry is one path of a bundle.
type Entry struct {
	Path    string // clean, relative, never "." or with ".." components: "data/a.txt"
	Type    Type
	Mode    fs.FileMode // permission bits only
	Size    int64       // file data bytes (files only)
	Offset  int64       // where the file's data starts in the (decompressed) archive
	Target  string      // symbolic link target, as written in the archive
	ModTime time.Time
}

// Index is a checked bundle: its entries in archive order, every parent directory listed
// before its children (implicit directories are added).
type Index struct {
	Entries []Entry
	Files   int   // regular files
	Bytes   int64 // file data bytes

	walked int // parent directories looked at while checking entries (tests bound it)
}

// Limits bound what Scan accepts. Zero means no limit.
type Limits struct {
	MaxEntries int   // files, directories and links together
	MaxBytes   int64 // file data bytes
}

// maxPathBytes bounds a path inside a bundle (PATH_MAX on Linux).
const maxPathBytes = 4096

// invalid is the uploader's error for a bad archive.
func invalid(format string, args ...any) error {
	return schemas.Errorf(schemas.CodeInvalid, "bundle: "+format, args...)
}

// Decompress returns a reader of the tar inside r: r itself, or r gunzipped when it starts with
// the gzip magic. limit bounds the decompressed bytes read (a zip bomb stops there): reading
// past it fails with a too_large error. limit <= 0 means no limit.
func Decompress(r io.Reader, limit int64) (io.Reader, error) {
	br := bufio.NewReader(r)
	magic, _ := br.Peek(2)
	var out io.Reader = br
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, invalid("not a valid gzip stream")
		}
		zr.Multistream(false)
		out = zr
	}
	if limit > 0 {
		out = &limitReader{r: out, left: limit}
	}
	return out, nil
}

// ErrTooLarge is what a limitReader answers past its limit.
var errTooLarge = errors.New("bundle archive is larger than allowed")

type limitReader struct {
	r    io.Reader
	left int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		// One more byte would tell whether the stream really goes on.
		var one [1]byte
		if n, _ := l.r.Read(one[:]); n > 0 {
			return 0, errTooLarge
		}
		return 0, io.EOF
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

// countingReader counts the bytes read through it: after tar.Reader.Next, the count is the
// offset of the entry's data (headers are read in whole 512-byte blocks, data lazily).
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// uploadError is the uploader's error for err, an error reading the upload itself (not its
// format), or nil when err is not one: the body did not arrive in time (timeout), or its
// connection failed (bad_request). Such errors were a 422 blaming the archive, naming the
// gateway's own address ("read tcp 127.0.0.1:8080->…: i/o timeout").
func uploadError(err error) error {
	var ne net.Error
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return schemas.Errorf(schemas.CodeTimeout, "the bundle did not arrive in time")
	case errors.As(err, &ne):
		return schemas.Errorf(schemas.CodeBadRequest, "the bundle could not be read: the connection failed")
	}
	return nil
}

// Scan reads a tar archive to its end and checks every entry. w, if not nil, receives a copy of
// every byte read (the archive to store). It returns the index, or a *schemas.Error saying what
// is wrong (code invalid, or too_large for the limits).
func Scan(r io.Reader, lim Limits, w io.Writer) (*Index, error) {
	if w != nil {
		r = io.TeeReader(r, w)
	}
	cr := &countingReader{r: r}
	tr := tar.NewReader(cr)
	idx := &Index{}
	kinds := map[string]Type{}   // path → type, for duplicates and parents
	implicit := map[string]int{} // directory added for its children → its index, until listed
	var links []int              // indexes of symlink entries, checked at the end
	add := func(e Entry) error {
		if lim.MaxEntries > 0 && len(idx.Entries) >= lim.MaxEntries {
			return schemas.Errorf(schemas.CodeTooLarge, "bundle has more than %d files and directories", lim.MaxEntries)
		}
		kinds[e.Path] = e.Type
		idx.Entries = append(idx.Entries, e)
		return nil
	}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if errors.Is(err, errTooLarge) {
				return nil, schemas.Errorf(schemas.CodeTooLarge, "bundle archive is larger than allowed")
			}
			if se := (*schemas.Error)(nil); errors.As(err, &se) { // from Open's zip reader
				return nil, se
			}
			if ue := uploadError(err); ue != nil {
				return nil, ue
			}
			return nil, invalid("not a valid tar archive (%v)", err)
		}
		var typ Type
		switch h.Typeflag {
		case tar.TypeReg, tar.TypeRegA:
			typ = TypeFile
		case tar.TypeDir:
			typ = TypeDir
		case tar.TypeSymlink:
			typ = TypeSymlink
		case tar.TypeXGlobalHeader:
			continue
		case tar.TypeLink:
			return nil, invalid("%s: hard links are not supported", quote(h.Name))
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			return nil, invalid("%s: device files and FIFOs are not allowed", quote(h.Name))
		case tar.TypeGNUSparse:
			return nil, invalid("%s: sparse files are not supported", quote(h.Name))
		default:
			return nil, invalid("%s: unsupported entry type %q", quote(h.Name), h.Typeflag)
		}
		p, err := CleanPath(h.Name)
		if err != nil {
			return nil, err
		}
		if p == "." {
			if typ != TypeDir {
				return nil, invalid("the archive's root must be a directory")
			}
			continue
		}
		if _, dup := kinds[p]; dup {
			// A directory listed after its contents (zip and tar writers may put it anywhere) is
			// the one added for them, with the archive's mode and time.
			if i, ok := implicit[p]; ok && typ == TypeDir {
				idx.Entries[i].Mode, idx.Entries[i].ModTime = fs.FileMode(h.Mode)&fs.ModePerm, h.ModTime
				delete(implicit, p)
				continue
			}
			return nil, invalid("%s appears twice", quote(p))
		}
		// Parents: every one must be a directory (listed or implicit), never a file or a link,
		// so that a path inside the bundle names what it says. The nearest known one decides:
		// a directory's own parents were checked when it was added, so the walk stops there
		// (walking on made a deep tree cost depth × path length for every entry in it).
		for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
			idx.walked++
			if k, ok := kinds[dir]; ok {
				if k != TypeDir {
					return nil, invalid("%s is inside %s, which is not a directory", quote(p), quote(dir))
				}
				break
			}
		}
		if err := addParents(p, kinds, func(e Entry) error {
			implicit[e.Path] = len(idx.Entries)
			return add(e)
		}); err != nil {
			return nil, err
		}
		e := Entry{Path: p, Type: typ, Mode: fs.FileMode(h.Mode) & fs.ModePerm, ModTime: h.ModTime}
		switch typ {
		case TypeFile:
			e.Size, e.Offset = h.Size, cr.n
			if h.Size < 0 {
				return nil, invalid("%s: negative size", quote(p))
			}
			idx.Files++
			idx.Bytes += h.Size
			if lim.MaxBytes > 0 && idx.Bytes > lim.MaxBytes {
				return nil, schemas.Errorf(schemas.CodeTooLarge, "bundle files hold more than %d bytes", lim.MaxBytes)
			}
		case TypeSymlink:
			if h.Linkname == "" || len(h.Linkname) > maxPathBytes || strings.IndexByte(h.Linkname, 0) >= 0 {
				return nil, invalid("%s: bad symbolic link target", quote(p))
			}
			e.Target = h.Linkname
			links = append(links, len(idx.Entries))
		}
		if err := add(e); err != nil {
			return nil, err
		}
	}
	// Read to the real end, so that the stored copy (w) and the digest cover every byte and a
	// decompression bomb hidden after the end-of-archive blocks is found.
	if _, err := io.Copy(io.Discard, cr); err != nil {
		if errors.Is(err, errTooLarge) {
			return nil, schemas.Errorf(schemas.CodeTooLarge, "bundle archive is larger than allowed")
		}
		if se := (*schemas.Error)(nil); errors.As(err, &se) {
			return nil, se
		}
		if ue := uploadError(err); ue != nil {
			return nil, ue
		}
		return nil, invalid("reading the archive: %v", err)
	}
	for _, i := range links {
		e := idx.Entries[i]
		if err := checkLink(e.Path, e.Target); err != nil {
			return nil, err
		}
	}
	return idx, nil
}

// addParents adds the directories above p that the archive did not list.
func addParents(p string, kinds map[string]Type, add func(Entry) error) error {
	var missing []string
	for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
		if _, ok := kinds[dir]; ok {
			break
		}
		missing = append(missing, dir)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := add(Entry{Path: missing[i], Type: TypeDir, Mode: 0o755}); err != nil {
			return err
		}
	}
	return nil
}

// checkLink refuses a symbolic link whose target leaves the bundle. Guests resolve links
// lexically inside their own file system, as this check does, so the check is exact.
func checkLink(p, target string) error {
	if strings.HasPrefix(target, "/") {
		return invalid("%s: symbolic link to an absolute path (%s); links must stay inside the bundle", quote(p), quote(target))
	}
	resolved := path.Join(path.Dir(p), target)
	if resolved == ".." || strings.HasPrefix(resolved, "../") {
		return invalid("%s: symbolic link points outside the bundle (%s)", quote(p), quote(target))
	}
	return nil
}

// CleanPath checks a path inside an archive and returns it clean and relative ("." for the
// root): a leading "./" is allowed, a leading "/", a ".." component, a NUL or invalid UTF-8 is
// not.
func CleanPath(name string) (string, error) {
	switch {
	case name == "":
		return "", invalid("an entry has an empty name")
	case len(name) > maxPathBytes:
		return "", invalid("a path is longer than %d bytes", maxPathBytes)
	case !utf8.ValidString(name) || strings.IndexByte(name, 0) >= 0:
		return "", invalid("%s: paths must be UTF-8 without NUL", quote(name))
	case strings.HasPrefix(name, "/"):
		return "", invalid("%s: absolute paths are not allowed", quote(name))
	case strings.Contains(name, "\\"):
		return "", invalid("%s: backslashes are not allowed in paths", quote(name))
	}
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return "", invalid("%s: \"..\" is not allowed in paths", quote(name))
		}
	}
	return path.Clean(name), nil
}

func quote(s string) string {
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return fmt.Sprintf("%q", strings.ToValidUTF8(s, "?"))
}

// ScanBytes is Scan over an archive in memory.
func ScanBytes(b []byte, lim Limits) (*Index, error) {
	return Scan(bytes.NewReader(b), lim, nil)
}
