// Package wasmmodule decodes a WebAssembly module and checks it against an upload policy. It is
// pure and side-effect free, a library any role may import (today the gateway's upload checks
// use it); it never compiles or runs guest code (that is wazero's job, in executor workers).
//
// Inspect decodes with github.com/tetratelabs/wabin behind a guard that bounds every count the
// decoder allocates from (see guard.go); Check applies a Policy, which PolicyFor derives from a
// tier. Both return *schemas.Error values whose messages can be shown to the uploader.
package wasmmodule

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"

	"github.com/tetratelabs/wabin/binary"
	"github.com/tetratelabs/wabin/wasm"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// WASIModule is the only module guests may import from.
const WASIModule = "wasi_snapshot_preview1"

// maxMemoryPages is the most pages a 32-bit memory can have (4 GiB).
const maxMemoryPages = 65536

// features are the core features Inspect accepts: WebAssembly 2.0 (bulk memory, multi-value,
// non-trapping float-to-int, reference types, sign extension, SIMD), which covers what Go, Rust,
// C (wasi-sdk) and TinyGo emit for wasip1 and what the executor's wazero runs.
const features = wasm.CoreFeaturesV2

// Info is what Inspect learns about a module.
type Info struct {
	Size int64 // bytes

	Imports      []string // imported functions as "module.name", sorted, deduplicated
	OtherImports []string // imported tables, memories and globals as "module.name (kind)", sorted
	Exports      []string // export names, sorted
	IsCommand    bool     // exports a function "_start" of type () -> ()
	HasStart     bool     // exports something named "_start" (IsCommand says whether it is usable)
	HasMemory    bool     // exports a memory named "memory"
	Functions    int      // functions defined (not imported)
	LargestBody  int      // bytes of the largest function body

	Globals      int // globals defined
	DataSegments int
	Tables       int    // tables defined
	TableMin     uint32 // the largest minimum of any table
	TableMax     uint32 // the largest declared maximum of any table that declares one
	HasTableMax  bool   // every table declares a maximum
	Memories     int    // memories defined (0 or 1)

	MemoryMinPages uint32 // of the defined memory; 64 KiB pages
	MemoryMaxPages uint32 // of the defined memory, when HasMemoryMax
	HasMemoryMax   bool

	CustomSections     int
	CustomSectionBytes int64 // custom sections (names, debug info, producers), headers included
}

// magic is "\0asm"; a core module's version is 1. A component (the component model's binary
// format) has the same magic and the version/layer 0x0d 0x00 0x01 0x00.
var (
	magic            = []byte("\x00asm")
	coreVersion      = []byte{0x01, 0x00, 0x00, 0x00}
	componentVersion = []byte{0x0d, 0x00, 0x01, 0x00}
)

func invalid(format string, args ...any) *schemas.Error {
	return schemas.Errorf(schemas.CodeInvalidModule, format, args...)
}

// Inspect decodes b. Its errors are *schemas.Error with code invalid_module.
func Inspect(b []byte) (*Info, error) {
	return InspectReader(bytes.NewReader(b), int64(len(b)))
}

