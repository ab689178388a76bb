package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// TestRealProgramJS runs a real JavaScript engine, QuickJS-ng's qjs built for WASI preview 1
// (what its releases publish as qjs-wasi.wasm), through wasmwiz dev and its CLI as a new user
// would: scripts from stdin, from a mounted directory with a module import beside them, and
// from inline files with a working directory; its std and os modules reading and writing files
// (an output file returned); a CPU-bound script; and the error paths a user meets on the free
// tier: an uncaught exception, an endless loop stopped at the tier's wall time, and a memory
// blowup stopped at the tier's memory. It also runs the README's QuickJS block as written.
//
// It is opt-in: WASMWIZ_REALPROG_DIR holds either the published qjs-wasi.wasm or QuickJS-ng's
// sources in quickjs-ng/ (then the test builds quickjs-ng/qjs.wasm with clang and wasi-libc,
// about a minute, and keeps it). No npm package ships a standalone WASI JavaScript engine: npm
// pack quickjs-wasi (3.7.0) and @blue-quickjs/quickjs-wasm ship reactors that import host
// functions of their JavaScript drivers (env.host_call…), @cf-wasm/quickjs and quickjs-emscripten
// are Emscripten builds, javy and javy-cli download their binary at install. So:
//
//	cd $WASMWIZ_REALPROG_DIR
//	curl -LO https://github.com/quickjs-ng/quickjs/releases/download/v0.16.2/qjs-wasi.wasm
//	# or the sources, built by the test (apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32):
//	mkdir quickjs-ng && curl -L https://github.com/quickjs-ng/quickjs/archive/refs/tags/v0.16.2.tar.gz | tar xz --strip-components=1 -C quickjs-ng
func TestRealProgramJS(t *testing.T) {
	root := realprogDir(t)
	qjs := quickJSWasm(t, root)
	base := t.TempDir()
	s := startDev(t, filepath.Join(base, "wasmwiz-data"))
	pro := s.newTenant(t, "js-pro", schemas.TierPro)
	free := s.newTenant(t, "js-free", schemas.TierFree)
	dir := filepath.Join(base, "js")
	write := treeWriter(t, dir)
	write("lib.js", "export function square(x) { return x * x; }\n")
	write("main.js", "import { square } from './lib.js';\nconsole.log('square', square(7));\n")
	write("data.txt", "the quick brown fox\n")
	write("io.js", `import * as std from 'qjs:std';
import * as os from 'qjs:os';
import { square } from './lib.js';
const words = std.loadFile('/js/data.txt').trim().split(/\s+/);
const f = std.open('/out/report.json', 'w');
f.puts(JSON.stringify({ words: words.length, square: square(words.length) }));
f.close();
console.log('listed', os.readdir('/js')[0].filter(n => n.endsWith('.js')).sort().join(','));
`)
	write("fib.js", "function fib(n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }\nconsole.log('fib', fib(Number(scriptArgs[1])));\n")
	write("throw.js", "function f() { throw new TypeError('boom ' + 42); }\nf();\n")
	write("loop.js", "console.log('started');\nfor (;;) {}\n")
	write("mem.js", "const a = [];\nfor (;;) a.push(new Array(1 << 16).fill(1));\n")

	// run runs qjs with the CLI and returns the execution; the CLI's exit code is the guest's.
	run := func(t *testing.T, key string, args ...string) (*schemas.Execution, string) {
		t.Helper()
		return runJSON(t, s, key, filepath.Join(base, "got"), args...)
	}
	ok := wantSucceeded

	t.Run("stdin", func(t *testing.T) {
		e, _ := run(t, pro, "--stdin", "console.log('from stdin', [1, 2, 3].map(x => x * 2))", qjs, "--", "/dev/stdin")
		ok(t, e, "from stdin 2,4,6\n")
	})
	t.Run("mount and import", func(t *testing.T) {
		e, _ := run(t, pro, "--mount", dir+":/js", qjs, "--", "/js/main.js")
		ok(t, e, "square 49\n")
	})
	t.Run("inline files and workdir", func(t *testing.T) {
		e, _ := run(t, pro, "--file", filepath.Join(dir, "lib.js")+":/app/lib.js", "--file", filepath.Join(dir, "main.js")+":/app/main.js",
			"--workdir", "/app", qjs, "--", "main.js")
		ok(t, e, "square 49\n")
	})
	t.Run("std and os files", func(t *testing.T) {
		e, _ := run(t, pro, "--mount", dir+":/js", "--output", "/out/*", qjs, "--", "/js/io.js")
		ok(t, e, "listed fib.js,io.js,lib.js,loop.js,main.js,mem.js,throw.js\n")
		b, err := os.ReadFile(filepath.Join(base, "got", "out", "report.json"))
		if err != nil || string(b) != `{"words":4,"square":16}` {
			t.Errorf("report.json: %q %v", b, err)
		}
	})
	t.Run("cpu", func(t *testing.T) {
		e, _ := run(t, pro, "--mount", dir+":/js", qjs, "--", "/js/fib.js", "27")
		ok(t, e, "fib 196418\n")
		t.Logf("fib(27): %.0f ms", e.DurationMS)
	})
	t.Run("uncaught exception", func(t *testing.T) {
		e, _ := run(t, free, "--mount", dir+":/js", qjs, "--", "/js/throw.js")
		if e.Status != schemas.StatusFailed || exitCode(e) != 1 || !strings.Contains(e.Stderr, "TypeError: boom 42") || !strings.Contains(e.Stderr, "/js/throw.js:1") {
			t.Errorf("status %s, exit code %d, stderr %q", e.Status, exitCode(e), e.Stderr)
		}
	})
	t.Run("endless loop", func(t *testing.T) {
		e, _ := run(t, free, "--mount", dir+":/js", qjs, "--", "/js/loop.js") // the free tier's 5 s
		if e.Status != schemas.StatusTimedOut || e.DurationMS < 5000 || e.DurationMS > 7000 || !strings.Contains(e.Error, "time limit of 5s, the free tier's wall time") ||
			e.Stdout != "started\n" {
			t.Errorf("status %s, %.0f ms, error %q, stdout %q (what it printed before its loop)", e.Status, e.DurationMS, e.Error, e.Stdout)
		}
	})
	t.Run("README", func(t *testing.T) {
		// The README's QuickJS block ("Files for guests"), as written, with bash -e.
		out, err := runREADMEBlock(t, s, pro, qjs, "qjs-wasi.wasm", filepath.Join(base, "readme"))
		if err != nil || out != "42\nwrote /out/square.txt\n144" {
			t.Errorf("the README's block: %v\n%s", err, out)
		}
	})
	t.Run("memory blowup", func(t *testing.T) {
		e, _ := run(t, free, "--mount", dir+":/js", qjs, "--", "/js/mem.js")
		limit := int64(128 << 20) // the free tier's memory
		if e.Status != schemas.StatusFailed || !strings.Contains(e.Stderr, "out of memory") || e.MemoryPeakBytes < limit*3/4 {
			t.Errorf("status %s, exit code %d, memory peak %d, stderr %q, error %q", e.Status, exitCode(e), e.MemoryPeakBytes, e.Stderr, e.Error)
		}
	})
}

