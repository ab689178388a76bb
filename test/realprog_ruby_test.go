package test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// TestRealProgramRuby takes Ruby for WASI through wasmwiz dev and its CLI as a new user would.
//
// The npm package @ruby/3.4-wasm-wasi (2.10.1) ships no WASI command: its ruby.wasm,
// ruby+stdlib.wasm (30.6 MB) and ruby.debug+stdlib.wasm are reactors for its JavaScript driver
// (@ruby/wasm-wasi): they export _initialize and ruby-init/rb-eval-string-protect, and import
// 21 functions of rb-js-abi-host and 3 of canonical_abi, which only that driver provides (the
// wazero CLI refuses them:
// "module[rb-js-abi-host] not instantiated"). A basic tenant's upload of ruby+stdlib.wasm is a
// 413 naming the tiers that allow it; a pro tenant's a 422 that says it is a reactor and names
// the host it needs.
//
// Ruby's WASI command (bin/ruby of ruby.wasm's release archives, or of a build from Ruby's
// sources as its wasm/README.md says) is a 20 MB module that compiles for about 19 s of CPU.
// On a basic tenant (30 s compile budget) on a busy machine it was refused as too expensive,
// then compiled when uploaded again, before the budget became CPU time; this uploads it there
// and runs --version.
//
// It is opt-in: WASMWIZ_REALPROG_DIR holds the npm package unpacked in ruby/, and, for the
// command, a Ruby for WASI installed under ruby-wasi/ (ruby-wasi/usr/local/bin/ruby):
//
//	cd $WASMWIZ_REALPROG_DIR
//	npm pack @ruby/3.4-wasm-wasi; mkdir ruby; tar xzf ruby-3.4-wasm-wasi-*.tgz -C ruby
//	# the command, from Ruby 3.3.8's sources (apt-get source ruby3.3; baseruby and toolchain from
//	# Debian: ruby clang lld wasi-libc libclang-rt-14-dev-wasm32 binaryen), a sysroot of
//	# /usr/include/wasm32-wasi and /usr/lib/wasm32-wasi in /opt/wasi-sysroot, and gems/bundled_gems
//	# emptied (the build would fetch them):
//	WASI_SDK_PATH=/opt/wasi-sysroot ./configure --host wasm32-unknown-wasi --build x86_64-pc-linux-gnu \
//	  --with-baseruby=/usr/bin/ruby LDFLAGS="-Xlinker -zstack-size=16777216" \
//	  CC="clang --target=wasm32-wasi --sysroot=/opt/wasi-sysroot" LD="$CC" AR=llvm-ar RANLIB=llvm-ranlib-14 \
//	  --with-destdir=$WASMWIZ_REALPROG_DIR/ruby-wasi --with-static-linked-ext --disable-install-doc \
//	  --with-ext=json,date,stringio,strscan,pathname,digest,monitor,etc,rbconfig/sizeof,cgi/escape,ripper
//	make -j2 install
func TestRealProgramRuby(t *testing.T) {
	root := realprogDir(t)
	npm := filepath.Join(root, "ruby", "package", "dist", "ruby+stdlib.wasm")
	command := filepath.Join(root, "ruby-wasi", "usr", "local", "bin", "ruby")
	if !fileExists(npm) && !fileExists(command) {
		t.Skip("neither ruby/package/dist/ruby+stdlib.wasm nor ruby-wasi/usr/local/bin/ruby is in WASMWIZ_REALPROG_DIR (see the test's comment)")
	}
	base := t.TempDir()
	s := startDev(t, filepath.Join(base, "wasmwiz-data"))
	basic := s.newTenant(t, "rb-basic", schemas.TierBasic)
	pro := s.newTenant(t, "rb-pro", schemas.TierPro)
	// upload runs wasmwiz modules upload and returns its exit error and output.
	upload := func(t *testing.T, key, wasm string) (string, error) {
		t.Helper()
		cmd := exec.Command(bin(), "modules", "upload", "--url", s.URL, "--key", key, wasm)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}

	t.Run("npm package", func(t *testing.T) {
		if !fileExists(npm) {
			t.Skip("ruby/package/dist/ruby+stdlib.wasm is not in WASMWIZ_REALPROG_DIR")
		}
		out, err := upload(t, basic, npm)
		if err == nil || !strings.Contains(out, "413 too_large") || !strings.Contains(out, "pro allows 52428800") {
			t.Errorf("basic: %v\n%s", err, out)
		}
		out, err = upload(t, pro, npm)
		for _, want := range []string{"422 invalid_module", "it exports no _start function", "it is a WASI reactor (it exports _initialize)",
			"imports functions of canonical_abi, rb-js-abi-host, which only its own host provides"} {
			if err == nil || !strings.Contains(out, want) {
				t.Errorf("pro: %v, want %q in\n%s", err, want, out)
			}
		}
	})

	t.Run("command on basic", func(t *testing.T) {
		if !fileExists(command) {
			t.Skip("ruby-wasi/usr/local/bin/ruby is not in WASMWIZ_REALPROG_DIR")
		}
		wasm := filepath.Join(base, "ruby.wasm")
		b, err := os.ReadFile(command)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(wasm, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := upload(t, basic, wasm); err != nil {
			t.Fatalf("upload of %d bytes on basic: %v\n%s", len(b), err, out)
		}
		e, _ := runJSON(t, s, basic, filepath.Join(base, "got"), wasm, "--", "--version")
		if e.Status != schemas.StatusSucceeded || !strings.HasPrefix(e.Stdout, "ruby 3.") || !strings.Contains(e.Stdout, "[wasm32-wasi") {
			t.Errorf("--version: status %s, stdout %q, stderr %q, error %q", e.Status, e.Stdout, tail(e.Stderr), e.Error)
		}
		t.Logf("%s (%.0f ms)", strings.TrimSpace(e.Stdout), e.DurationMS)
	})
}
