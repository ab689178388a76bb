package executor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sys/cpu"

	"github.com/wasmwiz/wasmwiz/internal/streams"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// Compiled artifacts are shared between nodes through the object store schemas.ObjectCompiled,
// so that a module is compiled once per cluster, not once per node: the node that compiles an
// upload (serveCompile) stores the file wazero wrote for it, and a node that fetches a module
// for the first time fetches its artifact with it, into the directory of wazero's file cache,
// where its workers find it instead of compiling.
//
// wazero names an artifact after the module, the runtime configuration and the CPU's features
// (a SHA-256 of them), and checks what it reads back (its own format, version and a checksum);
// a file is only ever looked up under its own name. So sharing cannot make a worker run code
// compiled for another module or another CPU: at worst a node fetches a file its wazero never
// asks for, and compiles itself. Objects are named per wazero version, platform and CPU
// fingerprint (artifactPlatform) so that nodes on different CPUs keep apart anyway.
//
// The store holds machine code that workers load and run: only the service's own roles can
// write it (NATS accounts keep tenants out of the WASMWIZ account; see SECURITY.md).

// HeaderCacheFile names an artifact's file under the cache directory, on its object.
const HeaderCacheFile = "Wasmwiz-Cache-File"

// maxArtifactBytes bounds an artifact a node accepts from the store.
const maxArtifactBytes = 4 << 30

// artifactRetryAfter is how long a node remembers that the store had no artifact for a module.
const artifactRetryAfter = time.Minute

// cacheFileName is an artifact's path under the cache directory, as wazero writes it.
var cacheFileName = regexp.MustCompile(`^wazero-[A-Za-z0-9._+-]+/[0-9a-f]{64}$`)

type artifacts struct {
	js       jetstream.JetStream
	store    jetstream.ObjectStore
	dir      string // wazero's cache directory (the workers' Hello.CacheDir)
	platform string // object name prefix: wazero version, GOARCH, GOOS, CPU fingerprint
	log      *slog.Logger
	m        *metrics

	mu      sync.Mutex
	have    map[string]bool      // modules whose artifact this node has fetched or stored
	missing map[string]time.Time // modules the store had no artifact for, and when it said so
}

func newArtifacts(js jetstream.JetStream, store jetstream.ObjectStore, dir string, log *slog.Logger, m *metrics) *artifacts {
	return &artifacts{js: js, store: store, dir: dir, platform: artifactPlatform(), log: log, m: m,
		have: map[string]bool{}, missing: map[string]time.Time{}}
}

// artifactPlatform names what an artifact is valid for: wazero's cache directory name (its
// version, GOARCH and GOOS) and a fingerprint of the CPU features Go sees.
func artifactPlatform() string {
	version := "dev"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/tetratelabs/wazero" && d.Version != "" && d.Version != "(devel)" {
				version = d.Version
			}
		}
	}
	var features string
	switch runtime.GOARCH {
	case "amd64", "386":
		features = fmt.Sprintf("%+v", cpu.X86)
	case "arm64":
		features = fmt.Sprintf("%+v", cpu.ARM64)
	}
	sum := sha256.Sum256([]byte(features))
	return fmt.Sprintf("wazero-%s-%s-%s/%s", version, runtime.GOARCH, runtime.GOOS, hex.EncodeToString(sum[:6]))
}

func (a *artifacts) objectName(hexDigest string) string { return a.platform + "/" + hexDigest }

// ownCacheFile reports whether name is a file of this wazero's cache directory
// ("wazero-<version>-<arch>-<os>/<hex key>"), and nothing else: no other directory, no escape.
func (a *artifacts) ownCacheFile(name string) bool {
	return cacheFileName.MatchString(name) && strings.HasPrefix(a.platform, path.Dir(name)+"/")
}

// shared reports whether the store has (or this node put) the module's artifact.
func (a *artifacts) shared(hexDigest string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.have[hexDigest]
}

// fetch puts the module's artifact, if the store has one, into the file cache's directory. It
// is called once per module the node fetches (moduleCache.onFetch); failures only cost a compile.
func (a *artifacts) fetch(ctx context.Context, hexDigest string) {
	a.mu.Lock()
	if a.have[hexDigest] || time.Since(a.missing[hexDigest]) < artifactRetryAfter {
		a.mu.Unlock()
		return
	}
	a.mu.Unlock()
	err := a.fetchOnce(ctx, hexDigest)
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case err == nil:
		a.have[hexDigest] = true
		delete(a.missing, hexDigest)
		a.m.cacheHits.WithLabelValues("artifact").Inc()
	case errors.Is(err, jetstream.ErrObjectNotFound):
		if len(a.missing) > 10_000 {
			for h, at := range a.missing {
				if time.Since(at) >= artifactRetryAfter {
					delete(a.missing, h)
				}
			}
		}
		a.missing[hexDigest] = time.Now()
		a.m.cacheMisses.WithLabelValues("artifact").Inc()
	default:
		a.m.cacheMisses.WithLabelValues("artifact").Inc()
		a.log.Warn("compiled artifact not fetched", "module_hash", hexDigest, "err", err)
	}
}

