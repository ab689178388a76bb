package guestfs

import (
	"context"
	"encoding/binary"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/experimental/sysfs"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
)

type ctxKey struct{}

// WithFS returns a context whose calls into WASI see f: the overrides below need the guest's
// file system. Use it for the context _start is called with.
func WithFS(ctx context.Context, f *FS) context.Context {
	return context.WithValue(ctx, ctxKey{}, f)
}

func fromContext(ctx context.Context) *FS {
	f, _ := ctx.Value(ctxKey{}).(*FS)
	return f
}

// FSConfig mounts f at "/" for a module, and preopens each directory given to f.Preopen under
// its own name as well.
func FSConfig(f *FS) wazero.FSConfig {
	c := wazero.NewFSConfig().(sysfs.FSConfig).WithSysFSMount(f, "/")
	for _, d := range f.preopens {
		c = c.(sysfs.FSConfig).WithSysFSMount(f.Sub(d), d)
	}
	if f.workdir == "" || f.workdir == "/" {
		return c
	}
	names := make([]string, 0, len(f.root.children))
	for name, n := range f.root.children {
		if n.kind == kindDir && !slices.Contains(f.preopens, name) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		c = c.(sysfs.FSConfig).WithSysFSMount(f.Sub("/"+name), "/"+name)
	}
	return c.(sysfs.FSConfig).WithSysFSMount(f.Sub(f.workdir), ".") // last: see PreopenWorkdir
}

// WASI error numbers this package answers itself (WASI preview 1 errno).
const (
	wasiESUCCESS = 0
	wasiEFAULT   = 21
	wasiEIO      = 29
	wasiENOSPC   = 51
	wasiENOTDIR  = 54
	wasiEPERM    = 63
)

// wasiErrno maps the errors lookup returns to WASI's numbers.
func wasiErrno(e experimentalsys.Errno) uint64 {
	switch e {
	case 0:
		return wasiESUCCESS
	case experimentalsys.ENOENT:
		return 44
	case experimentalsys.ENOTDIR:
		return wasiENOTDIR
	case experimentalsys.ELOOP:
		return 32
	case experimentalsys.ENAMETOOLONG:
		return 37
	case experimentalsys.EPERM:
		return wasiEPERM
	}
	return wasiEIO
}

// Instantiate instantiates wazero's wasi_snapshot_preview1 in r with four of its functions
// wrapped:
//
//   - path_filestat_get of a path that climbs out of its directory (".." first, after
//     cleaning) is answered from the guest's FS by the directory's own path. wazero refuses
//     such a path with EPERM even when the directory is not a preopen and its parent is in the
//     same tree; wasi-libc's readdir (from late 2022) stats ".." when fd_readdir gives no
//     inode, which wazero never does for "..", so scandir and everything built on it failed.
//   - fd_write and fd_pwrite report a write refused for lack of scratch space as ENOSPC, which
//     wazero's error set cannot express (it would be EIO).
//   - poll_oneoff takes clock subscriptions with the abstime flag, which wazero refuses with
//     ENOTSUP: each is turned into the relative timeout it means by the guest's own clock
//     (wazero's clock_time_get, so the fixed clock where the guest has it) for the call. That is
//     clock_nanosleep with TIMER_ABSTIME, which CPython 3.11+ uses for time.sleep: it raised
//     "OSError: [Errno 58] Not supported".
//
// Everything else is wazero's own implementation, called as it is.
func Instantiate(ctx context.Context, r wazero.Runtime) error {
	const name = wasi_snapshot_preview1.ModuleName
	exporter := wasi_snapshot_preview1.NewFunctionExporter()
	probe := r.NewHostModuleBuilder(name)
	exporter.ExportFunctions(probe)
	compiled, err := probe.Compile(ctx)
	if err != nil {
		return err
	}
	defs := compiled.ExportedFunctions()
	original := func(fn string) (api.GoModuleFunction, api.FunctionDefinition, error) {
		d, ok := defs[fn]
		if !ok {
			return nil, nil, fmt.Errorf("wasi: no %s", fn)
		}
		g, ok := d.GoFunction().(api.GoModuleFunction)
		if !ok {
			return nil, nil, fmt.Errorf("wasi: %s is not a Go function", fn)
		}
		return g, d, nil
	}
	b := r.NewHostModuleBuilder(name)
	exporter.ExportFunctions(b)
	fdFilestat, _, err := original("fd_filestat_get")
	if err != nil {
		return err
	}
	clockTimeGet, _, err := original("clock_time_get")
	if err != nil {
		return err
	}
	wrap := map[string]func(api.GoModuleFunction) api.GoModuleFunction{
		"path_filestat_get": func(orig api.GoModuleFunction) api.GoModuleFunction {
			return pathFilestatGet(orig, fdFilestat)
		},
		"poll_oneoff": func(orig api.GoModuleFunction) api.GoModuleFunction {
			return pollOneoff(orig, clockTimeGet)
		},
		"fd_write":  noSpace,
		"fd_pwrite": noSpace,
	}
	for fn, w := range wrap {
		orig, d, err := original(fn)
		if err != nil {
			return err
		}
		b.NewFunctionBuilder().
			WithGoModuleFunction(w(orig), d.ParamTypes(), d.ResultTypes()).
			WithParameterNames(d.ParamNames()...).
			WithResultNames(d.ResultNames()...).
			Export(fn)
	}
	_ = compiled.Close(ctx)
	_, err = b.Instantiate(ctx)
	return err
}

