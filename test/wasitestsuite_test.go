package test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// suiteDir holds the WASI preview 1 tests of WebAssembly/wasi-testsuite (see its COMMIT file):
// per language, each test's .wasm, its .json specification and the directories it preopens.
const suiteDir = "testdata/wasi-testsuite"

type suiteCase struct {
	lang, name string
	wasm       []byte
	spec       struct {
		Args     []string          `json:"args"`
		Env      map[string]string `json:"env"`
		Dirs     []string          `json:"dirs"`
		ExitCode int               `json:"exit_code"`
		Stdout   *string           `json:"stdout"`
		Stderr   *string           `json:"stderr"`
	}
}

func (c *suiteCase) id() string { return c.lang + "/" + c.name }

func loadSuite(t *testing.T) []*suiteCase {
	var cases []*suiteCase
	for _, lang := range []string{"assemblyscript", "c", "rust"} {
		dir := filepath.Join(suiteDir, lang)
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			name, ok := strings.CutSuffix(e.Name(), ".wasm")
			if !ok {
				continue
			}
			c := &suiteCase{lang: lang, name: name}
			if c.wasm, err = os.ReadFile(filepath.Join(dir, e.Name())); err != nil {
				t.Fatal(err)
			}
			if b, err := os.ReadFile(filepath.Join(dir, name+".json")); err == nil {
				if err := json.Unmarshal(b, &c.spec); err != nil {
					t.Fatalf("%s: %v", c.id(), err)
				}
			}
			cases = append(cases, c)
		}
	}
	return cases
}

// check compares an outcome with the case's specification; "" means it passed.
func (c *suiteCase) check(exitCode int, stdout, stderr string) string {
	switch {
	case exitCode != c.spec.ExitCode:
		return "exit code " + itoa(exitCode) + ", want " + itoa(c.spec.ExitCode) + firstLine(stderr+stdout)
	case c.spec.Stdout != nil && stdout != *c.spec.Stdout:
		return "stdout " + quote(stdout) + ", want " + quote(*c.spec.Stdout)
	case c.spec.Stderr != nil && stderr != *c.spec.Stderr:
		return "stderr " + quote(stderr) + ", want " + quote(*c.spec.Stderr)
	}
	return ""
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func quote(s string) string {
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	b, _ := json.Marshal(s)
	return string(b)
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	s, _, _ = strings.Cut(s, "\n")
	return ": " + quote(s)
}

// tarDir packs a directory of the suite as a bundle.
func tarDir(t *testing.T, dir string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		h, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		if d.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_, err = tw.Write(b)
			return err
		}
		return nil
	})
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// runWazero runs a case the way the wazero CLI of the module's wazero version does (`wazero run
// -mount=<copy of dir>:<dir> -env=… case.wasm args…`: real clocks, host directories), for the
// comparison the issue asks for.
func runWazero(t *testing.T, c *suiteCase) (int, string, string) {
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, r)
	var stdout, stderr bytes.Buffer
	fsc := wazero.NewFSConfig()
	for _, d := range c.spec.Dirs {
		tmp := t.TempDir()
		if err := os.CopyFS(tmp, os.DirFS(filepath.Join(suiteDir, c.lang, d))); err != nil {
			t.Fatal(err)
		}
		fsc = fsc.WithDirMount(tmp, d)
	}
	mc := wazero.NewModuleConfig().WithArgs(append([]string{c.name + ".wasm"}, c.spec.Args...)...).
		WithStdout(&stdout).WithStderr(&stderr).WithFSConfig(fsc).
		WithSysWalltime().WithSysNanotime().WithSysNanosleep()
	for _, k := range slices.Sorted(maps.Keys(c.spec.Env)) {
		mc = mc.WithEnv(k, c.spec.Env[k])
	}
	_, err := r.InstantiateWithConfig(ctx, c.wasm, mc)
	code := 0
	if err != nil {
		code = -1
		if ee, ok := err.(*sys.ExitError); ok {
			code = int(ee.ExitCode())
		} else {
			stderr.WriteString(err.Error())
		}
	}
	return code, stdout.String(), stderr.String()
}

// TestWASITestsuite runs the WASI preview 1 tests of wasi-testsuite through the service over
// REST — each test's dirs uploaded as a bundle and mounted writable under its own name — and
// through wazero as its CLI does, and checks that the service passes at least as many. Every
// failure is logged with its reason (go test -v -run WASITestsuite ./test).
func TestWASITestsuite(t *testing.T) {
	cases := loadSuite(t)
	s := startDev(t, t.TempDir())
	key := s.DevKey
	var svcPass, wzPass int
	var dirsCases, svcDirs, wzDirs int // the cases that preopen directories
	var svcFail, wzFail []string
	counts := map[string][4]int{} // lang → service passed, wazero passed, cases, cases with dirs
	for _, c := range cases {
		cnt := counts[c.lang]
		cnt[2]++
		if len(c.spec.Dirs) > 0 {
			cnt[3]++
			dirsCases++
		}
		code, out, errOut := runWazero(t, c)
		if why := c.check(code, out, errOut); why != "" {
			wzFail = append(wzFail, c.id()+": "+why)
		} else {
			wzPass++
			cnt[1]++
			if len(c.spec.Dirs) > 0 {
				wzDirs++
			}
		}

		m := s.upload(t, key, c.name, c.wasm)
		req := schemas.ExecutionRequest{ModuleID: m.ID, Args: c.spec.Args, Env: c.spec.Env}
		for _, d := range c.spec.Dirs {
			r, b := s.uploadBundle(t, key, tarDir(t, filepath.Join(suiteDir, c.lang, d)))
			if r.Status != 201 {
				t.Fatalf("%s: bundle %s: %d %s", c.id(), d, r.Status, r.Body)
			}
			ro := false
			req.Mounts = append(req.Mounts, schemas.Mount{Bundle: b.ID, Path: d, ReadOnly: &ro})
		}
		e := s.runWait(t, key, req)
		exit := -1
		if e.ExitCode != nil {
			exit = *e.ExitCode
		}
		if why := c.check(exit, e.Stdout, e.Stderr+e.Error); why != "" {
			svcFail = append(svcFail, c.id()+": "+why)
		} else {
			svcPass++
			cnt[0]++
			if len(c.spec.Dirs) > 0 {
				svcDirs++
			}
		}
		counts[c.lang] = cnt
	}
	for _, lang := range []string{"assemblyscript", "c", "rust"} {
		c := counts[lang]
		t.Logf("%-15s service %2d/%d passed, wazero %2d/%d (%d cases need directories)", lang, c[0], c[2], c[1], c[2], c[3])
	}
	t.Logf("total: service %d/%d, wazero %d/%d; without directories: service %d/%d, wazero %d/%d; with: service %d/%d, wazero %d/%d",
		svcPass, len(cases), wzPass, len(cases), svcPass-svcDirs, len(cases)-dirsCases, wzPass-wzDirs, len(cases)-dirsCases,
		svcDirs, dirsCases, wzDirs, dirsCases)
	for _, f := range svcFail {
		t.Logf("service failed %s", f)
	}
	for _, f := range wzFail {
		t.Logf("wazero failed  %s", f)
	}
	if svcPass < wzPass {
		t.Errorf("the service passes %d tests, wazero %d", svcPass, wzPass)
	}
}
