// Package guestfs is the file system a guest sees: one tree made for one execution, mounted at
// "/" through wazero's experimental sys.FS interface, and nothing of the host's.
//
// The tree is in memory. Its writable part (scratch: "/", "/tmp", inline input files and
// whatever the guest creates) is capped in bytes, file data and a fixed cost per inode together,
// so a guest cannot make its worker allocate more than its tier allows; a write past the cap
// fails with ENOSPC. Read-only bundles are mounted by sharing their index (Bundle): files are
// read in place from the node's cached archive, never copied per execution. /dev holds null,
// stdin, stdout and stderr, wired to the execution's own streams, and random and urandom, which
// read the execution's own random source (the one WASI's random_get reads).
//
// Symbolic links are resolved inside the tree, lexically, as paths relative to the link's
// directory (or to the root for absolute targets): a link can name only another path of the
// same tree, whatever it says. Nothing here touches the host file system, except reading a
// bundle's archive through the io.ReaderAt the worker opened for it.
//
// An FS is not safe for concurrent use: a worker runs one guest at a time, and a guest is one
// thread.
package guestfs

import (
	"crypto/rand"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"sync/atomic"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/sys"
)

type kind uint8

const (
	kindDir kind = iota + 1
	kindFile
	kindSymlink
	kindDevice
)

type device uint8

const (
	devNull device = iota + 1
	devStdin
	devStdout
	devStderr
	devRandom // /dev/random and /dev/urandom
)

// nodeCost is what one inode costs the scratch budget besides its data and name: a guest making
// a million empty files runs out of scratch, not the worker out of memory.
const nodeCost = 256

// maxLinkHops bounds symbolic links followed in one lookup (Linux's MAXSYMLINKS).
const maxLinkHops = 40

// maxNameBytes bounds one path component (NAME_MAX).
const maxNameBytes = 255

type node struct {
	kind kind
	perm fs.FileMode
	ino  uint64
	ro   bool // part of a read-only mount or of /dev: never changed

	children map[string]*node // kindDir

	data fileData    // kindFile in scratch
	src  io.ReaderAt // kindFile of a bundle: size bytes at off
	off  int64
	size int64

	target string // kindSymlink
	dev    device // kindDevice

	nlink    uint64
	open     int  // handles open on it
	orphan   bool // unlinked while open: its data is refunded when the last handle closes
	atim     int64
	mtim     int64
	ctim     int64
	charged  int64 // scratch bytes charged for this node besides its data
	writable bool  // mode allows writing (perm & 0200), checked on open for write
}

func (n *node) length() int64 {
	if n.src != nil {
		return n.size
	}
	return n.data.len()
}

func (n *node) mode() fs.FileMode {
	switch n.kind {
	case kindDir:
		return fs.ModeDir | n.perm
	case kindSymlink:
		return fs.ModeSymlink | n.perm
	case kindDevice:
		return fs.ModeDevice | fs.ModeCharDevice | n.perm
	}
	return n.perm
}

func (n *node) stat() sys.Stat_t {
	nlink := n.nlink
	if nlink == 0 {
		nlink = 1
	}
	st := sys.Stat_t{Ino: n.ino, Mode: n.mode(), Nlink: nlink, Atim: n.atim, Mtim: n.mtim, Ctim: n.ctim}
	switch n.kind {
	case kindFile:
		st.Size = n.length()
	case kindSymlink:
		st.Size = int64(len(n.target))
	case kindDir:
		st.Size = 4096
	}
	return st
}

// Config is what one execution's file system holds.
type Config struct {
	ScratchMax int64 // bytes of writable data and inodes; <= 0 means 64 MiB
	Stdin      io.Reader
	Stdout     io.Writer
	Stderr     io.Writer
	// Random is what /dev/random and /dev/urandom read: the execution's random source, the
	// one its WASI random_get reads, so a seed reproduces both; nil means crypto/rand.
	Random io.Reader
}

