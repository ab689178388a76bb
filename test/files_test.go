package test

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/internal/fixtures"
	"github.com/wasmwiz/wasmwiz/schemas"
)

type tarFile struct {
	name, body, link string
	typ              byte
}

func tarball(t testing.TB, files ...tarFile) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), Typeflag: tar.TypeReg, Linkname: f.link}
		if f.typ != 0 {
			h.Typeflag, h.Size = f.typ, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(f.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func (s *system) uploadBundle(t testing.TB, key string, archive []byte) (*response, *schemas.Bundle) {
	t.Helper()
	r := s.do(t, http.MethodPost, "/v1/bundles?name=data", key, "application/x-tar", archive)
	var b schemas.Bundle
	if r.Status == http.StatusCreated {
		r.decode(t, &b)
	}
	return r, &b
}

// TestDev_Files: a bundle uploaded over REST is mounted into executions of a C program (built
// here with clang and wasi-libc; skipped outside CI when clang is missing) and a Go wasip1
// program, over REST, over direct NATS and asynchronously, with an inline file, a working
// directory and output files; each lists a directory, reads a file, writes files and, once,
// 9 MiB of stdout; another tenant cannot see or mount the bundle; hostile archives (.., absolute
// paths, a symlink out, a device, a gzip bomb, too many files, 1,000,000 empty files) are
// refused with clear errors; a guest filling its scratch space or writing a huge output file
// fails cleanly and the node goes on.
func TestDev_Files(t *testing.T) {
	// Pro's stdout_max raised to 64 MiB, so that dev (pro) gets a stdout larger than a NATS
	// message back whole.
	tiersFile := filepath.Join(t.TempDir(), "tiers.json")
	if err := os.WriteFile(tiersFile, []byte(`{"pro": {"stdout_max": 67108864}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startDevEnv(t, t.TempDir(), "WASMWIZ_TIERS_FILE="+tiersFile)
	key := s.DevKey
	archive := tarball(t, tarFile{name: "a.txt", body: "hello bundle"}, tarFile{name: "b.bin", body: "\x00\x01\x02"},
		tarFile{name: "sub/", typ: tar.TypeDir}, tarFile{name: "sub/deep.txt", body: "deep"})
	r, b := s.uploadBundle(t, key, archive)
	if r.Status != http.StatusCreated || !strings.HasPrefix(b.ID, "sha256:") || b.Files != 3 || b.Entries != 4 || b.Size != 19 {
		t.Fatalf("upload bundle: %d %s", r.Status, r.Body)
	}
	// The same archive, gzip-compressed, is the same bundle.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(archive)
	zw.Close()
	if r := s.do(t, http.MethodPost, "/v1/bundles", key, "application/gzip", gz.Bytes()); r.Status != http.StatusCreated || !strings.Contains(string(r.Body), b.ID) {
		t.Fatalf("gzip upload: %d %s", r.Status, r.Body)
	}
	// A zip of the same files is a bundle with the same files (stored as a tar of its own).
	var zbuf bytes.Buffer
	zipw := zip.NewWriter(&zbuf)
	for name, body := range map[string]string{"a.txt": "hello bundle", "b.bin": "\x00\x01\x02", "sub/": "", "sub/deep.txt": "deep"} {
		w, _ := zipw.Create(name)
		io.WriteString(w, body)
	}
	zipw.Close()
	var zb schemas.Bundle
	if r := s.do(t, http.MethodPost, "/v1/bundles?name=zipped", key, "application/zip", zbuf.Bytes()); r.Status != http.StatusCreated {
		t.Fatalf("zip upload: %d %s", r.Status, r.Body)
	} else if r.decode(t, &zb); zb.Files != 3 || zb.Entries != 4 || zb.Size != 19 || zb.ID == b.ID {
		t.Fatalf("zip upload: %+v", zb)
	}
	if r := s.do(t, http.MethodDelete, "/v1/bundles/"+zb.ID, key, "", nil); r.Status != http.StatusNoContent {
		t.Fatalf("delete zip bundle: %d %s", r.Status, r.Body)
	}
	var list schemas.BundleList
	s.do(t, http.MethodGet, "/v1/bundles", key, "", nil).decode(t, &list)
	if len(list.Bundles) != 1 || list.Bundles[0].ID != b.ID {
		t.Fatalf("list: %+v", list)
	}

	guests := map[string][]byte{"go": fixtures.FilesGo(t)}
	if c := tryFilesC(t); c != nil {
		guests["c"] = c
	}
	nc, err := s.connectNATS()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// The direct NATS API serves bundles too: the same archive is the same bundle.
	if status, data := natsCall(t, nc, schemas.OpBundlesUpload, key, archive, "Wasmwiz-Bundle-Name", "data"); status != "200" || !strings.Contains(string(data), b.ID) {
		t.Fatalf("nats bundle upload: %s %s", status, data)
	}
	if status, data := natsCall(t, nc, schemas.OpBundlesList, key, nil); status != "200" || !strings.Contains(string(data), b.ID) {
		t.Fatalf("nats bundle list: %s %s", status, data)
	}
	for name, wasm := range guests {
		m := s.upload(t, key, "files-"+name, wasm)
		req := schemas.ExecutionRequest{
			ModuleID: m.ID, Args: []string{"files", "/data", "/out"},
			Mounts:  []schemas.Mount{{Bundle: b.ID, Path: "/data"}},
			Files:   map[string]schemas.FileContent{"/out/note.txt": {Text: "from the request"}, "/out/raw.bin": {Base64: "/wA="}},
			Workdir: "/out", Outputs: []string{"/out/*"},
		}
		const listing = "file a.txt 12\nfile b.bin 3\ndir sub 4096\nparent is a directory: 1\n"
		check := func(how string, e *schemas.Execution, want string) {
			t.Helper()
			if e.Status != schemas.StatusSucceeded {
				t.Fatalf("%s %s: %s %q stdout %.200q", name, how, e.Status, e.Error, e.Stdout)
			}
			stdout := e.Stdout
			if e.StdoutURL != "" { // more than a result carries: all of it is downloaded
				stdout = string(s.do(t, http.MethodGet, e.StdoutURL, key, "", nil).Body)
			}
			if stdout != want || e.StdoutTruncated {
				t.Errorf("%s %s: %d bytes of stdout (truncated %v), want %d: %.200q", name, how, len(stdout), e.StdoutTruncated, len(want), stdout)
			}
			got := map[string]schemas.ExecutionFile{}
			var paths []string
			for _, f := range e.Files {
				got[f.Path] = f
				paths = append(paths, f.Path)
			}
			if strings.Join(paths, " ") != "/out/bytes.bin /out/listing.txt /out/note.txt /out/raw.bin /out/upper.txt" {
				t.Fatalf("%s %s: files %v", name, how, paths)
			}
			if got["/out/upper.txt"].Text != "HELLO BUNDLE" || got["/out/note.txt"].Text != "from the request" ||
				got["/out/raw.bin"].Base64 != "/wA=" || got["/out/bytes.bin"].Size != 256 || got["/out/bytes.bin"].Base64 == "" {
				t.Errorf("%s %s: files %+v", name, how, e.Files)
			}
		}
		e := s.runWait(t, key, req)
		check("rest", e, listing)
		// An output file downloads as raw bytes, its path one URL-encoded segment.
		r := s.do(t, http.MethodGet, "/v1/executions/"+e.ID+"/files/"+url.PathEscape("/out/bytes.bin"), key, "", nil)
		if r.Status != 200 || len(r.Body) != 256 || r.Body[255] != 255 || r.Header.Get("Wasmwiz-File-Size") != "256" {
			t.Errorf("%s download: %d %s %v", name, r.Status, r.Body, r.Header)
		}
		if r := s.do(t, http.MethodGet, "/v1/executions/"+e.ID+"/files/out%2Fnone", key, "", nil); r.Status != 404 {
			t.Errorf("%s download of a file that is not an output: %d", name, r.Status)
		}

		body, _ := json.Marshal(req)
		status, data := natsCall(t, nc, schemas.OpExecutionsCreate, key, body)
		var ne schemas.Execution
		if status != "200" || json.Unmarshal(data, &ne) != nil {
			t.Fatalf("nats: %s %s", status, data)
		}
		check("nats", &ne, listing)

		areq := req
		areq.Async = true
		r, e = s.execute(t, key, areq)
		if r.Status != http.StatusAccepted {
			t.Fatalf("async: %d %s", r.Status, r.Body)
		}
		check("async", s.poll(t, key, e.ID), listing)

		// The same run writing 9 MiB of stdout after its files: more than a NATS message, it
		// comes back whole from stdout_url (pro's stdout_max is 64 MiB here).
		breq := req
		breq.Args = []string{"files", "/data", "/out", "9"}
		e = s.runWait(t, key, breq)
		if e.StdoutURL == "" {
			t.Errorf("%s 9 MiB of stdout: no stdout_url, %d bytes inline", name, len(e.Stdout))
		}
		check("9 MiB of stdout", e, listing+strings.Repeat("o", 9<<20))

		// Filling the scratch space (pro tier: 128 MiB) fails cleanly, with ENOSPC for the guest.
		e = s.runWait(t, key, schemas.ExecutionRequest{ModuleID: m.ID, Args: []string{"fill", "/tmp/fill"}})
		if e.Status != schemas.StatusFailed || !strings.Contains(e.Stdout, "No space left on device") || !strings.Contains(e.Error, "scratch space is full") {
			t.Errorf("%s fill: %s %q stdout %q", name, e.Status, e.Error, e.Stdout)
		}
		// A file larger than the outputs allow comes back cut and flagged.
		e = s.runWait(t, key, schemas.ExecutionRequest{ModuleID: m.ID, Args: []string{"big", "/tmp/big", "20"}, Outputs: []string{"/tmp/big"}})
		if e.Status != schemas.StatusSucceeded || len(e.Files) != 1 || !e.Files[0].Truncated || e.Files[0].Size != 20<<20 {
			t.Errorf("%s big: %s %q files %d", name, e.Status, e.Error, len(e.Files))
		}
	}

	// Another tenant sees nothing of the bundle and cannot mount it.
	other := s.newTenant(t, "files-other", schemas.TierFree)
	if r := s.do(t, http.MethodGet, "/v1/bundles/"+b.ID, other, "", nil); r.Status != http.StatusNotFound {
		t.Errorf("other tenant's get: %d", r.Status)
	}
	om := s.upload(t, other, "files-go", guests["go"])
	r, _ = s.execute(t, other, schemas.ExecutionRequest{ModuleID: om.ID, Mounts: []schemas.Mount{{Bundle: b.ID, Path: "/data"}}})
	if code, _ := r.problem(t); r.Status != http.StatusNotFound || code != "not_found" {
		t.Errorf("other tenant's mount: %d %s", r.Status, r.Body)
	}
	if r := s.do(t, http.MethodDelete, "/v1/bundles/"+b.ID, other, "", nil); r.Status != http.StatusNotFound {
		t.Errorf("other tenant's delete: %d", r.Status)
	}

	// Hostile archives (free tier: 1,000 entries, 16 MiB of file data).
	many := make([]tarFile, 1001)
	for i := range many {
		many[i] = tarFile{name: fmt.Sprintf("f%d", i)}
	}
	// 1,000,000 empty files (7.7 MB gzipped, 512 MB of tar) to a tier that allows 100,000:
	// refused as soon as the scan passes the limit, and the node goes on (checked below).
	var million bytes.Buffer
	zw, _ = gzip.NewWriterLevel(&million, gzip.BestSpeed)
	tw := tar.NewWriter(zw)
	for i := range 1_000_000 {
		if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("f%d", i), Mode: 0o644, Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
	}
	tw.Close()
	zw.Close()
	unlimited := s.newTenant(t, "files-unlimited", schemas.TierUnlimited)
	if r, _ := s.uploadBundle(t, unlimited, million.Bytes()); r.Status != http.StatusRequestEntityTooLarge {
		t.Errorf("1,000,000 empty files: %d %s", r.Status, r.Body)
	} else if code, detail := r.problem(t); code != string(schemas.CodeTooLarge) || !strings.Contains(detail, "more than 100000 files") {
		t.Errorf("1,000,000 empty files: %s %q", code, detail)
	}
	var bomb bytes.Buffer
	zw = gzip.NewWriter(&bomb)
	tw = tar.NewWriter(zw)
	tw.WriteHeader(&tar.Header{Name: "zeros", Mode: 0o644, Size: 256 << 20, Typeflag: tar.TypeReg})
	zeros := make([]byte, 1<<20)
	for range 256 {
		tw.Write(zeros)
	}
	tw.Close()
	zw.Close()
	for _, tc := range []struct {
		name    string
		archive []byte
		status  int
		detail  string
	}{
		{"dotdot", tarball(t, tarFile{name: "../escape", body: "x"}), 422, `".." is not allowed`},
		{"absolute", tarball(t, tarFile{name: "/etc/passwd", body: "x"}), 422, "absolute paths are not allowed"},
		{"symlink out", tarball(t, tarFile{name: "l", link: "../../etc/passwd", typ: tar.TypeSymlink}), 422, "outside the bundle"},
		{"device", tarball(t, tarFile{name: "null", typ: tar.TypeChar}), 422, "device files"},
		{"many files", tarball(t, many...), 413, "more than 1000"},
		{"zip bomb", bomb.Bytes(), 413, "more than 16777216 bytes"},
		{"not a tar", []byte(strings.Repeat("not a tar ", 100)), 422, "not a valid tar"},
	} {
		r, _ := s.uploadBundle(t, other, tc.archive)
		code, detail := r.problem(t)
		if r.Status != tc.status || !strings.Contains(detail, tc.detail) {
			t.Errorf("%s: %d %s %q", tc.name, r.Status, code, detail)
		}
	}

	// Bad file fields are refused before anything runs.
	for _, tc := range []struct {
		name string
		req  schemas.ExecutionRequest
		want string
	}{
		{"relative file", schemas.ExecutionRequest{Files: map[string]schemas.FileContent{"in/a": {Text: "x"}}}, "not an absolute path"},
		{"dotdot file", schemas.ExecutionRequest{Files: map[string]schemas.FileContent{"/in/../a": {Text: "x"}}}, "not a clean path"},
		{"dev", schemas.ExecutionRequest{Files: map[string]schemas.FileContent{"/dev/null": {Text: "x"}}}, "cannot write /dev/null"},
		{"file in a read-only mount", schemas.ExecutionRequest{Mounts: []schemas.Mount{{Bundle: b.ID, Path: "/d"}},
			Files: map[string]schemas.FileContent{"/d/x": {Text: "x"}}}, "inside the bundle mounted read-only"},
		{"big inline", schemas.ExecutionRequest{Files: map[string]schemas.FileContent{"/a": {Text: strings.Repeat("x", 2<<20)}}}, "inline files are over"},
		{"stdin_file and stdin", schemas.ExecutionRequest{StdinFile: "/in/a", Stdin: "x"}, "give stdin_file or stdin"},
		{"relative stdin_file", schemas.ExecutionRequest{StdinFile: "in/a"}, "stdin_file: "},
		{"stdin_file /dev/stdin", schemas.ExecutionRequest{StdinFile: "/dev/stdin"}, "not a file of the request"},
	} {
		tc.req.ModuleID = om.ID
		r, _ := s.execute(t, other, tc.req)
		if _, detail := r.problem(t); !strings.Contains(detail, tc.want) {
			t.Errorf("%s: %d %s", tc.name, r.Status, r.Body)
		}
	}

	// The owner deletes the bundle; mounting it is then a 404.
	if r := s.do(t, http.MethodDelete, "/v1/bundles/"+b.ID, key, "", nil); r.Status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	if r := s.do(t, http.MethodGet, "/v1/bundles/"+b.ID, key, "", nil); r.Status != http.StatusNotFound {
		t.Errorf("get after delete: %d", r.Status)
	}
	// The node is healthy after all of it.
	if e := s.runWait(t, key, schemas.ExecutionRequest{ModuleID: om.ID, Args: []string{"stdout", "1"}}); e.Status != schemas.StatusSucceeded {
		t.Errorf("after: %s %q", e.Status, e.Error)
	}
}

// tryFilesC builds the C guest, or skips only its part of a test when clang is missing (outside
// CI; fixtures.FilesC fails in CI).
func tryFilesC(t *testing.T) []byte {
	var wasm []byte
	t.Run("build-c", func(t *testing.T) { wasm = fixtures.FilesC(t) })
	return wasm
}

// runWait executes and waits for the end: a synchronous wait that runs out (202) is polled.
func (s *system) runWait(t testing.TB, key string, req schemas.ExecutionRequest) *schemas.Execution {
	t.Helper()
	r, e := s.execute(t, key, req)
	switch r.Status {
	case http.StatusOK:
		return e
	case http.StatusAccepted:
		return s.poll(t, key, e.ID)
	}
	t.Fatalf("execute: %d %s", r.Status, r.Body)
	return nil
}

// poll reads an execution until it is final.
func (s *system) poll(t testing.TB, key, id string) *schemas.Execution {
	t.Helper()
	var last schemas.Execution
	deadline := time.Now().Add(90 * time.Second)
	for {
		s.do(t, http.MethodGet, "/v1/executions/"+id, key, "", nil).decode(t, &last)
		if last.Status.Final() {
			return &last
		}
		if time.Now().After(deadline) {
			t.Fatalf("execution %s still %s after 90s", id, last.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDev_FilesCLI: `wasmwiz run --mount --file --output` packs a local directory as a bundle,
// uploads it once (a second run finds it by hash), sends a file inline and writes the output
// files into a local folder.
func TestDev_FilesCLI(t *testing.T) {
	base := t.TempDir()
	s := startDev(t, filepath.Join(base, "wasmwiz-data"))
	share := filepath.Join(base, "share")
	if err := os.MkdirAll(filepath.Join(share, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(share, "a.txt"), []byte("hello cli"), 0o644)
	os.WriteFile(filepath.Join(share, "sub", "deep.txt"), []byte("deep"), 0o644)
	os.WriteFile(filepath.Join(base, "note.txt"), []byte("a note"), 0o644)
	wasm := filepath.Join(base, "filesgo.wasm")
	os.WriteFile(wasm, fixtures.FilesGo(t), 0o644)
	run := func() (string, string) {
		t.Helper()
		cmd := exec.Command(bin(), "run", "--url", s.URL, "--key", s.DevKey,
			"--mount", share+":/share", "--file", filepath.Join(base, "note.txt")+":/out/note.txt",
			"--output", "/out/*", "--workdir", "/out", "--output-dir", filepath.Join(base, "got"),
			wasm, "--", "files", "/share", "/out")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("wasmwiz run: %v\n%s\n%s", err, stdout.String(), stderr.String())
		}
		return stdout.String(), stderr.String()
	}
	out, _ := run()
	if out != "file a.txt 9\ndir sub 4096\nparent is a directory: 1\n" {
		t.Errorf("stdout %q", out)
	}
	for name, want := range map[string]string{"upper.txt": "HELLO CLI", "note.txt": "a note", "listing.txt": "file a.txt 9\ndir sub 4096\n"} {
		if b, err := os.ReadFile(filepath.Join(base, "got", "out", name)); err != nil || string(b) != want {
			t.Errorf("%s: %q %v", name, b, err)
		}
	}
	run() // the same directory again: found by hash, not uploaded twice
	// --json prints the execution and still writes the files --output asked for (it wrote none:
	// a script using --json for the status lost its outputs).
	got2 := filepath.Join(base, "got-json")
	out, errOut, code := cli(t, "run", "--url", s.URL, "--key", s.DevKey, "--json", "--mount", share+":/share", "--output", "/out/*",
		"--output-dir", got2, wasm, "--", "files", "/share", "/out")
	var ex schemas.Execution
	if err := json.Unmarshal([]byte(out), &ex); err != nil || code != 0 || ex.Status != schemas.StatusSucceeded {
		t.Fatalf("wasmwiz run --json: exit %d, %v, stdout %q, stderr %q", code, err, out, errOut)
	}
	if b, err := os.ReadFile(filepath.Join(got2, "out", "upper.txt")); err != nil || string(b) != "HELLO CLI" {
		t.Errorf("wasmwiz run --json --output-dir: upper.txt %q %v", b, err)
	}
	// A file of the mounted directory as stdin: echo prints it.
	echo := filepath.Join(base, "echo.wasm")
	os.WriteFile(echo, fixtures.Wasm("echo"), 0o644)
	if out, errOut, code := cli(t, "run", "--url", s.URL, "--key", s.DevKey, "--mount", share+":/share", "--stdin-file", "/share/a.txt", echo); code != 0 || out != "hello cli" {
		t.Errorf("wasmwiz run --stdin-file: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	var list schemas.BundleList
	s.do(t, http.MethodGet, "/v1/bundles", s.DevKey, "", nil).decode(t, &list)
	if len(list.Bundles) != 1 || list.Bundles[0].Files != 2 {
		t.Errorf("bundles after two runs: %+v", list.Bundles)
	}
}

// TestDev_READMEFiles runs the README's example of files for guests ("Files for guests": a
// bundle made with tar, uploaded with curl, mounted into the Go program filesgo, an inline file
// and output files; then the same with wasmwiz run) with sh, as written, against a real
// wasmwiz dev, apart from its go build: the program is fixtures.FilesGo, built the same way.
// It checks what the example's comments say it prints.
func TestDev_READMEFiles(t *testing.T) {
	for _, tool := range []string{"curl", "jq", "tar"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("no %s on PATH", tool)
			}
			t.Skipf("no %s on PATH", tool)
		}
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	section := string(readme)
	if i := strings.Index(section, "\n## Files for guests\n"); i >= 0 {
		section = section[i:]
	} else {
		t.Fatal(`README has no "Files for guests" section`)
	}
	start := strings.Index(section, "```sh\n")
	end := strings.Index(section[start+6:], "```")
	if start < 0 || end < 0 {
		t.Fatal(`no sh block in the README's "Files for guests"`)
	}
	var script []string
	for _, line := range strings.Split(section[start+6:start+6+end], "\n") {
		if strings.HasPrefix(line, "GOOS=wasip1 GOARCH=wasm go build -o filesgo.wasm ") {
			continue // the fixture below
		}
		script = append(script, line)
	}
	s := startDev(t, t.TempDir())
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "filesgo.wasm"), fixtures.FilesGo(t), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-e", "-c", strings.Join(script, "\n"))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "U="+s.URL, "KEY="+s.DevKey, "PATH="+filepath.Dir(bin())+string(os.PathListSeparator)+os.Getenv("PATH"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("the README's example: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	// Its output: the bundle (tee), the execution (curl), the CLI's stdout, upper.txt (cat).
	dec := json.NewDecoder(&stdout)
	var b schemas.Bundle
	var e schemas.Execution
	if err := dec.Decode(&b); err != nil || b.Name != "share" || b.Files != 2 || b.Entries != 3 || b.Size != 25 || b.Stored != 10240 {
		t.Errorf("bundle (README: files 2, entries 3, size 25, stored 10240): %+v %v", b, err)
	}
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("execution: %v", err)
	}
	const listing = "file a.txt 20\ndir docs 4096\n"
	files := map[string]string{}
	for _, f := range e.Files {
		files[f.Path] = f.Text
	}
	if e.Status != schemas.StatusSucceeded || e.Stdout != listing+"parent is a directory: 1\n" || len(e.Files) != 3 ||
		files["/out/listing.txt"] != listing || files["/out/note.txt"] != "inline" || files["/out/upper.txt"] != "HELLO FROM A BUNDLE\n" {
		t.Errorf("execution: %s %q, stdout %q, files %+v", e.Status, e.Error, e.Stdout, e.Files)
	}
	rest, _ := io.ReadAll(io.MultiReader(dec.Buffered(), &stdout))
	if want := "\n" + listing + "parent is a directory: 1\nHELLO FROM A BUNDLE\n"; string(rest) != want {
		t.Errorf("the CLI's output and upper.txt: %q, want %q", rest, want)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "results", "out", "note.txt")); err != nil || string(got) != "inline\n" {
		t.Errorf("results/out/note.txt: %q %v", got, err)
	}
}
