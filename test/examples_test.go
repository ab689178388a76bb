package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestDev_GuestExamples builds each guest example in examples/guests with its own build.sh (the
// command its README gives) and runs it through a dev system with the CLI, as a person copying
// it would. A missing toolchain skips its example, except in CI (CI set), where .ci/run installs
// them all and a missing one fails.
func TestDev_GuestExamples(t *testing.T) {
	s := startDev(t, filepath.Join(t.TempDir(), "wasmwiz-data"))
	out := t.TempDir()
	for _, ex := range []struct {
		dir, wasm string
		needs     []string // commands and files the build needs
		install   string
		stdin     string
		env, args []string
		want      string
	}{
		{dir: "go", wasm: "greet-go.wasm", needs: []string{"go"}, install: "Go",
			stdin: "one two\nthree\n", args: []string{"Ada", "Grace"},
			want: "hello, Ada and Grace!\nstdin: 2 lines, 3 words, 14 bytes\n"},
		{dir: "c", wasm: "greet-c.wasm", needs: []string{"clang", "/usr/lib/wasm32-wasi/libc.a"},
			install: "apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32",
			stdin:   "one two\nthree\n", env: []string{"GREETING=hi"}, args: []string{"Ada", "--", "-x"},
			want: "hi, Ada and -- and -x!\nstdin: 2 lines, 3 words, 14 bytes\n"},
		{dir: "wat", wasm: "upper-wat.wasm", needs: []string{"wat2wasm"}, install: "apt-get install wabt",
			stdin: "hello, wasm 123\n", want: "HELLO, WASM 123\n"},
	} {
		t.Run(ex.dir, func(t *testing.T) {
			for _, n := range ex.needs {
				_, err := exec.LookPath(n)
				if filepath.IsAbs(n) {
					_, err = os.Stat(n)
				}
				if err != nil && os.Getenv("CI") == "" {
					t.Skipf("%s is missing (%s)", n, ex.install)
				} else if err != nil {
					t.Fatalf("%s is missing in CI (%s; .ci/run installs it)", n, ex.install)
				}
			}
			build := exec.Command("sh", filepath.Join("..", "examples", "guests", ex.dir, "build.sh"), out)
			if b, err := build.CombinedOutput(); err != nil {
				t.Fatalf("build.sh: %v\n%s", err, b)
			}
			args := []string{"run", "--url", s.URL, "--key", s.DevKey, "--stdin", ex.stdin}
			for _, e := range ex.env {
				args = append(args, "--env", e)
			}
			args = append(append(args, filepath.Join(out, ex.wasm), "--"), ex.args...)
			stdout, stderr, code := cli(t, args...)
			if code != 0 || stdout != ex.want {
				t.Errorf("wasmwiz %q: exit %d\nstdout %q, want %q\nstderr %s", args, code, stdout, ex.want, stderr)
			}
		})
	}
}