// FS is one execution's file system. It implements experimentalsys.FS; mount it at "/".
type FS struct {
	experimentalsys.UnimplementedFS
	root    *node
	max     int64
	used    atomic.Int64 // written by the guest's goroutine only; read by any (Used)
	peak    int64
	nextIno uint64
	full    bool              // a write was refused for lack of scratch space
	noSpace bool              // the last refusal not yet reported as ENOSPC (see WASI overrides)
	dirs    map[uint64]string // directory inode → its path, learnt when it is opened
	stdin   io.Reader
	stdout  io.Writer
	stderr  io.Writer
	random  io.Reader

	preopens []string // directories preopened under their own names besides "/" (FSConfig)
	workdir  string   // preopened as "." (FSConfig); "" for none
}

// PreopenWorkdir asks FSConfig to make dir (absolute) the directory wasi-libc resolves relative
// paths in. wasi-libc starts every program in "/" whatever $PWD says and resolves a path through
// the preopen with the longest matching name, the names stripped of "/" and "./" ("/" and "."
// both match anything, the later one winning). So FSConfig preopens dir as "." after "/", and
// each top-level directory under its own absolute name ("/share", "/tmp"), so that an absolute
// path still reaches its directory: fopen("data.dat") opens <dir>/data.dat, as under wasmtime
// --dir . in that directory, and fopen("/share/x") opens /share/x. What it cannot tell apart: a
// path naming a file at the top level ("/a.txt") or a top-level directory made after the start
// reaches dir instead. Go's wasip1 runtime (which starts in $PWD) matches preopens by their
// whole names and is not affected.
func (f *FS) PreopenWorkdir(dir string) {
	f.workdir = path.Clean("/" + dir)
}

// Preopen asks FSConfig to preopen dir (relative to the root, e.g. "fs-tests.dir") under that
// very name, as wasmtime's and wazero's --dir/-mount do; the guest finds it by name among its
// preopens (wasi-libc resolves relative paths through it; Rust's wasi test crate looks for it).
func (f *FS) Preopen(dir string) {
	f.preopens = append(f.preopens, dir)
}

// New makes a file system holding "/", "/tmp" and "/dev".
func New(cfg Config) *FS {
	if cfg.ScratchMax <= 0 {
		cfg.ScratchMax = 64 << 20
	}
	f := &FS{max: cfg.ScratchMax, nextIno: 1, dirs: map[uint64]string{}, stdin: cfg.Stdin, stdout: cfg.Stdout, stderr: cfg.Stderr, random: cfg.Random}
	if f.random == nil {
		f.random = rand.Reader
	}
	if f.stdin == nil {
		f.stdin = strings.NewReader("")
	}
	if f.stdout == nil {
		f.stdout = io.Discard
	}
	if f.stderr == nil {
		f.stderr = io.Discard
	}
	f.root = f.newNode(kindDir, 0o755)
	f.root.children["tmp"] = f.newNode(kindDir, 0o777|fs.ModeSticky)
	f.root.children["dev"] = devDir
	f.dirs[f.root.ino] = ""
	return f
}

// devDir is /dev, the same read-only nodes in every FS: a device node names a stream, and an
// open file writes to its own FS's streams.
var devDir = func() *node {
	ino := uint64(1) << 31 // above any scratch inode a run can make (each costs nodeCost bytes)
	mk := func(k kind, perm fs.FileMode) *node {
		ino++
		n := &node{kind: k, perm: perm, ino: ino, ro: true, nlink: 1}
		if k == kindDir {
			n.children, n.nlink = map[string]*node{}, 2
		}
		return n
	}
	dev := mk(kindDir, 0o755)
	for _, d := range []struct {
		name string
		dev  device
	}{{"null", devNull}, {"random", devRandom}, {"stderr", devStderr}, {"stdin", devStdin}, {"stdout", devStdout}, {"urandom", devRandom}} {
		n := mk(kindDevice, 0o666)
		n.dev = d.dev
		dev.children[d.name] = n
	}
	return dev
}()

