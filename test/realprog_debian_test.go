package test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// TestRealProgramsDebian runs widely used C programs built from Debian's source packages as WASI
// preview 1 commands through wasmwiz dev and its CLI, as a user would, on basic: the SQLite
// shell, zstd and GNU bc. SQLite: SQL from stdin and from a mounted .sql file importing a
// mounted CSV, a database made in scratch and returned as an output file, the same database
// mounted read-only (immutable=1) and writable (:rw, returned changed), relative paths in a
// working directory of inline files, 200,000 rows and an index sorted in memory, randomblob new
// every run and the same for a seed (it seeds itself from /dev/urandom), and a database
// outgrowing basic's 64 MiB scratch ("database or disk is full", the error naming the scratch
// cap; the shell exits 1). zstd: a mounted file compressed to an output file and back, stdin to stdout both ways
// (binary), a stdout over basic's 1 MiB (the CLI says it was cut), --rm in a writable mount, -t and -l, an existing output it refuses to overwrite and
// overwrites when stdin answers y. bc: -l from stdin, a mounted script, an error message. It
// also runs the README's SQLite and zstd block as written.
//
// It is opt-in: WASMWIZ_REALPROG_DIR holds sqlite3.wasm, zstd.wasm and bc.wasm in debian/ (each
// subtest skips when its module is missing), built on Debian 12 with clang 14, lld, wasi-libc
// and libclang-rt-14-dev-wasm32 (deb-src lines for bookworm and trixie in the apt sources):
//
//	W="-D_WASI_EMULATED_SIGNAL -D_WASI_EMULATED_PROCESS_CLOCKS -D_WASI_EMULATED_GETPID -D_WASI_EMULATED_MMAN"
//	L="-lwasi-emulated-signal -lwasi-emulated-process-clocks -lwasi-emulated-getpid -lwasi-emulated-mman"
//	# SQLite 3.46.1 (trixie's; bookworm's 3.40.1 predates SQLite's WASI support, 3.41):
//	apt-get source sqlite3/trixie && cd sqlite3-3.46.1 && mkdir bld && cd bld
//	../configure --disable-tcl && make sqlite3.c shell.c
//	F="-O2 -DSQLITE_OMIT_LOAD_EXTENSION -DSQLITE_THREADSAFE=0 -DSQLITE_TEMP_STORE=3 -DSQLITE_NOHAVE_SYSTEM $W"
//	clang --target=wasm32-wasi $F -I. -c sqlite3.c && clang --target=wasm32-wasi $F '-Dchmod(p,m)=0' -I. -c shell.c
//	clang --target=wasm32-wasi -O2 shell.o sqlite3.o $L -o $WASMWIZ_REALPROG_DIR/debian/sqlite3.wasm
//	# zstd 1.5.4 (bookworm's libzstd; its platform.h does not know WASI, hence stdio.h):
//	apt-get source libzstd && cd libzstd-1.5.4+dfsg2
//	clang --target=wasm32-wasi -O2 $W -DZSTD_NOBENCH -DZSTD_NODICT -DZSTD_NOTRACE -DBACKTRACE_ENABLE=0 \
//	  -DZSTD_LEGACY_SUPPORT=0 -include stdio.h '-Dchmod(p,m)=0' '-Dchown(p,u,g)=0' -Ilib -Ilib/common \
//	  lib/common/*.c lib/compress/*.c lib/decompress/*.c programs/zstdcli.c programs/fileio.c \
//	  programs/fileio_asyncio.c programs/util.c programs/timefn.c $L -o $WASMWIZ_REALPROG_DIR/debian/zstd.wasm
//	# GNU bc 1.07.1 (libmath.h is bc's math library compiled by bc itself: by fbc.wasm, under wazero):
//	apt-get source bc && cd bc-1.07.1
//	CC="clang --target=wasm32-wasi" ./configure --host=wasm32-unknown-wasi --build=x86_64-linux-gnu && cd bc
//	B="clang --target=wasm32-wasi -O2 -D_WASI_EMULATED_SIGNAL -DHAVE_CONFIG_H -I.. -I../h -I."
//	S="main.c bc.c scan.c execute.c load.c storage.c util.c warranty.c global.c ../lib/number.c ../lib/getopt.c ../lib/getopt1.c"
//	echo '{0}' > libmath.h && $B $S -lwasi-emulated-signal -o fbc.wasm
//	wazero run -mount $PWD:/s fbc.wasm -c /s/libmath.b </dev/null > libmath.h.new && mv libmath.h.new libmath.h && sh fix-libmath_h
//	$B $S -lwasi-emulated-signal -o $WASMWIZ_REALPROG_DIR/debian/bc.wasm
//
// SQLite's WASI build locks a database with a directory made beside it (unix-dotfile), which a
// read-only mount refuses (EROFS), so a plain open of a mounted database fails with "disk I/O
// error" on its first read, in the wazero CLI (-mount dir:/db:ro) as here: open it as
// file:/db/x.db?immutable=1 (or mount it :rw). Without SQLITE_TEMP_STORE=3 a sort too large
// for memory opens a temporary file in /tmp, and SQLite 3.46.1 then calls fchmod, which its WASI
// build leaves a null pointer: "trap: invalid table access" here and in the wazero CLI (which has
// no /tmp unless mounted, where it is "disk I/O error").
func TestRealProgramsDebian(t *testing.T) {
	root := realprogDir(t)
	base := t.TempDir()
	s := startDev(t, filepath.Join(base, "wasmwiz-data"))
	key := s.newTenant(t, "debian", schemas.TierBasic)
	module := func(t *testing.T, name string) string {
		t.Helper()
		p := filepath.Join(root, "debian", name)
		if !fileExists(p) {
			t.Skipf("debian/%s is not in WASMWIZ_REALPROG_DIR (see the test's comment)", name)
		}
		return p
	}
	out := filepath.Join(base, "got")
	run := func(t *testing.T, args ...string) *schemas.Execution {
		t.Helper()
		e, _ := runJSON(t, s, key, out, args...)
		return e
	}
	got := func(t *testing.T, guest string) []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(out, guest))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// raw runs the CLI without --json with stdin piped to it (--stdin -) and returns the guest's
	// stdout as bytes, for binary output.
	raw := func(t *testing.T, stdin []byte, args ...string) []byte {
		t.Helper()
		cmd := exec.Command(bin(), append([]string{"run", "--url", s.URL, "--key", key, "--stdin", "-"}, args...)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(stdin), &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("wasmwiz run %s: %v\nstderr: %s", strings.Join(args, " "), err, tail(stderr.String()))
		}
		return stdout.Bytes()
	}
	dir := filepath.Join(base, "files")
	write := treeWriter(t, dir)

	t.Run("sqlite3", func(t *testing.T) {
		sqlite := module(t, "sqlite3.wasm")
		d := filepath.Dir(write("sql/s.sql", `create table t(a integer primary key, b text);
insert into t(b) values('x'),('y'),('z');
.mode csv
.import /d/people.csv people
.mode list
select count(*), group_concat(b) from t;
select name from people order by id;
`))
		write("sql/people.csv", "id,name\n1,alice\n2,bob\n")
		write("sql/load.sql", `create table n(i integer primary key, v text);
with recursive c(x) as (select 1 union all select x+1 from c where x < 200000) insert into n select x, hex(randomblob(16)) from c;
create index nv on n(v);
select count(*), sum(i % 7), count(distinct v) from n;
.output /out/schema.sql
.schema
`)
		write("sql/full.sql", "create table b(v blob);\nwith recursive c(x) as (select 1 union all select x+1 from c where x < 100) insert into b select randomblob(1000000) from c;\n")

		e := run(t, "--stdin", "select 6 * 7, upper('sqlite');", sqlite)
		wantSucceeded(t, e, "42|SQLITE\n")

		e = run(t, "--mount", d+":/d", "--output", "/out/*", sqlite, "--", "/out/new.db", ".read /d/s.sql")
		wantSucceeded(t, e, "3|x,y,z\nalice\nbob\n")
		db := got(t, "out/new.db")
		if !bytes.HasPrefix(db, []byte("SQLite format 3\x00")) {
			t.Fatalf("out/new.db is no SQLite database: %q", db[:min(16, len(db))])
		}
		dbDir := filepath.Dir(treeWriter(t, filepath.Join(base, "db"))("new.db", string(db)))

		t.Run("mounted database", func(t *testing.T) {
			e := run(t, "--mount", dbDir+":/db", sqlite, "--", "file:/db/new.db?immutable=1", "select b from t where a = 2; select count(*) from people;")
			wantSucceeded(t, e, "y\n2\n")
			e = run(t, "--mount", dbDir+":/db:rw", "--output", "/db/new.db", sqlite, "--", "/db/new.db", "insert into t(b) values('w'); select count(*) from t;")
			wantSucceeded(t, e, "4\n")
			e = run(t, "--mount", dbDir+":/db", "--file", filepath.Join(out, "db", "new.db")+":/in/changed.db", sqlite, "--", "file:/in/changed.db?immutable=1", "select group_concat(b) from t;")
			wantSucceeded(t, e, "x,y,z,w\n")
		})
		t.Run("workdir", func(t *testing.T) {
			e := run(t, "--file", filepath.Join(d, "s.sql")+":/w/s.sql", "--file", filepath.Join(d, "people.csv")+":/d/people.csv", "--workdir", "/w",
				"--output", "/w/*.db", sqlite, "--", "rel.db", ".read s.sql")
			wantSucceeded(t, e, "3|x,y,z\nalice\nbob\n")
			if b := got(t, "w/rel.db"); len(b) < 4096 {
				t.Errorf("w/rel.db is %d bytes", len(b))
			}
		})
		t.Run("200000 rows", func(t *testing.T) {
			e := run(t, "--mount", d+":/d", "--stdin-file", "/d/load.sql", "--output", "/out/*", sqlite, "--", "/tmp/big.db")
			wantSucceeded(t, e, "200000|599997|200000\n")
			if b := got(t, "out/schema.sql"); !strings.Contains(string(b), "CREATE INDEX nv on n(v);") {
				t.Errorf("schema.sql: %q", b)
			}
			t.Logf("200,000 rows and an index: %.0f ms, memory peak %d MiB", e.DurationMS, e.MemoryPeakBytes>>20)
		})
		t.Run("randomblob", func(t *testing.T) {
			random := func(args ...string) string {
				e := run(t, append(append([]string{"--stdin", "select hex(randomblob(8));"}, args...), sqlite)...)
				if e.Status != schemas.StatusSucceeded {
					t.Fatalf("status %s: %s %s", e.Status, e.Error, tail(e.Stderr))
				}
				return e.Stdout
			}
			a, b, s1, s2 := random(), random(), random("--seed", "7"), random("--seed", "7")
			if a == b || s1 != s2 || a == s1 {
				t.Errorf("randomblob: %q then %q unseeded, %q then %q with seed 7: want new bytes every run, the same for a seed", a, b, s1, s2)
			}
		})
		t.Run("scratch full", func(t *testing.T) {
			e := run(t, "--mount", d+":/d", "--stdin-file", "/d/full.sql", sqlite, "--", "/tmp/full.db")
			if e.Status != schemas.StatusFailed || exitCode(e) != 1 || !strings.Contains(e.Stderr, "database or disk is full") ||
				!strings.Contains(e.Error, "scratch space is full") {
				t.Errorf("status %s, exit code %d, error %q, stderr %q: want exit 1, database or disk is full, the scratch cap named", e.Status, exitCode(e), e.Error, tail(e.Stderr))
			}
		})
	})

	t.Run("zstd", func(t *testing.T) {
		zstd := module(t, "zstd.wasm")
		var text strings.Builder
		for i := range 12000 {
			fmt.Fprintf(&text, "line %d: the quick brown fox jumps over the lazy dog %d\n", i, i*i%977)
		}
		in := filepath.Dir(write("zin/a.txt", text.String()))

		e := run(t, "--mount", in+":/in", "--output", "/out/*", zstd, "--", "-q", "-19", "/in/a.txt", "-o", "/out/a.txt.zst")
		wantSucceeded(t, e, "")
		zst := got(t, "out/a.txt.zst")
		if len(zst) < 100 || len(zst) > text.Len()/5 || !bytes.HasPrefix(zst, []byte{0x28, 0xb5, 0x2f, 0xfd}) {
			t.Fatalf("a.txt.zst: %d bytes of %d, starting %x", len(zst), text.Len(), zst[:min(4, len(zst))])
		}
		zdir := filepath.Dir(treeWriter(t, filepath.Join(base, "zst"))("a.txt.zst", string(zst)))
		e = run(t, "--mount", zdir+":/z", "--output", "/out/*", zstd, "--", "-q", "-d", "/z/a.txt.zst", "-o", "/out/a.txt")
		wantSucceeded(t, e, "")
		if b := got(t, "out/a.txt"); string(b) != text.String() {
			t.Errorf("a.txt back is %d bytes, want the %d compressed", len(b), text.Len())
		}
		e = run(t, "--mount", zdir+":/z", zstd, "--", "-l", "/z/a.txt.zst")
		if e.Status != schemas.StatusSucceeded || !strings.Contains(e.Stdout, "XXH64  /z/a.txt.zst") {
			t.Errorf("-l: %s %q %q", e.Status, e.Stdout, tail(e.Stderr))
		}

		t.Run("stdin to stdout", func(t *testing.T) {
			c := raw(t, []byte(text.String()), zstd, "--", "-c")
			if !bytes.HasPrefix(c, []byte{0x28, 0xb5, 0x2f, 0xfd}) {
				t.Fatalf("compressed stdout starts %x", c[:min(4, len(c))])
			}
			if d := raw(t, c, zstd, "--", "-dc"); string(d) != text.String() {
				t.Errorf("decompressed stdout: %d bytes, want %d", len(d), text.Len())
			}
		})
		t.Run("stdout over stdout_max", func(t *testing.T) {
			// -dcf passes a file that is not zstd's through: 2.1 MB to stdout, over basic's 1 MiB.
			big := filepath.Dir(write("zbig/big.txt", strings.Repeat(text.String(), 3)))
			cmd := exec.Command(bin(), "run", "--url", s.URL, "--key", key, "--mount", big+":/in", zstd, "--", "-dcf", "/in/big.txt")
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if err != nil || stdout.Len() != 1<<20 || !strings.Contains(stderr.String(), "wasmwiz run: stdout was cut at the tier's stdout_max: only its first 1048576 bytes came back") {
				t.Errorf("%v, %d bytes of stdout, stderr %q: want 1 MiB and the cut said", err, stdout.Len(), tail(stderr.String()))
			}
		})
		t.Run("rm in a writable mount", func(t *testing.T) {
			e := run(t, "--mount", in+":/t:rw", "--output", "/t/*", zstd, "--", "-q", "--rm", "/t/a.txt")
			wantSucceeded(t, e, "")
			var paths []string
			for _, f := range e.Files {
				paths = append(paths, f.Path)
			}
			if strings.Join(paths, " ") != "/t/a.txt.zst" {
				t.Errorf("files after --rm: %v", paths)
			}
			e = run(t, "--mount", zdir+":/z", zstd, "--", "-t", "/z/a.txt.zst")
			if e.Status != schemas.StatusSucceeded || !strings.Contains(e.Stderr, fmt.Sprintf("%d bytes", text.Len())) {
				t.Errorf("-t: %s %q", e.Status, tail(e.Stderr))
			}
		})
		t.Run("existing output", func(t *testing.T) {
			old := write("old.txt", "old")
			e := run(t, "--mount", in+":/in", "--file", old+":/out/x.zst", "--output", "/out/*", zstd, "--", "/in/a.txt", "-o", "/out/x.zst")
			if e.Status != schemas.StatusFailed || exitCode(e) != 1 || !strings.Contains(e.Stderr, "already exists; overwrite (y/n) ? Not overwritten") || string(got(t, "out/x.zst")) != "old" {
				t.Errorf("status %s, exit code %d, stderr %q: want it refused", e.Status, exitCode(e), tail(e.Stderr))
			}
			e = run(t, "--stdin", "y", "--mount", in+":/in", "--file", old+":/out/x.zst", "--output", "/out/*", zstd, "--", "/in/a.txt", "-o", "/out/x.zst")
			if e.Status != schemas.StatusSucceeded || !bytes.Equal(got(t, "out/x.zst")[:4], []byte{0x28, 0xb5, 0x2f, 0xfd}) {
				t.Errorf("status %s, stderr %q: want it overwritten", e.Status, tail(e.Stderr))
			}
		})
	})

	t.Run("README", func(t *testing.T) {
		sqlite, zstd := module(t, "sqlite3.wasm"), module(t, "zstd.wasm")
		rd := filepath.Join(base, "readme")
		w := treeWriter(t, rd)
		e := run(t, "--output", "/out/app.db", sqlite, "--", "/out/app.db", "create table t(x); insert into t values (1), (2);")
		wantSucceeded(t, e, "")
		w("db/app.db", string(got(t, "out/app.db")))
		w("in/big.c", strings.Repeat("int main(void) { return 0; }\n", 1000))
		b, err := os.ReadFile(zstd)
		if err != nil {
			t.Fatal(err)
		}
		w("zstd.wasm", string(b))
		outp, err := runREADMEBlock(t, s, key, sqlite, "sqlite3.wasm", rd)
		if err != nil || !strings.HasPrefix(outp, "2\n") {
			t.Fatalf("the README's SQLite block: %v\n%s", err, outp)
		}
		if n, err := os.ReadFile(filepath.Join(rd, "wasmwiz-outputs", "out", "new.db")); err != nil || !bytes.HasPrefix(n, []byte("SQLite format 3")) {
			t.Errorf("new.db: %v %q", err, n[:min(16, len(n))])
		}
		if z, err := os.ReadFile(filepath.Join(rd, "wasmwiz-outputs", "out", "big.c.zst")); err != nil || len(z) < 10 {
			t.Errorf("big.c.zst: %v, %d bytes", err, len(z))
		}
	})

	t.Run("bc", func(t *testing.T) {
		bc := module(t, "bc.wasm")
		e := run(t, "--stdin", "scale=20; sqrt(2); 4*a(1)\n", bc, "--", "-l")
		wantSucceeded(t, e, "1.41421356237309504880\n3.14159265358979323844\n")
		b := filepath.Dir(write("bc/fib.bc", "define f(n) { if (n < 2) return n; return f(n-1) + f(n-2); }\nf(20)\n2^100\nquit\n"))
		e = run(t, "--mount", b+":/b", "--env", "BC_LINE_LENGTH=0", bc, "--", "-q", "/b/fib.bc")
		wantSucceeded(t, e, "6765\n1267650600228229401496703205376\n")
		e = run(t, "--stdin", "1/0\n", bc) // bc wants its last line ended, natively too
		if e.Status != schemas.StatusSucceeded || !strings.Contains(e.Stderr, "Divide by zero") {
			t.Errorf("1/0: %s %q", e.Status, e.Stderr)
		}
	})
}
