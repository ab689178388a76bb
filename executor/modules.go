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
type moduleCache struct {
	dir   string
	store jetstream.ObjectStore
	m     *metrics
	group singleflight.Group // one fetch per module at a time
}

func (c *moduleCache) path(hexDigest string) string {
	return filepath.Join(c.dir, hexDigest+".wasm")
}

// get returns the path of the module's file, fetching it if needed. maxSize is the tier's
// module size limit.
func (c *moduleCache) get(ctx context.Context, hexDigest string, maxSize int64) (string, error) {
	p := c.path(hexDigest)
	if fi, err := os.Stat(p); err == nil {
		if fi.Size() > maxSize {
			return "", &moduleError{msg: fmt.Sprintf("module is larger than the tier allows (%d bytes)", maxSize)}
		}
		c.m.cacheHits.WithLabelValues("file").Inc()
		return p, nil
	}
	c.m.cacheMisses.WithLabelValues("file").Inc()
	_, err, _ := c.group.Do(hexDigest, func() (any, error) {
		return nil, c.fetch(ctx, hexDigest, maxSize)
	})
	if err != nil {
		return "", err
	}
	if fi, err := os.Stat(p); err != nil {
		return "", err
	} else if fi.Size() > maxSize { // fetched for a tier with a larger limit
		return "", &moduleError{msg: fmt.Sprintf("module is larger than the tier allows (%d bytes)", maxSize)}
	}
	return p, nil
}

func (c *moduleCache) fetch(ctx context.Context, hexDigest string, maxSize int64) error {
	if _, err := os.Stat(c.path(hexDigest)); err == nil {
		return nil // fetched by a call that finished just before ours started
	}
	obj, err := c.store.Get(ctx, schemas.ModuleObjectName(hexDigest))
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return errModuleNotFound
	} else if err != nil {
		return fmt.Errorf("get module %s: %w", hexDigest, err)
	}
	defer obj.Close()
	if info, err := obj.Info(); err == nil && info.Size > uint64(maxSize) {
		return &moduleError{msg: fmt.Sprintf("module is larger than the tier allows (%d bytes)", maxSize)}
	}
	tmp, err := os.CreateTemp(c.dir, hexDigest+".*.tmp")
	if err != nil {
		return fmt.Errorf("module cache: %w", err)
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(obj, maxSize+1))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fetch module %s: %w", hexDigest, err)
	}
	if n > maxSize {
		return &moduleError{msg: fmt.Sprintf("module is larger than the tier allows (%d bytes)", maxSize)}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != hexDigest {
		return &moduleError{msg: "stored module does not match its id"}
	}
	if err := os.Rename(tmp.Name(), c.path(hexDigest)); err != nil {
		return fmt.Errorf("module cache: %w", err)
	}
	return nil
}