// epoch is the time of every new scratch file: 2022-01-01, the start of wazero's fake wall
// clock, which is the only clock a guest reads (a real time would tell the guest the host's).
const epoch = 1640995200 * int64(1e9)

func (f *FS) newNode(k kind, perm fs.FileMode) *node {
	n := &node{kind: k, perm: perm, ino: f.nextIno, nlink: 1, writable: perm&0o200 != 0, atim: epoch, mtim: epoch, ctim: epoch}
	f.nextIno++
	if k == kindDir {
		n.children = map[string]*node{}
		n.nlink = 2
	}
	return n
}

// Used is the scratch space in use now, Peak the most it held, in bytes. Used may be called from
// any goroutine while the guest runs (the worker's memory reports read it).
func (f *FS) Used() int64 { return f.used.Load() }
func (f *FS) Peak() int64 { return f.peak }

// Full reports whether a write was ever refused for lack of scratch space.
func (f *FS) Full() bool { return f.full }

// ScratchMax is the scratch budget in bytes.
func (f *FS) ScratchMax() int64 { return f.max }

// charge takes n bytes of scratch, or refuses (ENOSPC, reported to WASI as EIO unless the
// worker's WASI overrides turn it into ENOSPC).
func (f *FS) charge(n int64) experimentalsys.Errno {
	if n <= 0 {
		f.used.Add(n)
		return 0
	}
	if f.used.Load()+n > f.max {
		f.full, f.noSpace = true, true
		return experimentalsys.EIO
	}
	f.peak = max(f.peak, f.used.Add(n))
	return 0
}

// takeNoSpace reports and clears a refusal for lack of space since the last call.
func (f *FS) takeNoSpace() bool {
	v := f.noSpace
	f.noSpace = false
	return v
}

// found is the outcome of a lookup.
type found struct {
	n      *node    // nil when only the last component is missing
	parent *node    // the directory holding the last component
	name   string   // the last component ("" for the root)
	path   []string // components of the resolved path (of n, or of where it would be)
}

// splitPath turns a guest path (relative to the root; wazero cleans it) into components, ".."
// applied lexically and clamped at the root.
func splitPath(p string) []string {
	c := path.Clean("/" + p)
	if c == "/" {
		return nil
	}
	return strings.Split(c[1:], "/")
}

// lookup resolves p. follow says whether a symbolic link in the last component is followed;
// links in other components always are. A trailing slash demands a directory.
func (f *FS) lookup(p string, follow bool) (found, experimentalsys.Errno) {
	if strings.IndexByte(p, 0) >= 0 {
		return found{}, experimentalsys.EINVAL
	}
	dirOnly := strings.HasSuffix(p, "/")
	if dirOnly {
		follow = true
	}
	comps := splitPath(p)
	hops := 0
restart:
	cur, parent := f.root, f.root
	name := ""
	var at []string
	for i := 0; i < len(comps); i++ {
		c := comps[i]
		if len(c) > maxNameBytes {
			return found{}, experimentalsys.ENAMETOOLONG
		}
		if cur.kind != kindDir {
			return found{}, experimentalsys.ENOTDIR
		}
		last := i == len(comps)-1
		child := cur.children[c]
		if child == nil {
			if last {
				return found{parent: cur, name: c, path: append(at, c)}, experimentalsys.ENOENT
			}
			return found{}, experimentalsys.ENOENT
		}
		if child.kind == kindSymlink && (!last || follow) {
			if hops++; hops > maxLinkHops {
				return found{}, experimentalsys.ELOOP
			}
			base := "/" + strings.Join(at, "/")
			if strings.HasPrefix(child.target, "/") {
				base = "/"
			}
			next := path.Join(append([]string{base, child.target}, comps[i+1:]...)...)
			comps = splitPath(next)
			goto restart
		}
		parent, name = cur, c
		cur = child
		at = append(at, c)
	}
	if dirOnly && cur.kind != kindDir {
		return found{}, experimentalsys.ENOTDIR
	}
	return found{n: cur, parent: parent, name: name, path: at}, 0
}

