package wasmmodule

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/wasmwiz/wasmwiz/internal/fixtures"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// testdata/kitchen.wasm is committed; regenerate it with go generate ./wasmmodule.
//
//go:generate wat2wasm --debug-names testdata/kitchen.wat -o testdata/kitchen.wasm

func freePolicy() Policy { return PolicyFor(schemas.DefaultTiers()[schemas.TierFree]) }

func TestInspect_Fixtures(t *testing.T) {
	tests := []struct {
		name    string
		wantErr string // substring of the Check error; "" means the module passes
		check   func(t *testing.T, info *Info)
	}{
		{name: "hello", check: func(t *testing.T, info *Info) {
			want := []string{"wasi_snapshot_preview1.fd_write"}
			if !slices.Equal(info.Imports, want) || !slices.Equal(info.Exports, []string{"_start", "memory"}) {
				t.Errorf("imports %v exports %v", info.Imports, info.Exports)
			}
			if info.Functions != 1 || info.Memories != 1 || info.MemoryMinPages != 1 || info.HasMemoryMax ||
				info.DataSegments != 1 || info.Tables != 0 || !info.IsCommand || info.Size != int64(len(fixtures.Wasm("hello"))) {
				t.Errorf("info %+v", info)
			}
		}},
		{name: "exit7"}, {name: "echo"}, {name: "trap"}, {name: "divzero"}, {name: "loop"},
		{name: "recursion"}, {name: "memgrow"}, {name: "stdoutflood"}, {name: "stdoutbig"}, {name: "stderrflood"},
		{name: "sleep"}, {name: "clock"}, {name: "nap"}, {name: "spin"}, {name: "printloop"}, {name: "latepoll"},
		{name: "exit_0"}, {name: "exit_1"}, {name: "exit_255"}, {name: "exit_256"}, {name: "exit_2p31"}, {name: "exit_max"},
		{name: "intoverflow"}, {name: "oob"}, {name: "indirectnull"}, {name: "indirectsig"},
		{name: "nowasifn", wantErr: "wasi_snapshot_preview1.does_not_exist"},
		{name: "expcalls", check: func(t *testing.T, info *Info) {
			if info.Functions != 42 {
				t.Errorf("functions %d, want 42", info.Functions)
			}
		}},
		{name: "tablegrow", check: func(t *testing.T, info *Info) {
			// passes on declared sizes; its growth is the executor's to bound
			if info.Tables != 1 || info.TableMin != 1 || info.HasTableMax {
				t.Errorf("info %+v", info)
			}
		}},
		{name: "tablefill", check: func(t *testing.T, info *Info) {
			// like tablegrow: small as declared, grown at run time
			if info.Tables != 1 || info.TableMin != 1 || info.HasTableMax {
				t.Errorf("info %+v", info)
			}
		}},
		{name: "nostart", wantErr: "module is not a WASI command: it exports no _start function"},
		{name: "badimport", wantErr: "import env.foo is not allowed: only wasi_snapshot_preview1 functions may be imported (allowed: args_get, "},
		{name: "bigmem", wantErr: "memory minimum of 65536 pages (4096 MiB) is over the tier's 128 MiB"},
		{name: "tablebomb", wantErr: "table of 10000000 elements is over the limit of 100000"},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		seen[tt.name] = true
		t.Run(tt.name, func(t *testing.T) {
			info, err := Inspect(fixtures.Wasm(tt.name))
			if err != nil {
				t.Fatalf("Inspect: %v", err)
			}
			if tt.check != nil {
				tt.check(t, info)
			}
			err = Check(info, freePolicy())
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			var se *schemas.Error
			if !errors.As(err, &se) || se.Code != schemas.CodeInvalidModule || !strings.Contains(se.Message, tt.wantErr) {
				t.Fatalf("Check: %v, want invalid_module containing %q", err, tt.wantErr)
			}
		})
	}
	for _, name := range fixtures.Names() {
		if !seen[name] {
			t.Errorf("fixture %s is not covered", name)
		}
	}
}

