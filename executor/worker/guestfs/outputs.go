package guestfs

import (
	"path"
	"slices"
	"strings"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// Output is a file collected after a run.
type Output struct {
	Path      string // absolute
	Data      []byte // the first bytes, up to what the budget allowed
	Size      int64  // the file's whole size
	Truncated bool   // Data is shorter than Size
}

// Collect returns the regular files matching patterns (absolute paths whose components may use
// path.Match wildcards: "/out/*.wav", "/tmp/result.json"), each once, sorted by path. Files
// are read in full while maxBytes lasts, then cut (Truncated); at most maxFiles are returned
// and more is reported by the second result. Symbolic links are not followed (a link is not
// an output; the file it names may be). A file whose path is longer than schemas.MaxGuestPath
// (1,024 bytes, as for every path a request names) is not an output either: wildcards match
// names of up to 255 bytes each, so without the bound a pattern of 1,024 bytes named paths of
// 130 KB, and 1,000 of them made a result too big to store.
func (f *FS) Collect(patterns []string, maxBytes int64, maxFiles int) ([]Output, bool) {
	seen := map[string]*node{}
	for _, p := range patterns {
		f.match(f.root, nil, 0, splitPath(p), seen)
	}
	paths := make([]string, 0, len(seen))
	for p := range seen {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	more := false
	if maxFiles > 0 && len(paths) > maxFiles {
		paths, more = paths[:maxFiles], true
	}
	out := make([]Output, 0, len(paths))
	left := maxBytes
	for _, p := range paths {
		n := seen[p]
		size := n.length()
		take := min(size, max(0, left))
		o := Output{Path: p, Size: size, Truncated: take < size}
		if take > 0 {
			o.Data = make([]byte, take)
			if n.src == nil {
				n.data.readAt(o.Data, 0)
			} else if k, _ := n.src.ReadAt(o.Data, n.off); int64(k) < take {
				o.Data, o.Truncated = o.Data[:k], true
			}
		}
		left -= int64(len(o.Data))
		out = append(out, o)
	}
	return out, more
}

// MakeOutputDirs makes the directory each output pattern collects from, where it is missing: the
// components before the first one with a wildcard ("/out/*.wav": /out; "/out/a/*/x": /out/a)
// or, for a plain path, its parent ("/res/result.json": /res). A program told to write
// /out/a.json finds /out, as it would find a directory mounted there under wasmtime or wazero;
// a run that asks for no outputs sees no such directory. A pattern whose directory cannot be
// made (inside a read-only mount, a file in the way, no scratch space) is left alone: the
// guest sees what is there and nothing is collected from it.
func (f *FS) MakeOutputDirs(patterns []string) {
	for _, p := range patterns {
		comps := splitPath(p)
		if len(comps) == 0 {
			continue
		}
		i := slices.IndexFunc(comps, func(c string) bool { return strings.ContainsAny(c, `*?[\`) })
		if i < 0 {
			i = len(comps) - 1
		}
		_, _ = f.mkdirAll(comps[:i]) // see above: left alone when it cannot be made
	}
}

// match adds the files under dir (at, whose path is size bytes long) that rest matches.
func (f *FS) match(dir *node, at []string, size int, rest []string, seen map[string]*node) {
	if len(rest) == 0 || dir.kind != kindDir {
		return
	}
	c, last := rest[0], len(rest) == 1
	visit := func(name string, n *node) {
		if size+1+len(name) > schemas.MaxGuestPath {
			return
		}
		p := append(slices.Clip(at), name)
		switch {
		case last && n.kind == kindFile:
			seen["/"+strings.Join(p, "/")] = n
		case !last && n.kind == kindDir:
			f.match(n, p, size+1+len(name), rest[1:], seen)
		}
	}
	if !strings.ContainsAny(c, `*?[\`) {
		if n := dir.children[c]; n != nil {
			visit(c, n)
		}
		return
	}
	for name, n := range dir.children {
		if ok, _ := path.Match(c, name); ok {
			visit(name, n)
		}
	}
}