// noSpace turns EIO into ENOSPC when the write failed for lack of scratch space.
func noSpace(orig api.GoModuleFunction) api.GoModuleFunction {
	return api.GoModuleFunc(func(ctx context.Context, mod api.Module, stack []uint64) {
		orig.Call(ctx, mod, stack)
		if stack[0] == wasiEIO {
			if f := fromContext(ctx); f != nil && f.takeNoSpace() {
				stack[0] = wasiENOSPC
			}
		}
	})
}

// pollOneoff answers poll_oneoff(in, out, nsubscriptions, result.nevents) as wazero does, once
// every clock subscription with the abstime flag (subscription_clock_abstime) is made relative:
// its timeout becomes the time left until it by the subscription's clock, read with wazero's
// clock_time_get (the guest's clock, fixed or real), and its flag is cleared. The subscriptions
// are the guest's input: they are put back as they were after the call.
func pollOneoff(orig, clockTimeGet api.GoModuleFunction) api.GoModuleFunction {
	const (
		subSize    = 48
		eventClock = 0
		abstime    = 1
	)
	return api.GoModuleFunc(func(ctx context.Context, mod api.Module, stack []uint64) {
		in, out, n := uint32(stack[0]), uint32(stack[1]), uint32(stack[2])
		mem := mod.Memory()
		subs, ok := mem.Read(in, n*subSize)
		if n == 0 || n > 1<<16 || !ok {
			orig.Call(ctx, mod, stack)
			return
		}
		type saved struct {
			at      uint32
			timeout uint64
			flags   uint16
		}
		var restore []saved
		for i := range n {
			sub := subs[i*subSize:]
			if sub[8] != eventClock || binary.LittleEndian.Uint16(sub[40:])&abstime == 0 {
				continue
			}
			r := saved{at: i * subSize, timeout: binary.LittleEndian.Uint64(sub[24:]), flags: binary.LittleEndian.Uint16(sub[40:])}
			// The clock's time now, written by clock_time_get into the events buffer, which
			// poll_oneoff clears and fills anyway.
			st := []uint64{uint64(binary.LittleEndian.Uint32(sub[16:])), 1, uint64(out)}
			clockTimeGet.Call(ctx, mod, st)
			now, ok := mem.ReadUint64Le(out)
			if st[0] != wasiESUCCESS || !ok {
				continue // left to wazero, which refuses it as before
			}
			restore = append(restore, r)
			until := r.timeout
			left := uint64(0)
			if until > now {
				left = until - now
			}
			binary.LittleEndian.PutUint64(sub[24:], left)
			binary.LittleEndian.PutUint16(sub[40:], r.flags&^abstime)
		}
		orig.Call(ctx, mod, stack)
		for _, r := range restore {
			binary.LittleEndian.PutUint64(subs[r.at+24:], r.timeout)
			binary.LittleEndian.PutUint16(subs[r.at+40:], r.flags)
		}
	})
}