// quickJSWasm returns the path of QuickJS-ng's qjs for WASI in root: the published
// qjs-wasi.wasm, else quickjs-ng/qjs.wasm, built from the sources in quickjs-ng/ as its CMake
// build does for WASI (the same sources and defines, -O2) when it is not there yet.
func quickJSWasm(t *testing.T, root string) string {
	t.Helper()
	if p := filepath.Join(root, "qjs-wasi.wasm"); fileExists(p) {
		return p
	}
	src := filepath.Join(root, "quickjs-ng")
	out := filepath.Join(src, "qjs.wasm")
	if fileExists(out) {
		return out
	}
	if !fileExists(filepath.Join(src, "qjs.c")) {
		t.Skip("neither qjs-wasi.wasm nor QuickJS-ng's sources (quickjs-ng/qjs.c) in WASMWIZ_REALPROG_DIR")
	}
	if _, err := exec.LookPath("clang"); err != nil || !fileExists("/usr/lib/wasm32-wasi/libc.a") {
		t.Skip("no clang with wasi-libc to build QuickJS-ng")
	}
	args := []string{"--target=wasm32-wasi", "-O2", "-DNDEBUG", "-D_GNU_SOURCE", "-D_WASI_EMULATED_PROCESS_CLOCKS",
		"-D_WASI_EMULATED_SIGNAL", "-DQJS_BUILD_LIBC", "-o", out + ".tmp",
		"qjs.c", "gen/repl.c", "gen/standalone.c", "quickjs.c", "quickjs-libc.c", "dtoa.c", "libregexp.c", "libunicode.c",
		"-lwasi-emulated-process-clocks", "-lwasi-emulated-signal", "-lm"}
	cmd := exec.Command("clang", args...)
	cmd.Dir = src
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building qjs.wasm: %v\n%s", err, tail(string(msg)))
	}
	if err := os.Rename(out+".tmp", out); err != nil {
		t.Fatal(err)
	}
	return out
}
