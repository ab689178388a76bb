package worker

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmwiz/wasmwiz/internal/fixtures"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// tarEntry is one entry of a test archive: a file (Body), a directory (Dir) or a link.
type tarEntry struct {
	Name, Body, Link string
	Dir              bool
}

func makeTar(tb testing.TB, entries []tarEntry) []byte {
	tb.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.Name, Mode: 0o644, Size: int64(len(e.Body)), Typeflag: tar.TypeReg}
		switch {
		case e.Dir:
			h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
		case e.Link != "":
			h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, e.Link, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			tb.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.Body)); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// bundleMount writes an archive where the node keeps bundles and mounts it at path.
func (c *client) bundleMount(archive []byte, path string) Mount {
	sum := sha256.Sum256(archive)
	hash := hex.EncodeToString(sum[:])
	file := filepath.Join(c.dir, hash+".tar")
	if err := os.WriteFile(file, archive, 0o644); err != nil {
		c.tb.Fatal(err)
	}
	return Mount{Path: path, BundleHash: hash, BundlePath: file}
}

var guests = []struct {
	name  string
	build func(testing.TB) []byte
	// enospc is how the guest's libc words ENOSPC.
	enospc string
}{
	{"c", fixtures.FilesC, "No space left on device"},
	{"go", fixtures.FilesGo, "No space left on device"},
}

// TestWorker_Files runs the same program in C (wasi-libc) and Go (wasip1): it lists a mounted
// bundle and inline files (scandir in C, which stats ".." through a directory descriptor that
// is not a preopen: wazero alone refuses that with EPERM), reads a file, writes output files,
// and gets them back.
func TestWorker_Files(t *testing.T) {
	archive := makeTar(t, []tarEntry{
		{Name: "./", Dir: true}, {Name: "./a.txt", Body: "hello bundle"}, {Name: "./b.bin", Body: "\x00\x01\x02"},
		{Name: "./sub/", Dir: true}, {Name: "./sub/deep.txt", Body: "deep"}, {Name: "./link", Link: "sub/deep.txt"},
	})
	for _, g := range guests {
		t.Run(g.name, func(t *testing.T) {
			wasm := g.build(t)
			c := startClient(t)
			for _, tc := range []struct {
				name    string
				job     RunJob
				listing string
				upper   string
			}{
				{
					name:    "bundle",
					job:     RunJob{Args: []string{"files", "/data", "/out"}, Mounts: []Mount{c.bundleMount(archive, "/data")}, Workdir: "/out"},
					listing: "file a.txt 12\nfile b.bin 3\nfile link 4\ndir sub 4096\n",
					upper:   "HELLO BUNDLE",
				},
				{
					name: "inline",
					job: RunJob{Args: []string{"files", "in", "/out"}, Workdir: "/work",
						Files: []InlineFile{{Path: "/work/in/a.txt", Data: []byte("inline text")}, {Path: "/out/old.txt", Data: []byte("x")}}},
					listing: "file a.txt 11\n",
					upper:   "INLINE TEXT",
				},
			} {
				t.Run(tc.name, func(t *testing.T) {
					job := tc.job
					job.ScratchMax, job.OutputsMax = 1<<20, 1<<20
					job.Outputs = []string{"/out/*.txt", "/out/bytes.bin", "/nothing/*"}
					res, _ := c.run(wasm, job)
					if res.Status != schemas.StatusSucceeded {
						t.Fatalf("status %s exit %d error %q stdout %q stderr %q", res.Status, res.ExitCode, res.Error, res.Stdout, res.Stderr)
					}
					if want := tc.listing + "parent is a directory: 1\n"; string(res.Stdout) != want {
						t.Errorf("stdout %q, want %q", res.Stdout, want)
					}
					got := map[string]string{}
					var paths []string
					for _, o := range res.Outputs {
						got[o.Path] = string(o.Data)
						paths = append(paths, o.Path)
						if o.Truncated || o.Size != int64(len(o.Data)) {
							t.Errorf("%s: truncated %v size %d of %d", o.Path, o.Truncated, len(o.Data), o.Size)
						}
					}
					want := []string{"/out/bytes.bin", "/out/listing.txt", "/out/upper.txt"}
					if tc.name == "inline" {
						want = []string{"/out/bytes.bin", "/out/listing.txt", "/out/old.txt", "/out/upper.txt"}
					}
					if strings.Join(paths, " ") != strings.Join(want, " ") {
						t.Fatalf("outputs %v, want %v", paths, want)
					}
					if got["/out/listing.txt"] != tc.listing || got["/out/upper.txt"] != tc.upper || len(got["/out/bytes.bin"]) != 256 || got["/out/bytes.bin"][255] != 255 {
						t.Errorf("outputs %q", got)
					}
					if res.ScratchPeak <= 0 || res.ScratchFull {
						t.Errorf("scratch peak %d full %v", res.ScratchPeak, res.ScratchFull)
					}
				})
			}
		})
	}
}