// pathFilestatGet answers path_filestat_get(fd, flags, path, path_len, result) for a path that
// climbs out of fd's directory; wazero answers the rest.
func pathFilestatGet(orig, fdFilestat api.GoModuleFunction) api.GoModuleFunction {
	return api.GoModuleFunc(func(ctx context.Context, mod api.Module, stack []uint64) {
		f := fromContext(ctx)
		fd, flags, ptr, size, result := uint32(stack[0]), uint32(stack[1]), uint32(stack[2]), uint32(stack[3]), uint32(stack[4])
		raw, ok := mod.Memory().Read(ptr, size)
		if f == nil || !ok {
			orig.Call(ctx, mod, stack)
			return
		}
		if c := path.Clean(string(raw)); c != ".." && !strings.HasPrefix(c, "../") {
			orig.Call(ctx, mod, stack)
			return
		}
		rel := string(raw) // copied: the next call may write guest memory
		// The directory's inode, by wazero's own fd_filestat_get, into the result buffer (which
		// is overwritten below).
		st := []uint64{uint64(fd), uint64(result)}
		fdFilestat.Call(ctx, mod, st)
		if st[0] != wasiESUCCESS {
			stack[0] = st[0]
			return
		}
		buf, ok := mod.Memory().Read(result, 64)
		if !ok {
			stack[0] = wasiEFAULT
			return
		}
		const filetypeDirectory = 3
		if buf[16] != filetypeDirectory {
			stack[0] = wasiENOTDIR
			return
		}
		dir, ok := f.dirs[binary.LittleEndian.Uint64(buf[8:])]
		if !ok {
			stack[0] = wasiEPERM // a directory this FS did not open: as wazero answers
			return
		}
		var (
			s     sys.Stat_t
			errno experimentalsys.Errno
		)
		target := path.Join("/", dir, rel)
		if flags&1 != 0 { // LOOKUP_SYMLINK_FOLLOW
			s, errno = f.Stat(target)
		} else {
			s, errno = f.Lstat(target)
		}
		if errno != 0 {
			stack[0] = wasiErrno(errno)
			return
		}
		binary.LittleEndian.PutUint64(buf, s.Dev)
		binary.LittleEndian.PutUint64(buf[8:], s.Ino)
		binary.LittleEndian.PutUint64(buf[16:], uint64(filetype(s)))
		binary.LittleEndian.PutUint64(buf[24:], s.Nlink)
		binary.LittleEndian.PutUint64(buf[32:], uint64(s.Size))
		binary.LittleEndian.PutUint64(buf[40:], uint64(s.Atim))
		binary.LittleEndian.PutUint64(buf[48:], uint64(s.Mtim))
		binary.LittleEndian.PutUint64(buf[56:], uint64(s.Ctim))
		stack[0] = wasiESUCCESS
	})
}

// filetype is WASI's filetype of a stat's mode.
func filetype(s sys.Stat_t) uint8 {
	m := s.Mode
	switch {
	case m.IsRegular():
		return 4
	case m.IsDir():
		return 3
	case m&fs.ModeSymlink != 0:
		return 7
	case m&fs.ModeDevice != 0:
		if m&fs.ModeCharDevice != 0 {
			return 2
		}
		return 1
	}
	return 0
}
