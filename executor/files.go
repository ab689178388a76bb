package executor

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/wasmwiz/wasmwiz/executor/worker"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// openBundles opens the node's bundle cache, <CacheDir>/bundles/<hex>.tar: bundles are fetched
// from the object store once per node and read in place by the workers (which keep their
// index), never copied per execution. It shares ModuleCacheBytes' bound with the modules.
func (n *Node) openBundles(ctx context.Context) error {
	store, err := n.js.ObjectStore(ctx, schemas.ObjectBundles)
	if err != nil {
		return fmt.Errorf("executor: bundle store: %w", err)
	}
	dir := filepath.Join(n.cfg.CacheDir, "bundles")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("executor: cache dir: %w", err)
	}
	if n.bundles, err = newFileCache(dir, ".tar", store, n.m, n.cfg.ModuleCacheBytes); err != nil {
		return fmt.Errorf("executor: bundle cache: %w", err)
	}
	n.bundles.replicated = n.cfg.Replicas > 1
	return nil
}

// guestFiles puts the request's files into job: inline files, mounts (each bundle fetched into
// the node's cache and held until release), working directory, outputs and the tier's caps. A
// non-empty msg is the caller's fault (a bundle deleted meanwhile): the execution fails with
// it. An error is internal (the store is unreachable): the request is tried again.
func (n *Node) guestFiles(ctx context.Context, tier schemas.Tier, req *schemas.ExecRequest, job *worker.RunJob) (release func(), msg string, err error) {
	lim := tier.FileLimits()
	job.ScratchMax = lim.ScratchBytes
	job.Workdir, job.Outputs = req.Workdir, req.Outputs
	job.OutputsMax = lim.OutputsBytes
	if req.OutputsMax > 0 && req.OutputsMax < job.OutputsMax {
		job.OutputsMax = req.OutputsMax
	}
	for _, p := range slices.Sorted(maps.Keys(req.Files)) {
		job.Files = append(job.Files, worker.InlineFile{Path: p, Data: req.Files[p]})
	}
	var held []string
	release = func() {
		for _, h := range held {
			n.bundles.release(h)
		}
	}
	for _, m := range req.Mounts {
		digest, perr := schemas.ParseModuleID(m.BundleID)
		if perr != nil {
			release()
			return func() {}, "bundle " + m.BundleID + " not found", nil
		}
		mctx, cancel := context.WithTimeout(ctx, natsTimeout)
		path, gerr := n.bundles.get(mctx, digest, lim.MaxArchiveBytes())
		cancel()
		var merr *moduleError
		switch {
		case errors.Is(gerr, errModuleNotFound):
			release()
			return func() {}, "bundle " + m.BundleID + " not found (deleted?)", nil
		case errors.As(gerr, &merr):
			release()
			return func() {}, fmt.Sprintf("bundle %s cannot be mounted: it is larger than the %s tier allows", m.BundleID, tier.Name), nil
		case gerr != nil:
			release()
			return func() {}, "", fmt.Errorf("load bundle: %w", gerr)
		}
		held = append(held, digest)
		job.Mounts = append(job.Mounts, worker.Mount{Path: m.Path, BundleHash: digest, BundlePath: path, Writable: m.Writable, Preopen: m.Preopen})
	}
	return release, "", nil
}

// filesResult puts a run's output files and scratch use into res. The scratch space a guest's
// files held is billed as memory, and is in MemoryPeakBytes already: the files' bytes are Go
// heap the worker grew for the guest, which it counts (worker.memoryUsage), and which its memory
// limit is enforced on. Adding ScratchPeak counted them twice: a guest writing a 64 MiB file was
// billed 140 MiB, and reported holding more than the limit it ran within. The peak is at least
// the scratch peak, though: the worker's heap count can miss what the collector freed of garbage
// that was there before the run.
func filesResult(res *schemas.Result, wres *worker.RunResult) {
	for _, o := range wres.Outputs {
		res.Files = append(res.Files, schemas.OutputFile{Path: o.Path, Data: o.Data, Size: o.Size, Truncated: o.Truncated})
	}
	res.FilesTruncated = wres.OutputsMore
	res.ScratchPeakBytes = wres.ScratchPeak
	res.MemoryPeakBytes = max(res.MemoryPeakBytes, wres.ScratchPeak)
}

func outputBytes(res *schemas.Result) int {
	n := 0
	for _, f := range res.Files {
		n += len(f.Data)
	}
	return n
}

// cutOutputFiles cuts up to cut bytes from the output files, the largest first, while they are
// larger than stdout and stderr, marking them truncated; it reports whether it cut anything
// (fitResult). All of cut is taken in one call, across as many files as it needs: cutting one
// file per call made fitResult encode the whole result again for each of up to 1,000 files.
func cutOutputFiles(res *schemas.Result, cut int) bool {
	did := false
	for cut > 0 {
		big := -1
		for i, f := range res.Files {
			if big < 0 || len(f.Data) > len(res.Files[big].Data) {
				big = i
			}
		}
		if big < 0 || len(res.Files[big].Data) == 0 || len(res.Files[big].Data) < max(len(res.Stdout), len(res.Stderr)) {
			return did
		}
		f := &res.Files[big]
		take := min(cut, len(f.Data))
		f.Data, f.Truncated = f.Data[:len(f.Data)-take], true
		cut -= take
		did = true
	}
	return did
}
