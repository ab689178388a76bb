package guestfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/sys"

	"github.com/wasmwiz/wasmwiz/bundle"
)

// Bundle is a read-only tree made from a bundle's index, shared by every execution that mounts
// it: its files are read from src (the node's cached archive) at their offsets.
type Bundle struct {
	root  *node
	Files int
	Bytes int64
}

// NewBundle builds the tree of idx over src. seq tells bundles apart: it gives the tree's
// inodes a range of their own, above any scratch inode.
func NewBundle(idx *bundle.Index, src io.ReaderAt, seq uint32) (*Bundle, error) {
	next := (uint64(seq) + 1) << 32
	mk := func(k kind, perm fs.FileMode) *node {
		n := &node{kind: k, perm: perm, ino: next, ro: true, nlink: 1}
		next++
		if k == kindDir {
			n.children = map[string]*node{}
			n.nlink = 2
		}
		return n
	}
	b := &Bundle{root: mk(kindDir, 0o555), Files: idx.Files, Bytes: idx.Bytes}
	// The directories by path, so that placing an entry costs one lookup, not a walk from the
	// root (a walk made a deep tree cost depth × entries).
	dirs := map[string]*node{}
	for _, e := range idx.Entries {
		dir, name := path.Split(e.Path)
		parent := b.root
		if dir != "" {
			dir = strings.TrimSuffix(dir, "/")
			if parent = dirs[dir]; parent == nil {
				return nil, fmt.Errorf("bundle: %q is not a directory", dir)
			}
		}
		if _, dup := parent.children[name]; dup {
			return nil, fmt.Errorf("bundle: %q appears twice", e.Path)
		}
		var n *node
		switch e.Type {
		case bundle.TypeDir:
			n = mk(kindDir, (e.Mode|0o555)&^0o222)
			parent.nlink++
		case bundle.TypeFile:
			n = mk(kindFile, (e.Mode|0o444)&^0o222)
			n.src, n.off, n.size = src, e.Offset, e.Size
		case bundle.TypeSymlink:
			n = mk(kindSymlink, 0o777)
			n.target = e.Target
		default:
			return nil, fmt.Errorf("bundle: %q has an unknown type", e.Path)
		}
		t := e.ModTime.UnixNano()
		n.atim, n.mtim, n.ctim = t, t, t
		parent.children[name] = n
		if n.kind == kindDir {
			dirs[e.Path] = n
		}
	}
	return b, nil
}

// ErrNoSpace is returned when inline files do not fit the scratch budget.
var ErrNoSpace = errors.New("not enough scratch space")

// mkdirAll makes the directories of p (components) in scratch and returns the last one.
func (f *FS) mkdirAll(comps []string) (*node, error) {
	cur := f.root
	for _, c := range comps {
		next := cur.children[c]
		if next == nil {
			if cur.ro {
				return nil, fmt.Errorf("%s is inside a read-only mount", "/"+strings.Join(comps, "/"))
			}
			var errno experimentalsys.Errno
			if next, errno = f.add(cur, c, kindDir, 0o755); errno != 0 {
				return nil, ErrNoSpace
			}
		}
		if next.kind != kindDir {
			return nil, fmt.Errorf("/%s is not a directory", strings.Join(comps, "/"))
		}
		cur = next
	}
	return cur, nil
}

// MkdirAll makes directory p (absolute) and its parents in scratch.
func (f *FS) MkdirAll(p string) error {
	_, err := f.mkdirAll(splitPath(p))
	return err
}

// Mount places a bundle's tree at p (absolute), making the directories above it. Nothing may
// be at p yet.
func (f *FS) Mount(p string, b *Bundle) error {
	comps := splitPath(p)
	if len(comps) == 0 {
		return errors.New("cannot mount over /")
	}
	parent, err := f.mkdirAll(comps[:len(comps)-1])
	if err != nil {
		return err
	}
	name := comps[len(comps)-1]
	if parent.children[name] != nil {
		return fmt.Errorf("%s already exists", p)
	}
	if parent.ro {
		return fmt.Errorf("%s is inside a read-only mount", p)
	}
	parent.children[name] = b.root
	parent.nlink++
	return nil
}

