package executor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/singleflight"

	"github.com/wasmwiz/wasmwiz/schemas"
)

var errModuleNotFound = errors.New("module not found")

// moduleError is a module that exists but cannot be used; its message is for the caller.
type moduleError struct{ msg string }

func (e *moduleError) Error() string { return e.msg }

// moduleCache keeps module files on the node's disk, <dir>/<hex>.wasm, fetched from the object
// store on first use. Files are written under a temporary name and renamed once their SHA-256
// matches their name, so a file that exists is complete and correct; workers read them by path.
//
// The cache holds at most maxBytes (beyond the files in use): past it, the least recently used
// files that no job holds are removed. A job holds its module from get to release, so a worker
// never finds its file gone.
type moduleCache struct {
	dir      string
	ext      string // file name extension: ".wasm" (modules) or ".tar" (bundles, see files.go)
	store    jetstream.ObjectStore
	m        *metrics
	maxBytes int64
	group    singleflight.Group // one fetch per module at a time
	// replicated: the object store has followers, whose direct gets can miss an object the
	// leader has acknowledged a moment ago (see RATIONALE: leader reads), so "not found" is
	// asked again before it is believed.
	replicated bool
	// onFetch, if set, is called after a module is fetched into the cache, before the getters
	// waiting for it go on (the node fetches the module's compiled artifact there).
	onFetch func(ctx context.Context, hexDigest string)

	mu    sync.Mutex
	files map[string]*cachedFile // by hex digest
	total int64
	clock uint64
}

type cachedFile struct {
	size  int64
	used  uint64 // clock value of the last get
	inUse int
}

// newModuleCache opens the cache in dir, keeping the files already there (a restarted node
// starts warm) and removing temporary files left by a crash.
func newModuleCache(dir string, store jetstream.ObjectStore, m *metrics, maxBytes int64) (*moduleCache, error) {
	return newFileCache(dir, ".wasm", store, m, maxBytes)
}

// newFileCache is newModuleCache for files named <hex><ext>; the object store names them
// sha256-<hex> as it does modules.
func newFileCache(dir, ext string, store jetstream.ObjectStore, m *metrics, maxBytes int64) (*moduleCache, error) {
	c := &moduleCache{dir: dir, ext: ext, store: store, m: m, maxBytes: maxBytes, files: map[string]*cachedFile{}}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasSuffix(name, ".tmp") {
			_ = os.Remove(filepath.Join(dir, name))
			continue
		}
		h, ok := strings.CutSuffix(name, c.ext)
		if !ok {
			continue
		}
		if fi, err := e.Info(); err == nil {
			c.files[h] = &cachedFile{size: fi.Size()}
			c.total += fi.Size()
		}
	}
	c.mu.Lock()
	c.evictLocked()
	c.mu.Unlock()
	return c, nil
}

// hold marks a cached file used and in use; false if it is not cached.
func (c *moduleCache) hold(hexDigest string) (*cachedFile, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.files[hexDigest]
	if ok {
		c.clock++
		f.used = c.clock
		f.inUse++
	}
	return f, ok
}

// size is the size of a file held (between get and release).
func (c *moduleCache) size(hexDigest string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f, ok := c.files[hexDigest]; ok {
		return f.size
	}
	return 0
}

// release ends a hold taken by a successful get.
func (c *moduleCache) release(hexDigest string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f, ok := c.files[hexDigest]; ok && f.inUse > 0 {
		f.inUse--
	}
	c.evictLocked()
}

// evictLocked removes least recently used files not in use until the cache fits.
func (c *moduleCache) evictLocked() {
	for c.maxBytes > 0 && c.total > c.maxBytes {
		var victim string
		var oldest *cachedFile
		for h, f := range c.files {
			if f.inUse == 0 && (oldest == nil || f.used < oldest.used) {
				victim, oldest = h, f
			}
		}
		if oldest == nil {
			return // everything is in use
		}
		delete(c.files, victim)
		c.total -= oldest.size
		_ = os.Remove(c.path(victim))
	}
}

func tooLargeError(maxSize int64) *moduleError {
	return &moduleError{msg: fmt.Sprintf("module is larger than the tier allows (%d bytes)", maxSize)}
}

func (c *moduleCache) path(hexDigest string) string {
	return filepath.Join(c.dir, hexDigest+c.ext)
}

// get returns the path of the module's file, fetching it if needed, and holds the file until
// release. maxSize is the tier's module size limit.
func (c *moduleCache) get(ctx context.Context, hexDigest string, maxSize int64) (string, error) {
	if f, ok := c.hold(hexDigest); ok {
		c.m.fileHits.Inc()
		if f.size > maxSize {
			c.release(hexDigest)
			return "", tooLargeError(maxSize)
		}
		return c.path(hexDigest), nil
	}
	c.m.cacheMisses.WithLabelValues("file").Inc()
	_, err, _ := c.group.Do(hexDigest, func() (any, error) {
		err := c.fetch(ctx, hexDigest, maxSize)
		if err == nil && c.onFetch != nil {
			c.onFetch(ctx, hexDigest)
		}
		return nil, err
	})
	if err != nil {
		return "", err
	}
	f, ok := c.hold(hexDigest)
	if !ok { // evicted by another job's release between the fetch and now: rare, retried
		return "", fmt.Errorf("module %s left the cache as it arrived", hexDigest)
	}
	if f.size > maxSize { // fetched for a tier with a larger limit
		c.release(hexDigest)
		return "", tooLargeError(maxSize)
	}
	return c.path(hexDigest), nil
}