func TestInspect_Probe(t *testing.T) {
	wasm := fixtures.Probe(t)
	info, err := Inspect(wasm)
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(info, freePolicy()); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"wasi_snapshot_preview1.fd_write", "wasi_snapshot_preview1.random_get",
		"wasi_snapshot_preview1.clock_time_get", "wasi_snapshot_preview1.proc_exit", "wasi_snapshot_preview1.args_get"} {
		if !slices.Contains(info.Imports, want) {
			t.Errorf("imports %v lack %s", info.Imports, want)
		}
	}
	if !info.IsCommand || !info.HasMemory || info.Functions < 1000 || info.LargestBody == 0 {
		t.Errorf("info %+v", info)
	}
	t.Logf("probe: %d bytes, %d functions, largest body %d, table min %d, %d globals, %d data segments, %d imports, %d bytes in %d custom sections",
		info.Size, info.Functions, info.LargestBody, info.TableMin, info.Globals, info.DataSegments, len(info.Imports), info.CustomSectionBytes, info.CustomSections)
}

func TestInspect_Malformed(t *testing.T) {
	hello := fixtures.Wasm("hello")
	tests := []struct {
		name    string
		in      []byte
		wantErr string
	}{
		{"empty", nil, "not a WebAssembly module (bad magic)"},
		{"garbage", []byte("#!/bin/sh\necho hello\n"), "not a WebAssembly module (bad magic)"},
		{"magic only", []byte("\x00asm"), "not a WebAssembly module (bad magic)"},
		{"component", []byte("\x00asm\x0d\x00\x01\x00"), "WebAssembly component binaries are not supported; build a core module for WASI preview 1 (wasip1)"},
		{"version 2", []byte("\x00asm\x02\x00\x00\x00"), "unsupported WebAssembly version 02 00 00 00"},
		{"truncated", hello[:len(hello)-5], "malformed module"},
		{"unknown section", append([]byte("\x00asm\x01\x00\x00\x00"), 0x0e, 0x00), "unknown section id 14"},
		{"section longer than module", []byte("\x00asm\x01\x00\x00\x00\x01\x7f\x00"), "type section: declares 127 bytes but only 1 remain"},
		// a type section whose one function type declares 2^32-1 parameters: wabin alone would allocate 8 GiB
		{"huge parameter count", []byte("\x00asm\x01\x00\x00\x00\x01\x08\x01\x60\xff\xff\xff\xff\x0f\x00"), "4294967295 parameters cannot fit"},
		// one function body declaring 2^32-1 i32 locals: wabin alone would expand them into 4 GiB
		{"huge locals", []byte("\x00asm\x01\x00\x00\x00\x01\x04\x01\x60\x00\x00\x03\x02\x01\x00\x0a\x0a\x01\x08\x01\xff\xff\xff\xff\x0f\x7f\x0b"), "more than 50000 locals"},
		// a custom section that says it is 4 GiB long
		{"huge custom section", []byte("\x00asm\x01\x00\x00\x00\x00\xff\xff\xff\xff\x0f\x01a"), "custom section: declares 4294967295 bytes"},
		{"two memories", []byte("\x00asm\x01\x00\x00\x00\x05\x05\x02\x00\x01\x00\x01"), "uses the multi-memory proposal (2 memories)"},
		{"memory over 4 GiB", []byte("\x00asm\x01\x00\x00\x00\x05\x05\x01\x00\x81\x80\x04"), "over the 65536 pages"},
		{"sections out of order", []byte("\x00asm\x01\x00\x00\x00\x03\x01\x00\x01\x01\x00"), "type section is out of order or repeated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := Inspect(tt.in)
			var se *schemas.Error
			if !errors.As(err, &se) || se.Code != schemas.CodeInvalidModule || !strings.Contains(se.Message, tt.wantErr) {
				t.Fatalf("Inspect: %v (info %+v), want invalid_module containing %q", err, info, tt.wantErr)
			}
		})
	}
}