// OpenFile implements experimentalsys.FS.
func (f *FS) OpenFile(p string, flag experimentalsys.Oflag, perm fs.FileMode) (experimentalsys.File, experimentalsys.Errno) {
	acc := flag & (experimentalsys.O_RDONLY | experimentalsys.O_RDWR | experimentalsys.O_WRONLY)
	write := acc == experimentalsys.O_RDWR || acc == experimentalsys.O_WRONLY
	r, errno := f.lookup(p, flag&experimentalsys.O_NOFOLLOW == 0)
	switch {
	case errno == experimentalsys.ENOENT && r.parent != nil && flag&experimentalsys.O_CREAT != 0:
		if strings.HasSuffix(p, "/") {
			return nil, experimentalsys.EISDIR
		}
		if r.parent.ro {
			return nil, experimentalsys.EROFS
		}
		n, errno := f.add(r.parent, r.name, kindFile, perm&fs.ModePerm)
		if errno != 0 {
			return nil, errno
		}
		r.n = n
	case errno != 0:
		return nil, errno
	case flag&experimentalsys.O_CREAT != 0 && flag&experimentalsys.O_EXCL != 0:
		return nil, experimentalsys.EEXIST
	}
	n := r.n
	switch {
	case n.kind == kindSymlink: // O_NOFOLLOW on a link
		return nil, experimentalsys.ELOOP
	case flag&experimentalsys.O_DIRECTORY != 0 && n.kind != kindDir:
		return nil, experimentalsys.ENOTDIR
	case n.kind == kindDir && (write || flag&experimentalsys.O_TRUNC != 0):
		return nil, experimentalsys.EISDIR
	case write && n.kind == kindFile && n.ro:
		return nil, experimentalsys.EROFS
	}
	if n.kind == kindFile && write && flag&experimentalsys.O_TRUNC != 0 {
		if errno := f.resize(n, 0); errno != 0 {
			return nil, errno
		}
	}
	if n.kind == kindDir {
		f.dirs[n.ino] = strings.Join(r.path, "/")
	}
	n.open++
	return &file{fs: f, n: n, read: acc != experimentalsys.O_WRONLY, write: write,
		append: flag&experimentalsys.O_APPEND != 0}, 0
}

// add makes a node in parent, charging its cost.
func (f *FS) add(parent *node, name string, k kind, perm fs.FileMode) (*node, experimentalsys.Errno) {
	if len(name) > maxNameBytes {
		return nil, experimentalsys.ENAMETOOLONG
	}
	cost := int64(nodeCost + len(name))
	if errno := f.charge(cost); errno != 0 {
		return nil, errno
	}
	n := f.newNode(k, perm)
	n.charged = cost
	parent.children[name] = n
	if k == kindDir {
		parent.nlink++
	}
	return n, 0
}

// resize sets a scratch file's length, charging or refunding the difference.
func (f *FS) resize(n *node, size int64) experimentalsys.Errno {
	if n.ro || n.src != nil {
		return experimentalsys.EROFS
	}
	old := n.data.len()
	switch {
	case size == old:
		return 0
	case size < old:
		n.data.resize(size)
		f.used.Add(-(old - size))
		return 0
	}
	if size > f.max {
		f.full, f.noSpace = true, true
		return experimentalsys.EIO
	}
	if errno := f.charge(size - old); errno != 0 {
		return errno
	}
	n.data.resize(size) // memory comes with the writes (fileData)
	return 0
}

// Lstat implements experimentalsys.FS.
func (f *FS) Lstat(p string) (sys.Stat_t, experimentalsys.Errno) {
	r, errno := f.lookup(p, false)
	if errno != 0 {
		return sys.Stat_t{}, errno
	}
	return r.n.stat(), 0
}

// Stat implements experimentalsys.FS.
func (f *FS) Stat(p string) (sys.Stat_t, experimentalsys.Errno) {
	r, errno := f.lookup(p, true)
	if errno != 0 {
		return sys.Stat_t{}, errno
	}
	return r.n.stat(), 0
}