// InspectReader decodes the module held in the first size bytes of r (a spooled upload). It
// reads r once, front to back, through a small buffer, and holds in memory only the module's
// declarations: function bodies, data and custom sections are walked and skipped. Its errors
// are *schemas.Error with code invalid_module.
func InspectReader(r io.ReaderAt, size int64) (*Info, error) {
	hdr := make([]byte, 8)
	if size >= 8 {
		if _, err := r.ReadAt(hdr, 0); err != nil {
			return nil, invalid("module could not be read")
		}
	}
	switch b := hdr; {
	case size < 8 || !bytes.Equal(b[:4], magic):
		return nil, invalid("not a WebAssembly module (bad magic)")
	case bytes.Equal(b[4:8], componentVersion):
		return nil, invalid("WebAssembly component binaries are not supported; build a core module for WASI preview 1 (wasip1)")
	case !bytes.Equal(b[4:8], coreVersion):
		return nil, invalid("unsupported WebAssembly version % x (only version 1 core modules are supported)", b[4:8])
	}
	g, err := guard(r, size)
	if pe := (*proposalError)(nil); errors.As(err, &pe) {
		return nil, pe.schemaError()
	}
	if err != nil {
		return nil, invalid("malformed module: %v", err)
	}
	m, err := binary.DecodeModule(g.core, features)
	if err != nil {
		return nil, invalid("malformed module: %v", err)
	}
	info := &Info{
		Size:               size,
		Functions:          len(m.FunctionSection),
		Globals:            len(m.GlobalSection),
		DataSegments:       len(m.DataSection),
		Tables:             len(m.TableSection),
		CustomSectionBytes: g.customSectionBytes,
		CustomSections:     g.customSections,
	}

	// The function index space starts with the imported functions.
	var funcTypes []wasm.Index
	var tables []*wasm.Table
	for _, im := range m.ImportSection {
		name := im.Module + "." + im.Name
		switch im.Type {
		case wasm.ExternTypeFunc:
			info.Imports = append(info.Imports, name)
			funcTypes = append(funcTypes, im.DescFunc)
		case wasm.ExternTypeTable:
			tables = append(tables, im.DescTable)
			info.OtherImports = append(info.OtherImports, name+" (table)")
		default:
			info.OtherImports = append(info.OtherImports, name+" ("+wasm.ExternTypeName(im.Type)+")")
		}
	}
	slices.Sort(info.Imports)
	info.Imports = slices.Compact(info.Imports)
	slices.Sort(info.OtherImports)
	funcTypes = append(funcTypes, m.FunctionSection...)

	info.LargestBody = g.largestBody // wabin saw empty bodies (see guard)

	tables = append(tables, m.TableSection...)
	info.HasTableMax = len(tables) > 0
	for _, t := range tables {
		info.TableMin = max(info.TableMin, t.Min)
		if t.Max != nil {
			info.TableMax = max(info.TableMax, *t.Max)
		} else {
			info.HasTableMax = false
		}
	}

	if mem := m.MemorySection; mem != nil {
		info.Memories = 1
		info.MemoryMinPages = mem.Min
		info.MemoryMaxPages, info.HasMemoryMax = mem.Max, mem.IsMaxEncoded
		if mem.Min > maxMemoryPages || (mem.IsMaxEncoded && mem.Max > maxMemoryPages) {
			return nil, invalid("memory of %d pages is over the 65536 pages (4 GiB) a 32-bit memory can have", max(mem.Min, mem.Max))
		}
	}

	for _, e := range m.ExportSection {
		info.Exports = append(info.Exports, e.Name)
		switch {
		case e.Name == "_start":
			info.HasStart = true
			info.IsCommand = e.Type == wasm.ExternTypeFunc && isNullary(m, funcTypes, e.Index)
		case e.Name == "memory" && e.Type == wasm.ExternTypeMemory:
			info.HasMemory = true
		}
	}
	slices.Sort(info.Exports)
	return info, nil
}

// isNullary reports whether function fn has type () -> ().
func isNullary(m *wasm.Module, funcTypes []wasm.Index, fn wasm.Index) bool {
	if int(fn) >= len(funcTypes) || int(funcTypes[fn]) >= len(m.TypeSection) {
		return false
	}
	t := m.TypeSection[funcTypes[fn]]
	return len(t.Params) == 0 && len(t.Results) == 0
}

// Policy is what a tier allows a module to declare. Zero fields are limits of zero, not
// "unlimited"; PolicyFor fills every one.
type Policy struct {
	MaxSize               int64 // bytes
	MaxFunctions          int
	MaxFunctionBody       int // bytes
	MaxTableSize          int // elements, per table
	MaxImports            int
	MaxExports            int
	MaxGlobals            int
	MaxDataSegments       int
	MaxCustomSectionBytes int64
	MemoryMaxPages        uint32 // the tier's memory cap in 64 KiB pages
}

// PolicyFor derives the upload policy of tier t: its module size and memory cap, and generous but
// finite structural limits (far above what real Go, Rust or C programs declare) that keep
// compilation and instantiation cost bounded.
func PolicyFor(t schemas.Tier) Policy {
	return Policy{
		MaxSize:               t.ModuleSize,
		MaxFunctions:          t.FunctionCap(),
		MaxFunctionBody:       8 * schemas.MiB,
		MaxTableSize:          100_000,
		MaxImports:            1000,
		MaxExports:            10_000,
		MaxGlobals:            10_000,
		MaxDataSegments:       1_000_000,        // Go emits one per run of non-zero data: the small probe has 33,616
		MaxCustomSectionBytes: t.ModuleSize / 2, // debug info is fine; a module that is mostly debug info is not
		MemoryMaxPages:        uint32(t.MemoryMB) * 16,
	}
}