// TestWorker_Files_Hostile: a guest filling its scratch space gets ENOSPC and a failed result
// that says so; a guest writing a file larger than the outputs allow gets it cut and flagged;
// the worker goes on serving.
func TestWorker_Files_Hostile(t *testing.T) {
	for _, g := range guests {
		t.Run(g.name, func(t *testing.T) {
			wasm := g.build(t)
			c := startClient(t)

			res, _ := c.run(wasm, RunJob{Args: []string{"fill", "/tmp/fill"}, ScratchMax: 4 << 20})
			if res.Status != schemas.StatusFailed || res.ExitCode != 3 || !res.ScratchFull {
				t.Fatalf("fill: status %s exit %d full %v error %q stdout %q", res.Status, res.ExitCode, res.ScratchFull, res.Error, res.Stdout)
			}
			if !strings.Contains(string(res.Stdout), g.enospc) || !strings.Contains(res.Error, "scratch space is full") {
				t.Errorf("fill: stdout %q error %q", res.Stdout, res.Error)
			}
			if res.ScratchPeak > 4<<20 {
				t.Errorf("scratch peak %d over the cap", res.ScratchPeak)
			}

			res, _ = c.run(wasm, RunJob{Args: []string{"big", "/tmp/big", "8"}, ScratchMax: 16 << 20, OutputsMax: 1 << 20, Outputs: []string{"/tmp/big"}})
			if res.Status != schemas.StatusSucceeded || len(res.Outputs) != 1 {
				t.Fatalf("big: status %s error %q stdout %q outputs %d", res.Status, res.Error, res.Stdout, len(res.Outputs))
			}
			if o := res.Outputs[0]; !o.Truncated || o.Size != 8<<20 || len(o.Data) != 1<<20 {
				t.Errorf("big: truncated %v size %d kept %d", o.Truncated, o.Size, len(o.Data))
			}

			// The same worker still runs guests.
			res, _ = c.run(wasm, RunJob{Args: []string{"stdout", "1"}, StdoutMax: 1 << 10})
			if res.Status != schemas.StatusSucceeded || res.StdoutBytes != 1<<20 || !res.StdoutTruncated {
				t.Errorf("after: status %s stdout bytes %d", res.Status, res.StdoutBytes)
			}
		})
	}
}

// TestWorker_StdinFile: a file of the guest's file system, from a bundle or an inline file, is
// its stdin (RunJob.StdinFile), read as the guest reads it: echo copies it to stdout whole, 3 MiB
// of it. A path that is not a file fails the run with a message naming it.
func TestWorker_StdinFile(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 3<<20/16)
	archive := makeTar(t, []tarEntry{{Name: "in/", Dir: true}, {Name: "in/big.txt", Body: big}})
	echo := fixtures.Wasm("echo")
	c := startClient(t)
	for _, tc := range []struct {
		name, file, stdout, errText string
		files                       []InlineFile
	}{
		{name: "bundle", file: "/data/in/big.txt", stdout: big},
		{name: "inline", file: "/work/in.txt", files: []InlineFile{{Path: "/work/in.txt", Data: []byte("inline input")}}, stdout: "inline input"},
		{name: "missing", file: "/data/in/none.txt", errText: "stdin_file /data/in/none.txt: no such file or directory"},
		{name: "directory", file: "/data/in", errText: "stdin_file /data/in: is a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			job := RunJob{Stdin: []byte("not this"), StdinFile: tc.file, StdoutMax: 4 << 20, ScratchMax: 1 << 20,
				Mounts: []Mount{c.bundleMount(archive, "/data")}, Files: tc.files}
			res, _ := c.run(echo, job)
			if tc.errText != "" {
				if res.Status != schemas.StatusFailed || res.Error != tc.errText {
					t.Fatalf("status %s error %q, want failed %q", res.Status, res.Error, tc.errText)
				}
				return
			}
			if res.Status != schemas.StatusSucceeded || string(res.Stdout) != tc.stdout || res.StdinFileBytes != int64(len(tc.stdout)) {
				t.Fatalf("status %s error %q, %d bytes of stdout and %d read, want the %d of the file", res.Status, res.Error, len(res.Stdout), res.StdinFileBytes, len(tc.stdout))
			}
		})
	}
}