// Mkdir implements experimentalsys.FS.
func (f *FS) Mkdir(p string, perm fs.FileMode) experimentalsys.Errno {
	r, errno := f.lookup(strings.TrimSuffix(p, "/"), false)
	switch {
	case errno == 0:
		return experimentalsys.EEXIST
	case errno != experimentalsys.ENOENT || r.parent == nil:
		return errno
	case r.parent.ro:
		return experimentalsys.EROFS
	}
	_, errno = f.add(r.parent, r.name, kindDir, perm&fs.ModePerm)
	return errno
}

// Chmod implements experimentalsys.FS.
func (f *FS) Chmod(p string, perm fs.FileMode) experimentalsys.Errno {
	r, errno := f.lookup(p, true)
	if errno != 0 {
		return errno
	}
	if r.n.ro {
		return experimentalsys.EROFS
	}
	r.n.perm = perm & (fs.ModePerm | fs.ModeSticky)
	r.n.writable = perm&0o200 != 0
	return 0
}

// Rename implements experimentalsys.FS.
func (f *FS) Rename(from, to string) experimentalsys.Errno {
	src, errno := f.lookup(from, false)
	if errno != 0 {
		return errno
	}
	if src.n == f.root {
		return experimentalsys.EPERM
	}
	dst, errno := f.lookup(to, false)
	if errno != 0 && (errno != experimentalsys.ENOENT || dst.parent == nil) {
		return errno
	}
	if src.parent.ro || dst.parent.ro || src.n.ro {
		return experimentalsys.EROFS
	}
	if src.n.kind == kindDir && hasPrefix(dst.path, src.path) && len(dst.path) > len(src.path) {
		return experimentalsys.EINVAL // into itself
	}
	if dst.n != nil {
		if dst.n == src.n {
			return 0
		}
		switch {
		case dst.n.ro:
			return experimentalsys.EROFS
		case src.n.kind == kindDir && dst.n.kind != kindDir:
			return experimentalsys.ENOTDIR
		case src.n.kind != kindDir && dst.n.kind == kindDir:
			return experimentalsys.EISDIR
		case dst.n.kind == kindDir && len(dst.n.children) > 0:
			return experimentalsys.ENOTEMPTY
		}
		f.remove(dst.parent, dst.name, dst.n)
	}
	delete(src.parent.children, src.name)
	dst.parent.children[dst.name] = src.n
	if src.n.kind == kindDir {
		src.parent.nlink--
		dst.parent.nlink++
	}
	// The name's share of the cost follows the name.
	delta := int64(len(dst.name) - len(src.name))
	src.n.charged += delta
	f.used.Add(delta)
	return 0
}

func hasPrefix(p, prefix []string) bool {
	return len(p) >= len(prefix) && slices.Equal(p[:len(prefix)], prefix)
}

// remove takes a name out of its directory and refunds what it cost once no name and no handle
// holds the node.
func (f *FS) remove(parent *node, name string, n *node) {
	delete(parent.children, name)
	if n.kind == kindDir {
		parent.nlink--
		n.nlink = 0
	} else if n.nlink > 0 {
		n.nlink--
	}
	if n.nlink > 0 {
		f.used.Add(-int64(nodeCost + len(name))) // another name still holds it: refund this name only
		n.charged -= int64(nodeCost + len(name))
		return
	}
	if n.open > 0 {
		n.orphan = true
		return
	}
	f.release(n)
}

// release refunds a node nothing refers to any more.
func (f *FS) release(n *node) {
	if n.ro {
		return
	}
	f.used.Add(-(n.charged + n.data.len()))
	n.charged, n.data = 0, fileData{}
	delete(f.dirs, n.ino)
}