func TestCheck_Rules(t *testing.T) {
	ok := func() *Info {
		info, err := Inspect(fixtures.Wasm("hello"))
		if err != nil {
			t.Fatal(err)
		}
		return info
	}
	p := freePolicy()
	tests := []struct {
		name     string
		mutate   func(*Info)
		wantCode schemas.Code
		wantErr  string
	}{
		{"size", func(i *Info) { i.Size = 10*schemas.MiB + 1 }, schemas.CodeTooLarge, "module is 10485761 bytes, over the limit of 10485760 bytes"},
		{"start not nullary", func(i *Info) { i.IsCommand = false }, schemas.CodeInvalidModule, "its _start export is not a function with no parameters and no results"},
		// What ruby.wasm's npm packages (@ruby/3.4-wasm-wasi) ship: a WASI reactor for their
		// JavaScript host, which provides the rb-js-abi-host functions it imports.
		{"reactor", func(i *Info) {
			i.IsCommand, i.HasStart, i.Exports = false, false, []string{"_initialize", "memory", "ruby-init: func(args: list<string>) -> ()"}
			i.Imports = append(i.Imports, "rb-js-abi-host.js-value-equal: func(lhs: handle<js-abi-value>, rhs: handle<js-abi-value>) -> bool", "rb-js-abi-host.reflect-apply: func(target: handle<js-abi-value>)")
		}, schemas.CodeInvalidModule, "module is not a WASI command: it exports no _start function; it is a WASI reactor (it exports _initialize): a library whose functions a host program calls, not a program WasmWiz can run; it also imports functions of rb-js-abi-host, which only its own host provides"},
		{"no start, no reactor", func(i *Info) { i.IsCommand, i.HasStart, i.Exports = false, false, []string{"memory"} }, schemas.CodeInvalidModule, "module is not a WASI command: it exports no _start function"},
		{"unknown wasi function", func(i *Info) { i.Imports = []string{"wasi_snapshot_preview1.sock_open"} }, schemas.CodeInvalidModule, "import wasi_snapshot_preview1.sock_open is not a WASI preview 1 function"},
		{"imported memory", func(i *Info) { i.OtherImports = []string{"env.memory (memory)"} }, schemas.CodeInvalidModule, "import env.memory (memory) is not allowed"},
		{"no memory export", func(i *Info) { i.HasMemory = false }, schemas.CodeInvalidModule, "exports no memory named \"memory\""},
		{"table max", func(i *Info) { i.TableMin, i.TableMax, i.HasTableMax = 1, 200_000, true }, schemas.CodeInvalidModule, "table with a maximum of 200000 elements is over the limit of 100000"},
		{"functions", func(i *Info) { i.Functions = 100_001 }, schemas.CodeInvalidModule, "module has 100001 functions, over the limit of 100000"},
		{"body", func(i *Info) { i.LargestBody = 8*schemas.MiB + 1 }, schemas.CodeInvalidModule, "bytes in its largest function body"},
		{"imports", func(i *Info) {
			i.Imports = nil
			for range 1001 {
				i.Imports = append(i.Imports, "wasi_snapshot_preview1.fd_write")
			}
		}, schemas.CodeInvalidModule, "module has 1001 imports"},
		{"exports", func(i *Info) { i.Exports = make([]string, 10_001) }, schemas.CodeInvalidModule, "module has 10001 exports"},
		{"globals", func(i *Info) { i.Globals = 10_001 }, schemas.CodeInvalidModule, "module has 10001 globals"},
		{"data segments", func(i *Info) { i.DataSegments = 1_000_001 }, schemas.CodeInvalidModule, "module has 1000001 data segments"},
		{"custom sections", func(i *Info) { i.CustomSectionBytes = 5*schemas.MiB + 1 }, schemas.CodeInvalidModule, "module has 5242881 bytes of custom sections"},
		{"memory at the cap", func(i *Info) { i.MemoryMinPages = 2048 }, "", ""},
		{"memory over the cap", func(i *Info) { i.MemoryMinPages = 2049 }, schemas.CodeInvalidModule, "memory minimum of 2049 pages (129 MiB) is over the tier's 128 MiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info := ok()
			tt.mutate(info)
			err := Check(info, p)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var se *schemas.Error
			if !errors.As(err, &se) || se.Code != tt.wantCode || !strings.Contains(se.Message, tt.wantErr) {
				t.Fatalf("Check: %v, want %s containing %q", err, tt.wantCode, tt.wantErr)
			}
		})
	}
}