func (a *artifacts) fetchOnce(ctx context.Context, hexDigest string) error {
	obj, err := a.store.Get(ctx, a.objectName(hexDigest))
	if err != nil {
		return err
	}
	defer obj.Close()
	info, err := obj.Info()
	if err != nil {
		return err
	}
	var name string
	if info.Headers != nil {
		name = nats.Header(info.Headers).Get(HeaderCacheFile)
	}
	// The name comes from the store.
	if !a.ownCacheFile(name) {
		return fmt.Errorf("artifact names %q, not a file of this wazero's cache", name)
	}
	if info.Size > maxArtifactBytes {
		return fmt.Errorf("artifact of %d bytes", info.Size)
	}
	dst := filepath.Join(a.dir, filepath.FromSlash(name))
	if _, err := os.Stat(dst); err == nil {
		return nil // compiled here already
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), filepath.Base(dst)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())                                  // a no-op after the rename
	_, err = io.Copy(tmp, io.LimitReader(obj, maxArtifactBytes)) // the object store checks its digest at the end
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	// The file keeps the time it was stored at: a file wazero writes is new.
	if err := os.Chtimes(tmp.Name(), info.ModTime, info.ModTime); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

// artifactPoll is how often a node looks for the artifact of a module still compiling.
const artifactPoll = 250 * time.Millisecond

// stored reports whether the store has the module's artifact, and forgets a miss remembered
// for it (fetch then asks the store again).
func (a *artifacts) stored(ctx context.Context, hexDigest string) bool {
	gctx, cancel := context.WithTimeout(ctx, natsTimeout)
	defer cancel()
	if _, err := a.store.GetInfo(gctx, a.objectName(hexDigest)); err != nil {
		return false
	}
	a.mu.Lock()
	delete(a.missing, hexDigest)
	a.mu.Unlock()
	return true
}

// awaitCompile waits, until the compile's deadline, for the upload's compile of a module that
// an execution found compiling (ExecRequest.CompileDeadline), on this node or another: for its
// shared artifact, so that the execution loads the module rather than compiling it a second time
// beside that compile, or for the module's record to say the compile ended without one. It
// returns the record's error when the compile refused the module. Otherwise the run goes on,
// loading the artifact or, without one (the compile did not share it, or the deadline passed),
// compiling as it would without sharing.
func (n *Node) awaitCompile(ctx context.Context, log *slog.Logger, tenantID, hexDigest string, deadline time.Time) (refused string) {
	start := time.Now()
	t := time.NewTicker(artifactPoll)
	defer t.Stop()
	for !n.artifacts.shared(hexDigest) {
		// The record first: a compile stores its artifact before it answers, and its gateway
		// writes the record after the answer, so a record read "ready" here finds the artifact
		// next if there is one.
		var m schemas.Module
		gctx, cancel := context.WithTimeout(ctx, natsTimeout)
		e, err := n.modRefs.Get(gctx, schemas.ModuleRefKey(tenantID, hexDigest))
		cancel()
		if err == nil && json.Unmarshal(e.Value(), &m) != nil {
			err = errors.New("module record is not valid JSON")
		}
		if n.artifacts.stored(ctx, hexDigest) {
			n.artifacts.fetch(ctx, hexDigest)
			break
		}
		switch {
		case err == nil && m.Status == schemas.ModuleFailed:
			log.Info("module was compiling for its upload, which refused it", "module_hash", hexDigest, "waited_ms", ms(time.Since(start)))
			return m.Error
		case err == nil && m.Status != schemas.ModuleCompiling, errors.Is(err, jetstream.ErrKeyNotFound):
			log.Info("module was compiling for its upload, which shared no artifact; compiling it here", "module_hash", hexDigest,
				"status", m.Status, "waited_ms", ms(time.Since(start)))
			return ""
		case !time.Now().Before(deadline):
			log.Warn("module still compiling for its upload past its deadline; compiling it here", "module_hash", hexDigest,
				"waited_ms", ms(time.Since(start)), "err", err)
			return ""
		}
		select {
		case <-ctx.Done():
			return ""
		case <-t.C:
		}
	}
	if waited := time.Since(start); waited >= artifactPoll && n.artifacts.shared(hexDigest) {
		log.Info("module was compiling for its upload: waited for its shared artifact instead of compiling it again", "module_hash", hexDigest, "waited_ms", ms(waited))
	}
	return ""
}

// put stores the artifact a worker compiled for sharing (CompileResult.CacheFile); one the store
// has already is stored aside (streams.PutAside) instead, with the same work.
func (a *artifacts) put(ctx context.Context, hexDigest, cacheFile string) {
	if !a.ownCacheFile(cacheFile) {
		a.log.Warn("compiled artifact not shared: unexpected file name", "module_hash", hexDigest, "file", cacheFile)
		return
	}
	f, err := os.Open(filepath.Join(a.dir, filepath.FromSlash(cacheFile)))
	if err != nil {
		a.log.Warn("compiled artifact not shared", "module_hash", hexDigest, "err", err)
		return
	}
	defer f.Close()
	if _, err := a.store.GetInfo(ctx, a.objectName(hexDigest)); err == nil {
		// The store has it (another upload's compile put it): the same bytes are stored aside,
		// so that an upload of known bytes costs what the first one did (issue 12, upload
		// timing), and the object other nodes may be reading is not replaced under them.
		if err := streams.PutAside(ctx, a.js, schemas.ObjectCompiled, a.store, f); err != nil {
			a.log.Warn("compiled artifact: storing aside", "module_hash", hexDigest, "err", err)
		}
		a.mu.Lock()
		a.have[hexDigest] = true
		delete(a.missing, hexDigest)
		a.mu.Unlock()
		return
	}
	meta := jetstream.ObjectMeta{Name: a.objectName(hexDigest), Headers: nats.Header{HeaderCacheFile: []string{cacheFile}}}
	if _, err := a.store.Put(ctx, meta, f); err != nil {
		a.log.Warn("compiled artifact not shared", "module_hash", hexDigest, "err", err)
		return
	}
	a.mu.Lock()
	a.have[hexDigest] = true
	delete(a.missing, hexDigest)
	a.mu.Unlock()
}