// fetch copies a module from the object store into the file cache. A read that nats.go reports
// as corrupt (its digest check failed) is tried again: seen once in CI on a fresh 3-node R3
// cluster, most likely a follower that had not yet applied every chunk. So is a module not found
// on a replicated store: the gateway checked that it exists before publishing the request, and
// a follower may not have it yet. Whatever is kept is checked against its sha256 id anyway.
func (c *moduleCache) fetch(ctx context.Context, hexDigest string, maxSize int64) error {
	return c.retrying(ctx, func() error { return c.fetchOnce(ctx, hexDigest, maxSize) })
}

// retrying calls fetch until it succeeds, fails for good or has failed five times.
func (c *moduleCache) retrying(ctx context.Context, fetch func() error) error {
	var err error
	for attempt := range 5 {
		err = fetch()
		retry := errors.Is(err, jetstream.ErrDigestMismatch) || (c.replicated && errors.Is(err, errModuleNotFound))
		if !retry {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt+1) * 50 * time.Millisecond):
		}
	}
	return err
}

func (c *moduleCache) fetchOnce(ctx context.Context, hexDigest string, maxSize int64) error {
	c.mu.Lock()
	_, ok := c.files[hexDigest]
	c.mu.Unlock()
	if ok {
		return nil // fetched by a call that finished just before ours started
	}
	tmp, n, err := c.download(ctx, hexDigest, maxSize)
	if err != nil {
		return err
	}
	if installed, err := c.install(tmp, hexDigest, n, false); err != nil || !installed {
		os.Remove(tmp)
		return err
	}
	return nil
}

// download copies a module from the object store into a temporary file of the cache's
// directory, checked against its sha256 id, and returns the file's path and size. The caller
// installs or removes the file.
func (c *moduleCache) download(ctx context.Context, hexDigest string, maxSize int64) (string, int64, error) {
	obj, err := c.store.Get(ctx, schemas.ModuleObjectName(hexDigest))
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return "", 0, errModuleNotFound
	} else if err != nil {
		return "", 0, fmt.Errorf("get module %s: %w", hexDigest, err)
	}
	defer obj.Close()
	if info, err := obj.Info(); err == nil && info.Size > uint64(maxSize) {
		return "", 0, tooLargeError(maxSize)
	}
	tmp, err := os.CreateTemp(c.dir, hexDigest+".*.tmp")
	if err != nil {
		return "", 0, fmt.Errorf("module cache: %w", err)
	}
	keep := false
	defer func() {
		if !keep {
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(obj, maxSize+1))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", 0, fmt.Errorf("fetch module %s: %w", hexDigest, err)
	}
	if n > maxSize {
		return "", 0, tooLargeError(maxSize)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != hexDigest {
		return "", 0, &moduleError{msg: "stored module does not match its id"}
	}
	keep = true
	return tmp.Name(), n, nil
}

// install makes the downloaded file tmp the cache's file of the module, held when hold is set,
// unless the cache has one already: then tmp stays where it is and install reports false.
func (c *moduleCache) install(tmp, hexDigest string, n int64, hold bool) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.files[hexDigest]; ok {
		return false, nil
	}
	if err := os.Rename(tmp, c.path(hexDigest)); err != nil {
		os.Remove(tmp)
		return false, fmt.Errorf("module cache: %w", err)
	}
	c.clock++
	f := &cachedFile{size: n, used: c.clock}
	if hold {
		f.inUse = 1
	}
	c.files[hexDigest] = f
	c.total += n // trimmed by the release that follows every get
	return true, nil
}

// getFresh is get for an upload's compile: the module is fetched from the object store whether
// or not the node has it, so that an upload of bytes the node already holds (another tenant's
// upload, perhaps) does the same work as one of new bytes, and its time tells nothing about
// other tenants (issue 12, upload timing; see compileModule). It counts as a file-cache miss.
// The file it returns is the cache's, fetched now, or, when the cache has one already, the
// fresh copy beside it; release ends the hold or removes the copy. The module's compiled
// artifact is not fetched: the compile is done afresh anyway.
func (c *moduleCache) getFresh(ctx context.Context, hexDigest string, maxSize int64) (path string, size int64, release func(), err error) {
	c.m.cacheMisses.WithLabelValues("file").Inc()
	var tmp string
	err = c.retrying(ctx, func() (err error) {
		tmp, size, err = c.download(ctx, hexDigest, maxSize)
		return err
	})
	if err != nil {
		return "", 0, nil, err
	}
	installed, err := c.install(tmp, hexDigest, size, true)
	switch {
	case err != nil:
		return "", 0, nil, err
	case installed:
		return c.path(hexDigest), size, func() { c.release(hexDigest) }, nil
	}
	return tmp, size, func() { os.Remove(tmp) }, nil
}
