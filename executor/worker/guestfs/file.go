package guestfs

import (
	"io"
	"slices"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/sys"
)

// file is an open file, directory or device.
type file struct {
	experimentalsys.UnimplementedFile
	fs     *FS
	n      *node
	read   bool
	write  bool
	append bool
	closed bool
	off    int64

	dirents []experimentalsys.Dirent // a directory's entries, taken at the first Readdir
	dirPos  int
}

func (f *file) Dev() (uint64, experimentalsys.Errno) { return 0, 0 }

func (f *file) Ino() (sys.Inode, experimentalsys.Errno) { return f.n.ino, 0 }

func (f *file) IsDir() (bool, experimentalsys.Errno) { return f.n.kind == kindDir, 0 }

func (f *file) IsAppend() bool { return f.append }

func (f *file) SetAppend(enable bool) experimentalsys.Errno {
	if f.closed {
		return experimentalsys.EBADF
	}
	f.append = enable
	return 0
}

func (f *file) Stat() (sys.Stat_t, experimentalsys.Errno) {
	if f.closed {
		return sys.Stat_t{}, experimentalsys.EBADF
	}
	return f.n.stat(), 0
}

func (f *file) Read(buf []byte) (int, experimentalsys.Errno) {
	n, errno := f.Pread(buf, f.off)
	if f.n.kind == kindFile {
		f.off += int64(n)
	}
	return n, errno
}

func (f *file) Pread(buf []byte, off int64) (int, experimentalsys.Errno) {
	switch {
	case f.closed || !f.read:
		return 0, experimentalsys.EBADF
	case f.n.kind == kindDir:
		return 0, experimentalsys.EISDIR
	case off < 0:
		return 0, experimentalsys.EINVAL
	case f.n.kind == kindDevice:
		switch f.n.dev {
		case devStdin:
			n, err := f.fs.stdin.Read(buf)
			if err != nil && err != io.EOF {
				return n, experimentalsys.EIO
			}
			return n, 0
		case devRandom:
			// Programs seed themselves from /dev/urandom (SQLite's random() falls back to
			// the clock without it, which is fixed by default): it gives what random_get
			// gives, as many bytes as asked, like Linux's.
			if _, err := io.ReadFull(f.fs.random, buf); err != nil {
				return 0, experimentalsys.EIO
			}
			return len(buf), 0
		}
		return 0, 0
	}
	size := f.n.length()
	if off >= size || len(buf) == 0 {
		return 0, 0
	}
	want := min(int64(len(buf)), size-off)
	if f.n.src == nil {
		return f.n.data.readAt(buf[:want], off), 0
	}
	n, err := f.n.src.ReadAt(buf[:want], f.n.off+off)
	if err != nil && err != io.EOF {
		return n, experimentalsys.EIO
	}
	return n, 0
}

// offset is int64 under another name: Seek implements wazero's File, whose Seek returns an
// Errno, and go vet's stdmethods check would take it for a misspelt io.Seeker.
type offset = int64

func (f *file) Seek(offset offset, whence int) (int64, experimentalsys.Errno) {
	if f.closed {
		return 0, experimentalsys.EBADF
	}
	switch f.n.kind {
	case kindDir:
		if offset != 0 || whence != io.SeekStart {
			return 0, experimentalsys.EINVAL
		}
		f.dirents, f.dirPos = nil, 0
		return 0, 0
	case kindDevice:
		return 0, 0
	}
	var base int64
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		base = f.off
	case io.SeekEnd:
		base = f.n.length()
	default:
		return 0, experimentalsys.EINVAL
	}
	if base+offset < 0 {
		return 0, experimentalsys.EINVAL
	}
	f.off = base + offset
	return f.off, 0
}

func (f *file) Readdir(n int) ([]experimentalsys.Dirent, experimentalsys.Errno) {
	if f.closed || f.n.kind != kindDir {
		return nil, experimentalsys.EBADF
	}
	if f.dirents == nil {
		names := make([]string, 0, len(f.n.children))
		for name := range f.n.children {
			names = append(names, name)
		}
		slices.Sort(names)
		f.dirents = make([]experimentalsys.Dirent, 0, len(names))
		for _, name := range names {
			c := f.n.children[name]
			f.dirents = append(f.dirents, experimentalsys.Dirent{Ino: c.ino, Name: name, Type: c.mode().Type()})
		}
	}
	rest := f.dirents[f.dirPos:]
	if n > 0 && n < len(rest) {
		rest = rest[:n]
	}
	f.dirPos += len(rest)
	return rest, 0
}

func (f *file) Write(buf []byte) (int, experimentalsys.Errno) {
	if f.n.kind == kindFile && f.append {
		f.off = f.n.length()
	}
	n, errno := f.Pwrite(buf, f.off)
	if f.n.kind == kindFile {
		f.off += int64(n)
	}
	return n, errno
}

func (f *file) Pwrite(buf []byte, off int64) (int, experimentalsys.Errno) {
	switch {
	case f.closed || !f.write:
		return 0, experimentalsys.EBADF
	case f.n.kind == kindDir:
		return 0, experimentalsys.EISDIR
	case off < 0:
		return 0, experimentalsys.EINVAL
	case f.n.kind == kindDevice:
		var w io.Writer
		switch f.n.dev {
		case devStdout:
			w = f.fs.stdout
		case devStderr:
			w = f.fs.stderr
		case devStdin:
			return 0, experimentalsys.EBADF
		default:
			return len(buf), 0
		}
		n, err := w.Write(buf)
		if err != nil {
			return n, experimentalsys.EIO
		}
		return n, 0
	}
	if len(buf) == 0 {
		return 0, 0
	}
	if end := off + int64(len(buf)); end > f.n.length() {
		if errno := f.fs.resize(f.n, end); errno != 0 {
			return 0, errno
		}
	} else if f.n.ro || f.n.src != nil {
		return 0, experimentalsys.EROFS
	}
	return f.n.data.writeAt(buf, off), 0
}

func (f *file) Truncate(size int64) experimentalsys.Errno {
	switch {
	case f.closed:
		return experimentalsys.EBADF
	case f.n.kind == kindDir:
		return experimentalsys.EISDIR
	case size < 0:
		return experimentalsys.EINVAL
	case !f.write:
		return experimentalsys.EBADF
	case f.n.kind == kindDevice:
		return 0
	}
	return f.fs.resize(f.n, size)
}

func (f *file) Sync() experimentalsys.Errno     { return 0 }
func (f *file) Datasync() experimentalsys.Errno { return 0 }

func (f *file) Utimens(atim, mtim int64) experimentalsys.Errno {
	if f.closed {
		return experimentalsys.EBADF
	}
	return f.n.utimens(atim, mtim)
}

func (f *file) Close() experimentalsys.Errno {
	if f.closed {
		return 0
	}
	f.closed = true
	f.n.open--
	if f.n.open == 0 && f.n.orphan {
		f.fs.release(f.n)
	}
	return 0
}