// AddFile writes a scratch file at p (absolute), making its directories; its bytes count
// against the scratch budget.
func (f *FS) AddFile(p string, data []byte) error {
	comps := splitPath(p)
	if len(comps) == 0 {
		return errors.New("/ is a directory")
	}
	parent, err := f.mkdirAll(comps[:len(comps)-1])
	if err != nil {
		return err
	}
	name := comps[len(comps)-1]
	if parent.children[name] != nil {
		return fmt.Errorf("%s already exists", p)
	}
	n, errno := f.add(parent, name, kindFile, 0o644)
	if errno != 0 {
		return ErrNoSpace
	}
	if errno := f.resize(n, int64(len(data))); errno != 0 {
		return ErrNoSpace
	}
	n.data.writeAt(data, 0)
	return nil
}

// CopyIn places a writable copy of a bundle's tree at p (absolute) in scratch: every file is
// read from the archive and charged to the scratch budget.
func (f *FS) CopyIn(p string, b *Bundle) error {
	comps := splitPath(p)
	dst, err := f.mkdirAll(comps)
	if err != nil {
		return err
	}
	return f.copyDir(b.root, dst)
}

func (f *FS) copyDir(src, dst *node) error {
	for name, c := range src.children {
		if dst.children[name] != nil {
			return fmt.Errorf("%s already exists", name)
		}
		var k kind
		switch c.kind {
		case kindDir:
			k = kindDir
		case kindFile:
			k = kindFile
		case kindSymlink:
			k = kindSymlink
		default:
			continue
		}
		n, errno := f.add(dst, name, k, c.perm|0o200)
		if errno != 0 {
			return ErrNoSpace
		}
		n.atim, n.mtim, n.ctim = c.atim, c.mtim, c.ctim
		switch k {
		case kindDir:
			if err := f.copyDir(c, n); err != nil {
				return err
			}
		case kindSymlink:
			if errno := f.charge(int64(len(c.target))); errno != 0 {
				return ErrNoSpace
			}
			n.target = c.target
			n.charged += int64(len(c.target))
		case kindFile:
			if errno := f.charge(c.length()); errno != 0 {
				return ErrNoSpace
			}
			if err := n.data.readFrom(c.src, c.off, c.size); err != nil {
				return fmt.Errorf("reading the bundle: %v", err)
			}
		}
	}
	return nil
}

// Sub is the part of f under dir (absolute), as a file system of its own: what wazero needs to
// preopen a directory under another name ("fs-tests.dir"). It is the same tree: a path through
// it and the same path under dir through f name the same node.
func (f *FS) Sub(dir string) experimentalsys.FS {
	return &subFS{f: f, prefix: strings.TrimPrefix(path.Clean("/"+dir), "/")}
}

type subFS struct {
	experimentalsys.UnimplementedFS
	f      *FS
	prefix string
}

func (s *subFS) at(p string) string {
	full := path.Join(s.prefix, p)
	if strings.HasSuffix(p, "/") {
		full += "/"
	}
	return full
}

func (s *subFS) OpenFile(p string, flag experimentalsys.Oflag, perm fs.FileMode) (experimentalsys.File, experimentalsys.Errno) {
	return s.f.OpenFile(s.at(p), flag, perm)
}
func (s *subFS) Lstat(p string) (sys.Stat_t, experimentalsys.Errno) { return s.f.Lstat(s.at(p)) }
func (s *subFS) Stat(p string) (sys.Stat_t, experimentalsys.Errno)  { return s.f.Stat(s.at(p)) }
func (s *subFS) Mkdir(p string, perm fs.FileMode) experimentalsys.Errno {
	return s.f.Mkdir(s.at(p), perm)
}
func (s *subFS) Chmod(p string, perm fs.FileMode) experimentalsys.Errno {
	return s.f.Chmod(s.at(p), perm)
}
func (s *subFS) Rename(from, to string) experimentalsys.Errno {
	return s.f.Rename(s.at(from), s.at(to))
}
func (s *subFS) Rmdir(p string) experimentalsys.Errno  { return s.f.Rmdir(s.at(p)) }
func (s *subFS) Unlink(p string) experimentalsys.Errno { return s.f.Unlink(s.at(p)) }
func (s *subFS) Link(oldPath, newPath string) experimentalsys.Errno {
	return s.f.Link(s.at(oldPath), s.at(newPath))
}
func (s *subFS) Symlink(target, link string) experimentalsys.Errno {
	return s.f.Symlink(target, s.at(link))
}
func (s *subFS) Readlink(p string) (string, experimentalsys.Errno) { return s.f.Readlink(s.at(p)) }
func (s *subFS) Utimens(p string, atim, mtim int64) experimentalsys.Errno {
	return s.f.Utimens(s.at(p), atim, mtim)
}