// Check applies p to info. Its errors are *schemas.Error: too_large when the module is over
// MaxSize, otherwise invalid_module naming the rule that failed.
//
// Tables are checked on their declared sizes only: a table with no maximum can still grow at run
// time (table.grow), and bounding that is the executor's job (the worker's memory and time limits).
func Check(info *Info, p Policy) error {
	if info.Size > p.MaxSize {
		return schemas.Errorf(schemas.CodeTooLarge, "module is %d bytes, over the limit of %d bytes", info.Size, p.MaxSize)
	}
	if !info.IsCommand {
		if info.HasStart {
			return invalid("module is not a WASI command: its _start export is not a function with no parameters and no results")
		}
		return invalid("module is not a WASI command: it exports no _start function%s", notCommandHint(info))
	}
	for _, name := range info.Imports {
		mod, fn, _ := strings.Cut(name, ".")
		if mod != WASIModule {
			return invalid("import %s is not allowed: only %s functions may be imported (allowed: %s)",
				name, WASIModule, strings.Join(AllowedImports(), ", "))
		}
		if !isWASIFunction(fn) {
			return invalid("import %s is not a WASI preview 1 function (allowed: %s)", name, strings.Join(AllowedImports(), ", "))
		}
	}
	if len(info.OtherImports) > 0 {
		return invalid("import %s is not allowed: a module must define its own memory, tables and globals", info.OtherImports[0])
	}
	if len(info.Imports) > 0 && !info.HasMemory {
		return invalid("module imports WASI functions but exports no memory named \"memory\"")
	}
	if info.MemoryMinPages > p.MemoryMaxPages {
		return invalid("memory minimum of %d pages (%d MiB) is over the tier's %d MiB",
			info.MemoryMinPages, (uint64(info.MemoryMinPages)+15)/16, p.MemoryMaxPages/16) // MiB rounded up
	}
	if n := int64(info.TableMin); n > int64(p.MaxTableSize) {
		return invalid("table of %d elements is over the limit of %d", n, p.MaxTableSize)
	}
	if n := int64(info.TableMax); n > int64(p.MaxTableSize) {
		return invalid("table with a maximum of %d elements is over the limit of %d", n, p.MaxTableSize)
	}
	for _, c := range []struct {
		what   string
		n, max int64
	}{
		{"functions", int64(info.Functions), int64(p.MaxFunctions)},
		{"bytes in its largest function body", int64(info.LargestBody), int64(p.MaxFunctionBody)},
		{"imports", int64(len(info.Imports)), int64(p.MaxImports)},
		{"exports", int64(len(info.Exports)), int64(p.MaxExports)},
		{"globals", int64(info.Globals), int64(p.MaxGlobals)},
		{"data segments", int64(info.DataSegments), int64(p.MaxDataSegments)},
		{"bytes of custom sections", info.CustomSectionBytes, p.MaxCustomSectionBytes},
	} {
		if c.n > c.max {
			return invalid("module has %d %s, over the limit of %d", c.n, c.what, c.max)
		}
	}
	return nil
}

// notCommandHint says what a module without _start is when that is plain: a WASI reactor (it
// exports _initialize), such as ruby.wasm's npm builds, which their JavaScript host initializes
// and then calls function by function; and which host modules other than WASI's it imports. A
// user who uploaded one then knows to look for the program's command build instead of for a
// flag.
func notCommandHint(info *Info) string {
	var hint string
	if slices.Contains(info.Exports, "_initialize") {
		hint = "; it is a WASI reactor (it exports _initialize): a library whose functions a host program calls, not a program WasmWiz can run"
	}
	var hosts []string
	for _, name := range info.Imports {
		if mod, _, _ := strings.Cut(name, "."); mod != WASIModule && !slices.Contains(hosts, mod) {
			hosts = append(hosts, mod)
		}
	}
	if len(hosts) > 0 {
		if hint == "" {
			hint = "; it"
		} else {
			hint += "; it also"
		}
		hint += " imports functions of " + strings.Join(hosts, ", ") + ", which only its own host provides"
	}
	return hint
}

// wasiFunctions are the functions of WASI preview 1 (wasi_snapshot_preview1), sorted.
var wasiFunctions = []string{
	"args_get", "args_sizes_get", "clock_res_get", "clock_time_get", "environ_get",
	"environ_sizes_get", "fd_advise", "fd_allocate", "fd_close", "fd_datasync", "fd_fdstat_get",
	"fd_fdstat_set_flags", "fd_fdstat_set_rights", "fd_filestat_get", "fd_filestat_set_size",
	"fd_filestat_set_times", "fd_pread", "fd_prestat_dir_name", "fd_prestat_get", "fd_pwrite",
	"fd_read", "fd_readdir", "fd_renumber", "fd_seek", "fd_sync", "fd_tell", "fd_write",
	"path_create_directory", "path_filestat_get", "path_filestat_set_times", "path_link",
	"path_open", "path_readlink", "path_remove_directory", "path_rename", "path_symlink",
	"path_unlink_file", "poll_oneoff", "proc_exit", "proc_raise", "random_get", "sched_yield",
	"sock_accept", "sock_recv", "sock_send", "sock_shutdown",
}

func isWASIFunction(name string) bool {
	_, ok := slices.BinarySearch(wasiFunctions, name)
	return ok
}

// AllowedImports returns the names of the WASI preview 1 functions a module may import from
// wasi_snapshot_preview1, sorted.
func AllowedImports() []string { return slices.Clone(wasiFunctions) }
