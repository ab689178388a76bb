package worker

import (
	"container/list"
	"fmt"
	"io"
	"os"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"

	"github.com/wasmwiz/wasmwiz/bundle"
	"github.com/wasmwiz/wasmwiz/executor/worker/guestfs"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// maxOutputFiles bounds the files one execution returns.
const maxOutputFiles = 1000

// guestFS makes the file system of one run: scratch with /tmp and /dev, the inline files, the
// mounted bundles and the working directory. An error is the request's fault (a path that
// cannot be made, files larger than the scratch space) and is reported as a failed run. random
// is the run's random source (guestRand), read by /dev/urandom as by random_get.
func (w *worker) guestFS(job *RunJob, stdin io.Reader, stdout, stderr io.Writer, random io.Reader) (*guestfs.FS, error) {
	fsys := guestfs.New(guestfs.Config{ScratchMax: job.ScratchMax, Stdin: stdin, Stdout: stdout, Stderr: stderr, Random: random})
	for _, m := range job.Mounts {
		b, err := w.bundles.get(m.BundleHash, m.BundlePath)
		if err != nil {
			w.log.Error("reading bundle", "bundle_hash", m.BundleHash, "err", err)
			return nil, fmt.Errorf("bundle %s is not readable", m.BundleHash)
		}
		mount := fsys.Mount
		if m.Writable {
			mount = fsys.CopyIn
		}
		if err := mount(m.Path, b); err != nil {
			return nil, fmt.Errorf("cannot mount at %s: %w", m.Path, err)
		}
		if m.Preopen != "" {
			fsys.Preopen(m.Preopen)
		}
	}
	for _, f := range job.Files {
		if err := fsys.AddFile(f.Path, f.Data); err != nil {
			return nil, fmt.Errorf("cannot write %s: %w", f.Path, err)
		}
	}
	fsys.MakeOutputDirs(job.Outputs)
	if job.Workdir != "" {
		if err := fsys.MkdirAll(job.Workdir); err != nil {
			return nil, fmt.Errorf("cannot make the working directory %s: %w", job.Workdir, err)
		}
		fsys.PreopenWorkdir(job.Workdir)
	}
	return fsys, nil
}

// stdinReader is the guest's stdin (fd 0 and /dev/stdin): the job's bytes, or the file named by
// RunJob.StdinFile once the guest's file system holds it. n counts the bytes read.
type stdinReader struct {
	r io.Reader
	n int64
}

func (s *stdinReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.n += int64(n)
	return n, err
}

// openStdin opens a file of the guest's file system to read as its stdin. An error is the
// request's fault (no such file, a directory) and is reported as a failed run.
func openStdin(fsys *guestfs.FS, p string) (io.Reader, error) {
	st, errno := fsys.Stat(p)
	if errno == 0 && st.Mode.IsDir() {
		errno = experimentalsys.EISDIR
	}
	var f experimentalsys.File
	if errno == 0 {
		f, errno = fsys.OpenFile(p, experimentalsys.O_RDONLY, 0)
	}
	if errno != 0 {
		return nil, fmt.Errorf("stdin_file %s: %w", p, errno)
	}
	return fileReader{f}, nil
}

// fileReader reads a guest file as an io.Reader. The file lives as long as the run's file
// system and holds nothing of the host's, so it is never closed.
type fileReader struct{ f experimentalsys.File }

func (r fileReader) Read(p []byte) (int, error) {
	n, errno := r.f.Read(p)
	switch {
	case errno != 0:
		return n, errno
	case n == 0 && len(p) > 0:
		return 0, io.EOF
	}
	return n, nil
}

// collectOutputs puts the requested files and the scratch figures into res.
func collectOutputs(job *RunJob, fsys *guestfs.FS, res *RunResult) {
	res.ScratchPeak, res.ScratchFull = fsys.Peak(), fsys.Full()
	if res.ScratchFull && res.Status != schemas.StatusSucceeded {
		note := fmt.Sprintf("the guest's scratch space is full (its tier allows %d bytes of files)", fsys.ScratchMax())
		if res.Error == "" {
			res.Error = note
		} else {
			res.Error += "; " + note
		}
	}
	if len(job.Outputs) == 0 {
		return
	}
	outs, more := fsys.Collect(job.Outputs, job.OutputsMax, maxOutputFiles)
	res.OutputsMore = more
	for _, o := range outs {
		res.Outputs = append(res.Outputs, OutputFile{Path: o.Path, Data: o.Data, Size: o.Size, Truncated: o.Truncated})
	}
}

// maxBundles is how many bundle indexes a worker keeps (each holds its archive open).
const maxBundles = 32

// bundleCache keeps the trees of recently mounted bundles, each over its open archive, so a
// mount costs a map lookup, not a read of the archive. Not safe for concurrent use.
type bundleCache struct {
	items map[string]*list.Element
	order *list.List // front = most recent; values *cachedBundle
	seq   uint32
}

type cachedBundle struct {
	hash string
	b    *guestfs.Bundle
	f    *os.File
}

func newBundleCache() *bundleCache {
	return &bundleCache{items: map[string]*list.Element{}, order: list.New()}
}

func (c *bundleCache) get(hash, path string) (*guestfs.Bundle, error) {
	if e, ok := c.items[hash]; ok {
		c.order.MoveToFront(e)
		return e.Value.(*cachedBundle).b, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	// The node checked the archive's digest; this checks its entries again (cheap, and the
	// worker trusts nothing it would serve to a guest unchecked).
	idx, err := bundle.Scan(f, bundle.Limits{}, nil)
	if err != nil {
		f.Close()
		return nil, err
	}
	c.seq++
	b, err := guestfs.NewBundle(idx, f, c.seq)
	if err != nil {
		f.Close()
		return nil, err
	}
	c.items[hash] = c.order.PushFront(&cachedBundle{hash: hash, b: b, f: f})
	for c.order.Len() > maxBundles {
		old := c.order.Back()
		cb := old.Value.(*cachedBundle)
		c.order.Remove(old)
		delete(c.items, cb.hash)
		cb.f.Close()
	}
	return b, nil
}

func (c *bundleCache) closeAll() {
	for e := c.order.Front(); e != nil; e = e.Next() {
		e.Value.(*cachedBundle).f.Close()
	}
	c.items, c.order = map[string]*list.Element{}, list.New()
}