// TestWorker_OutputDirs: the directory an output pattern collects from exists when the guest
// starts, as yosys's `synth_ice40 -json /out/a.json` expects (it does not make /out and failed
// with "Can't open output file" before): C and Go guests write into /out/net and /res without
// making them, with no mount, inline file or workdir there. A pattern inside a read-only mount
// makes nothing and the run still starts.
func TestWorker_OutputDirs(t *testing.T) {
	archive := makeTar(t, []tarEntry{{Name: "./", Dir: true}, {Name: "./a.txt", Body: "a"}})
	for _, g := range guests {
		t.Run(g.name, func(t *testing.T) {
			wasm := g.build(t)
			c := startClient(t)
			for _, path := range []string{"/out/net/a.bin", "/res/result.json"} {
				res, _ := c.run(wasm, RunJob{Args: []string{"big", path, "1"}, ScratchMax: 4 << 20, OutputsMax: 4 << 20,
					Outputs: []string{"/out/net/*.bin", "/res/result.json", "/share/gen/*"}, Mounts: []Mount{c.bundleMount(archive, "/share")}})
				if res.Status != schemas.StatusSucceeded || len(res.Outputs) != 1 || res.Outputs[0].Path != path || res.Outputs[0].Size != 1<<20 {
					t.Fatalf("%s: status %s exit %d error %q stdout %q outputs %+v", path, res.Status, res.ExitCode, res.Error, res.Stdout, len(res.Outputs))
				}
			}
			// Without outputs asked for, no directory appears.
			res, _ := c.run(wasm, RunJob{Args: []string{"big", "/out/net/a.bin", "1"}, ScratchMax: 4 << 20})
			if res.Status != schemas.StatusFailed {
				t.Errorf("no outputs: status %s, want failed (no /out/net)", res.Status)
			}
		})
	}
}

// TestWorker_ScratchFileMemory: a file written to scratch costs its worker about its size, not
// the garbage of a growing copy. Files used to be one slice grown by doubling, so writing 64 MiB
// in 1 MiB writes left 1+2+…+32 MiB of old copies behind with the 64 MiB file, all counted in
// the guest's memory: CPython writing a 100 MiB file with a 200 MiB memory limit was killed for
// "holding 234 MiB". Here the file is 64 MiB and the limit 96 MiB (128 MiB with the headroom).
func TestWorker_ScratchFileMemory(t *testing.T) {
	for _, g := range guests {
		t.Run(g.name, func(t *testing.T) {
			wasm := g.build(t)
			c := startClient(t)
			const mib = 64
			res, _ := c.run(wasm, RunJob{Args: []string{"big", "/tmp/big", "64"}, ScratchMax: 128 << 20, MemoryPages: 96 * 16,
				Outputs: []string{"/tmp/big"}, OutputsMax: 1 << 20})
			if res.Status != schemas.StatusSucceeded || len(res.Outputs) != 1 || res.Outputs[0].Size != mib<<20 {
				t.Fatalf("status %s exit %d error %q stdout %q outputs %d", res.Status, res.ExitCode, res.Error, res.Stdout, len(res.Outputs))
			}
			if o := res.Outputs[0]; len(o.Data) != 1<<20 || strings.Trim(string(o.Data), "b") != "" {
				t.Errorf("output: %d bytes, not all 'b'", len(o.Data))
			}
			// The guest's own linear memory is a few MiB (a 1 MiB block and its runtime).
			if limit := int64(mib+24) << 20; res.MemoryPeakBytes > limit {
				t.Errorf("memory peak %d MiB for a %d MiB file, want at most %d MiB", res.MemoryPeakBytes>>20, mib, limit>>20)
			}
			t.Logf("memory peak %.1f MiB, scratch peak %.1f MiB", float64(res.MemoryPeakBytes)/(1<<20), float64(res.ScratchPeak)/(1<<20))
		})
	}
}

// TestWorker_ScratchFilesOverMemory: files a guest writes are memory it holds: 100 MiB of them
// under a 64 MiB limit (96 MiB with the headroom) end the run as over its memory, and the error
// says that files count, which a Python user writing a big file could not guess from "linear
// memory, tables and other runtime memory".
func TestWorker_ScratchFilesOverMemory(t *testing.T) {
	wasm := fixtures.FilesC(t)
	c := startClient(t)
	res, _ := c.run(wasm, RunJob{Args: []string{"big", "/tmp/big", "100"}, ScratchMax: 128 << 20, MemoryPages: 64 * 16})
	if res.Status != schemas.StatusKilled || !strings.Contains(res.Error, "the files it wrote") || res.MemoryPeakBytes < 100<<20 {
		t.Errorf("status %s, error %q, memory peak %d MiB", res.Status, res.Error, res.MemoryPeakBytes>>20)
	}
}