func TestPolicyFor(t *testing.T) {
	for name, tier := range schemas.DefaultTiers() {
		p := PolicyFor(tier)
		if p.MaxSize != tier.ModuleSize || p.MemoryMaxPages != uint32(tier.MemoryMB)*16 {
			t.Errorf("%s: policy %+v", name, p)
		}
		if p.MaxFunctions <= 0 || p.MaxFunctionBody <= 0 || p.MaxTableSize <= 0 || p.MaxImports < len(AllowedImports()) ||
			p.MaxExports <= 0 || p.MaxGlobals <= 0 || p.MaxDataSegments <= 0 || p.MaxCustomSectionBytes <= 0 {
			t.Errorf("%s: a limit is not positive: %+v", name, p)
		}
	}
}

func TestAllowedImports(t *testing.T) {
	got := AllowedImports()
	if len(got) != 46 || !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) {
		t.Fatalf("%d names, sorted %v", len(got), slices.IsSorted(got))
	}
	got[0] = "changed"
	if AllowedImports()[0] != "args_get" {
		t.Fatal("AllowedImports returned its own slice")
	}
}

func TestInspect_Kitchen(t *testing.T) {
	wasm, err := os.ReadFile("testdata/kitchen.wasm")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("wat2wasm"); err == nil {
		out := filepath.Join(t.TempDir(), "kitchen.wasm")
		if msg, err := exec.Command("wat2wasm", "--debug-names", "testdata/kitchen.wat", "-o", out).CombinedOutput(); err != nil {
			t.Fatalf("wat2wasm: %v\n%s", err, msg)
		}
		if fresh, _ := os.ReadFile(out); !bytes.Equal(fresh, wasm) {
			t.Fatal("testdata/kitchen.wasm is stale: run go generate ./wasmmodule")
		}
	}

	info, err := Inspect(wasm)
	if err != nil {
		t.Fatal(err)
	}
	want := Info{
		Size:               int64(len(wasm)),
		Imports:            []string{"wasi_snapshot_preview1.fd_write", "wasi_snapshot_preview1.proc_exit"},
		OtherImports:       []string{"env.g (global)", "env.t (table)"},
		Exports:            []string{"_start", "a", "g", "memory", "t"},
		IsCommand:          true,
		HasStart:           true,
		HasMemory:          true,
		Functions:          4,
		LargestBody:        info.LargestBody,
		Globals:            8,
		DataSegments:       3,
		Tables:             3,
		TableMin:           50, // $t3, defined without a maximum
		TableMax:           8,  // $t1; the imported table's maximum is 2
		HasTableMax:        false,
		Memories:           1,
		MemoryMinPages:     2,
		MemoryMaxPages:     100,
		HasMemoryMax:       true,
		CustomSections:     1,
		CustomSectionBytes: 185, // the "name" section: 182 bytes of content, an id and a 2-byte size
	}
	if info.LargestBody < 10 {
		t.Errorf("largest body %d bytes", info.LargestBody)
	}
	if !reflect.DeepEqual(*info, want) {
		t.Fatalf("info\n%+v\nwant\n%+v", *info, want)
	}
	err = Check(info, freePolicy())
	if err == nil || !strings.Contains(err.Error(), "import env.g (global) is not allowed: a module must define its own memory, tables and globals") {
		t.Fatalf("Check: %v", err)
	}
}