// Rmdir implements experimentalsys.FS.
func (f *FS) Rmdir(p string) experimentalsys.Errno {
	r, errno := f.lookup(strings.TrimSuffix(p, "/"), false)
	switch {
	case errno != 0:
		return errno
	case r.n == f.root:
		return experimentalsys.EPERM
	case r.n.kind != kindDir:
		return experimentalsys.ENOTDIR
	case r.parent.ro || r.n.ro:
		return experimentalsys.EROFS
	case len(r.n.children) > 0:
		return experimentalsys.ENOTEMPTY
	}
	f.remove(r.parent, r.name, r.n)
	return 0
}

// Unlink implements experimentalsys.FS.
func (f *FS) Unlink(p string) experimentalsys.Errno {
	r, errno := f.lookup(p, false)
	switch {
	case errno != 0:
		return errno
	case r.n.kind == kindDir:
		return experimentalsys.EISDIR
	case r.parent.ro:
		return experimentalsys.EROFS
	}
	f.remove(r.parent, r.name, r.n)
	return 0
}

// Link implements experimentalsys.FS.
func (f *FS) Link(oldPath, newPath string) experimentalsys.Errno {
	src, errno := f.lookup(oldPath, false)
	if errno != 0 {
		return errno
	}
	if src.n.kind == kindDir {
		return experimentalsys.EPERM
	}
	dst, errno := f.lookup(newPath, false)
	switch {
	case errno == 0:
		return experimentalsys.EEXIST
	case errno != experimentalsys.ENOENT || dst.parent == nil:
		return errno
	case dst.parent.ro || src.n.ro:
		return experimentalsys.EROFS
	case len(dst.name) > maxNameBytes:
		return experimentalsys.ENAMETOOLONG
	}
	cost := int64(nodeCost + len(dst.name))
	if errno := f.charge(cost); errno != 0 {
		return errno
	}
	src.n.charged += cost
	src.n.nlink++
	dst.parent.children[dst.name] = src.n
	return 0
}

// Symlink implements experimentalsys.FS.
func (f *FS) Symlink(target, linkName string) experimentalsys.Errno {
	switch {
	case target == "" || len(target) > 4096 || strings.IndexByte(target, 0) >= 0:
		return experimentalsys.EINVAL
	case strings.HasPrefix(target, "/"):
		// As wasmtime does: a link names a path relative to where it is, never an absolute one.
		return experimentalsys.EPERM
	}
	r, errno := f.lookup(linkName, false)
	switch {
	case errno == 0:
		return experimentalsys.EEXIST
	case errno == experimentalsys.ENOENT && strings.HasSuffix(linkName, "/"):
		return experimentalsys.ENOENT // a link is not a directory
	case errno != experimentalsys.ENOENT || r.parent == nil:
		return errno
	case r.parent.ro:
		return experimentalsys.EROFS
	}
	if errno := f.charge(int64(len(target))); errno != 0 {
		return errno
	}
	n, errno := f.add(r.parent, r.name, kindSymlink, 0o777)
	if errno != 0 {
		f.used.Add(-int64(len(target)))
		return errno
	}
	n.target = target
	n.charged += int64(len(target))
	return 0
}

// Readlink implements experimentalsys.FS.
func (f *FS) Readlink(p string) (string, experimentalsys.Errno) {
	r, errno := f.lookup(p, false)
	if errno != 0 {
		return "", errno
	}
	if r.n.kind != kindSymlink {
		return "", experimentalsys.EINVAL
	}
	return r.n.target, 0
}

// Utimens implements experimentalsys.FS.
func (f *FS) Utimens(p string, atim, mtim int64) experimentalsys.Errno {
	r, errno := f.lookup(p, true)
	if errno != 0 {
		return errno
	}
	return r.n.utimens(atim, mtim)
}

func (n *node) utimens(atim, mtim int64) experimentalsys.Errno {
	if n.ro {
		return experimentalsys.EROFS
	}
	if atim != experimentalsys.UTIME_OMIT {
		n.atim = atim
	}
	if mtim != experimentalsys.UTIME_OMIT {
		n.mtim = mtim
	}
	return 0
}
