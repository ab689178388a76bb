package test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wasmwiz/wasmwiz/internal/fixtures"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// TestDev_BigModulesAndOutputs runs issue 14's big-module walls through wasmwiz dev as a user
// of the unlimited tier meets them: a module over the old 50 MiB cap (generated: 60 MiB of
// data) uploads over REST, is stored, compiled and run; a stdout larger than a NATS message
// (12 MiB) comes back whole from stdout_url, from the CLI and over NATS in pieces; and a
// module that uses an unsupported proposal is refused with a 422 naming it.
func TestDev_BigModulesAndOutputs(t *testing.T) {
	// Pro's stdout_max raised to 64 MiB, so that tenant dev (pro; the NATS tenant) gets a stored
	// stdout too.
	tiersFile := filepath.Join(t.TempDir(), "tiers.json")
	if err := os.WriteFile(tiersFile, []byte(`{"pro": {"stdout_max": 67108864, "stdin_max": 16777216}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startDevEnv(t, filepath.Join(t.TempDir(), "wasmwiz-data"), "WASMWIZ_TIERS_FILE="+tiersFile)
	key := s.newTenant(t, "big", schemas.TierUnlimited)

	const dataBytes = 60 << 20
	wasm := genDataModule(dataBytes)
	if len(wasm) <= 50<<20 {
		t.Fatalf("generated module is %d bytes, want more than 50 MiB", len(wasm))
	}
	start := time.Now()
	m := s.upload(t, key, "big", wasm)
	t.Logf("uploaded and compiled a %d MiB module in %v", len(wasm)>>20, time.Since(start).Round(time.Millisecond))
	if m.Size != int64(len(wasm)) {
		t.Fatalf("module %+v, want size %d", m, len(wasm))
	}
	if ex := s.run(t, key, schemas.ExecutionRequest{ModuleID: m.ID}); ex.Status != schemas.StatusSucceeded {
		t.Fatalf("big module: %s %s", ex.Status, ex.Error)
	}
	// The same bytes are too big for a pro tenant: 413 from the tier's module_size.
	if r := s.do(t, http.MethodPost, "/v1/modules", s.DevKey, "application/wasm", wasm); r.Status != http.StatusRequestEntityTooLarge {
		t.Errorf("pro upload of %d bytes: %d %s", len(wasm), r.Status, r.Body)
	}

	// 12 MiB of stdout: the result carries the first MiB and a link to all of it.
	big := s.upload(t, key, "stdoutbig", fixtures.Wasm("stdoutbig"))
	ex := s.run(t, key, schemas.ExecutionRequest{ModuleID: big.ID})
	const want = 12 << 20
	if ex.Status != schemas.StatusSucceeded || ex.StdoutTruncated || len(ex.Stdout) != schemas.InlineOutputMax ||
		ex.StdoutURL != "/v1/executions/"+ex.ID+"/stdout" || ex.StderrURL != "" || ex.Stderr != "\n" {
		t.Fatalf("stdoutbig: %s, %d bytes inline, truncated %v, stdout_url %q, stderr_url %q",
			ex.Status, len(ex.Stdout), ex.StdoutTruncated, ex.StdoutURL, ex.StderrURL)
	}
	wantOut := make([]byte, 0, want)
	for i := range want / (64 << 10) {
		wantOut = append(wantOut, bytes.Repeat([]byte{byte('a' + i%26)}, 64<<10)...)
	}
	r := s.do(t, http.MethodGet, ex.StdoutURL, key, "", nil)
	if r.Status != 200 || !bytes.Equal(r.Body, wantOut) {
		t.Fatalf("GET %s: %d, %d bytes, want the %d bytes written", ex.StdoutURL, r.Status, len(r.Body), want)
	}
	if r := s.do(t, http.MethodGet, "/v1/executions/"+ex.ID+"/stderr", key, "", nil); r.Status != 200 || string(r.Body) != "\n" {
		t.Errorf("GET stderr (inline): %d %q", r.Status, r.Body)
	}
	if r := s.do(t, http.MethodGet, ex.StdoutURL, s.DevKey, "", nil); r.Status != http.StatusNotFound {
		t.Errorf("another tenant's stdout: %d, want 404", r.Status)
	}

	// The CLI prints all of it.
	out, errOut, code := cli(t, "run", "--url", s.URL, "--key", key, filepath.Join("..", "internal", "fixtures", "wasm", "stdoutbig.wasm"))
	if code != 0 || out != string(wantOut) || errOut != "\n" {
		t.Errorf("wasmwiz run: exit %d, %d bytes of stdout (want %d), stderr %q", code, len(out), want, errOut)
	}

	// Over NATS, executions.output in pieces of at most 4 MiB. The NATS tenant is dev, so dev
	// runs it too.
	devBig := s.upload(t, s.DevKey, "stdoutbig", fixtures.Wasm("stdoutbig"))
	devEx := s.run(t, s.DevKey, schemas.ExecutionRequest{ModuleID: devBig.ID})
	if devEx.StdoutURL == "" || devEx.StdoutTruncated {
		t.Errorf("pro tier with stdout_max 64 MiB: truncated %v, %d bytes, stdout_url %q", devEx.StdoutTruncated, len(devEx.Stdout), devEx.StdoutURL)
	}
	nc, err := s.connectNATS()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var got []byte
	pieces := 0
	for off := int64(0); ; pieces++ {
		body, _ := json.Marshal(schemas.OutputRequest{ID: devEx.ID, Stream: schemas.StreamStdout, Offset: off})
		rep := natsMsg(t, nc, schemas.OpExecutionsOutput, s.DevKey, body)
		var c schemas.OutputChunk
		if err := json.Unmarshal(rep.Data, &c); err != nil || natsStatus(rep) != 200 || c.Size != want || c.Offset != off {
			t.Fatalf("executions.output at %d: %d %.200s %v", off, natsStatus(rep), rep.Data, err)
		}
		got = append(got, c.Data...)
		off += int64(len(c.Data))
		if c.EOF || len(c.Data) == 0 {
			break
		}
	}
	if !bytes.Equal(got, wantOut) || pieces < 2 {
		t.Errorf("executions.output returned %d bytes in %d pieces, want the %d of stdout", len(got), pieces+1, want)
	}

	// An output file larger than a NATS message: a 12 MiB file of a bundle, mounted writable,
	// returned as an output; the result carries its record and url, the download its bytes.
	bigFile := bytes.Repeat([]byte("0123456789abcdef"), (12<<20)/16)
	br, bundle := s.uploadBundle(t, key, tarball(t, tarFile{name: "big.bin", body: string(bigFile)}))
	if br.Status != http.StatusCreated {
		t.Fatalf("bundle: %d %s", br.Status, br.Body)
	}
	rw := false
	hello := s.upload(t, key, "hello", fixtures.Wasm("hello"))
	fex := s.run(t, key, schemas.ExecutionRequest{ModuleID: hello.ID, Mounts: []schemas.Mount{{Bundle: bundle.ID, Path: "/out", ReadOnly: &rw}}, Outputs: []string{"/out/*"}})
	if fex.Status != schemas.StatusSucceeded || len(fex.Files) != 1 || fex.Files[0].Size != int64(len(bigFile)) || fex.Files[0].Truncated ||
		fex.Files[0].URL == "" || fex.Files[0].Text != "" || fex.Files[0].Base64 != "" {
		t.Fatalf("big output file: %s %s, files %+v", fex.Status, fex.Error, fex.Files)
	}
	if r := s.do(t, http.MethodGet, fex.Files[0].URL, key, "", nil); r.Status != 200 || !bytes.Equal(r.Body, bigFile) {
		t.Fatalf("GET %s: %d, %d bytes, want %d", fex.Files[0].URL, r.Status, len(r.Body), len(bigFile))
	}
	// The CLI writes it to the output directory.
	share, outDir := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(share, "big.bin"), bigFile, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := cli(t, "run", "--url", s.URL, "--key", key, "--mount", share+":/out:rw", "--output", "/out/*", "--output-dir", outDir,
		filepath.Join("..", "internal", "fixtures", "wasm", "hello.wasm")); code != 0 {
		t.Errorf("wasmwiz run --output: exit %d: %s", code, errOut)
	} else if got, err := os.ReadFile(filepath.Join(outDir, "out", "big.bin")); err != nil || !bytes.Equal(got, bigFile) {
		t.Errorf("wasmwiz run --output wrote %d bytes (%v), want %d", len(got), err, len(bigFile))
	}

	// A stdin the tier allows (16 MiB here) but the message bus cannot carry (8 MiB messages):
	// a 413 that says so, not a 503.
	body, _ := json.Marshal(schemas.ExecutionRequest{ModuleID: devBig.ID, Stdin: strings.Repeat("s", 9<<20)})
	r = s.do(t, http.MethodPost, "/v1/executions", s.DevKey, "application/json", body)
	if code, detail := r.problem(t); r.Status != http.StatusRequestEntityTooLarge || code != string(schemas.CodeTooLarge) || !strings.Contains(detail, "max_payload") {
		t.Errorf("9 MiB of stdin: %d %s %q, want 413 naming max_payload", r.Status, code, detail)
	}
	// Over direct NATS the same: 7 MiB of stdin fits the request's message, not the execution's
	// (base64): a 413 naming max_payload and the way round it, a bundle uploaded over REST and
	// named in stdin_file.
	body, _ = json.Marshal(schemas.ExecutionRequest{ModuleID: devBig.ID, Stdin: strings.Repeat("s", 7<<20)})
	rep := natsMsg(t, nc, schemas.OpExecutionsCreate, s.DevKey, body)
	var p struct{ Code, Detail string }
	if json.Unmarshal(rep.Data, &p) != nil || natsStatus(rep) != http.StatusRequestEntityTooLarge || p.Code != string(schemas.CodeTooLarge) ||
		!strings.Contains(p.Detail, "max_payload") || !strings.Contains(p.Detail, "POST /v1/bundles") || !strings.Contains(p.Detail, "stdin_file") {
		t.Errorf("7 MiB of stdin over NATS: %d %.300s, want 413 too_large naming max_payload, bundles and stdin_file", natsStatus(rep), rep.Data)
	}
	// A request larger than a message never leaves the client: nats.go refuses it.
	body, _ = json.Marshal(schemas.ExecutionRequest{ModuleID: devBig.ID, Stdin: strings.Repeat("s", 9<<20)})
	if _, err := nc.Request(schemas.APISubject(schemas.OpExecutionsCreate), body, 10*time.Second); !errors.Is(err, nats.ErrMaxPayload) {
		t.Errorf("9 MiB of stdin over NATS: %v, want %v", err, nats.ErrMaxPayload)
	}
	// The way round it, over NATS: the 12 MiB file of the bundle above (uploaded by dev too)
	// is echo's stdin, and all of it comes back as its stdout.
	if br, _ := s.uploadBundle(t, s.DevKey, tarball(t, tarFile{name: "big.bin", body: string(bigFile)})); br.Status != http.StatusCreated {
		t.Fatalf("dev's bundle: %d %s", br.Status, br.Body)
	}
	echo := s.upload(t, s.DevKey, "echo", fixtures.Wasm("echo"))
	body, _ = json.Marshal(schemas.ExecutionRequest{ModuleID: echo.ID, Mounts: []schemas.Mount{{Bundle: bundle.ID, Path: "/in"}}, StdinFile: "/in/big.bin"})
	var se schemas.Execution
	if rep := natsMsg(t, nc, schemas.OpExecutionsCreate, s.DevKey, body); natsStatus(rep) != 200 || json.Unmarshal(rep.Data, &se) != nil ||
		se.Status != schemas.StatusSucceeded || se.StdoutURL == "" {
		t.Fatalf("12 MiB of stdin from a bundle over NATS: %d %.300s", natsStatus(rep), rep.Data)
	}
	if r := s.do(t, http.MethodGet, se.StdoutURL, s.DevKey, "", nil); r.Status != 200 || !bytes.Equal(r.Body, bigFile) {
		t.Errorf("GET %s: %d, %d bytes, want the %d of the file", se.StdoutURL, r.Status, len(r.Body), len(bigFile))
	}

	// A module that uses the exception-handling proposal: 422 naming it.
	eh := []byte("\x00asm\x01\x00\x00\x00\x0d\x01\x00") // an empty tag section
	r = s.do(t, http.MethodPost, "/v1/modules", key, "application/wasm", eh)
	if code, detail := r.problem(t); r.Status != http.StatusUnprocessableEntity || code != string(schemas.CodeInvalidModule) ||
		!strings.Contains(detail, "exception-handling proposal") || !strings.Contains(detail, "does not support") {
		t.Errorf("exception handling module: %d %s %q", r.Status, code, detail)
	}
}

// TestMeasure_MaxModule uploads, compiles and runs a module of nearly the unlimited tier's 256
// MiB (generated: 250 MiB of data) through every wall on its way. Run with WASMWIZ_MEASURE=1.
func TestMeasure_MaxModule(t *testing.T) {
	if os.Getenv("WASMWIZ_MEASURE") == "" {
		t.Skip("set WASMWIZ_MEASURE=1")
	}
	s := startDev(t, filepath.Join(t.TempDir(), "wasmwiz-data"))
	key := s.newTenant(t, "max", schemas.TierUnlimited)
	wasm := genDataModule(250 << 20)
	start := time.Now()
	m := s.upload(t, key, "max", wasm)
	upload := time.Since(start)
	start = time.Now()
	ex := s.run(t, key, schemas.ExecutionRequest{ModuleID: m.ID})
	t.Logf("%d MiB module: upload answered in %v (compile %.0f ms); first execution %s in %v",
		len(wasm)>>20, upload.Round(time.Millisecond), m.CompileMS, ex.Status, time.Since(start).Round(time.Millisecond))
	if ex.Status != schemas.StatusSucceeded {
		t.Fatalf("execution: %s %s", ex.Status, ex.Error)
	}
}
