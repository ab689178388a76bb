package test

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/internal/fixtures"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// Files, bundles and outputs attacked as a hostile tenant and module would (SECURITY.md,
// "Files, bundles and outputs").

// TestSecurity_OutputPathsUnbounded: a free tenant's guest makes 100 directories of 255-byte
// names, one in the other, and 1,000 files in the deepest; a 205-byte pattern ("/*" 102 times)
// matched them all. The 25 MB result (1,000 paths of 25.6 KB) did not fit a NATS message:
// storing it failed, the execution was run again at every redelivery and stayed "running" (a
// 202 after the sync wait), and each failed store was charged to the tenant's result_bytes.
// Now a path over 1,024 bytes is not an output and the run succeeds with the files whose paths
// are bounded, over REST and NATS.
func TestSecurity_OutputPathsUnbounded(t *testing.T) {
	s := startDev(t, t.TempDir())
	key := s.newTenant(t, "deep-outputs", schemas.TierFree)
	mod := s.upload(t, key, "filesgo", fixtures.FilesGo(t))
	req := schemas.ExecutionRequest{ModuleID: mod.ID, Args: []string{"deep", "/o", "100", "1000"},
		Files:   map[string]schemas.FileContent{"/o/s/x.txt": {Text: "short"}},
		Outputs: []string{strings.Repeat("/*", 102), "/o/*/*.txt"}}
	check := func(how string, e *schemas.Execution) {
		t.Helper()
		if e.Status != schemas.StatusSucceeded || len(e.Files) != 1 || e.Files[0].Path != "/o/s/x.txt" || e.FilesTruncated {
			paths := 0
			for _, f := range e.Files {
				paths += len(f.Path)
			}
			t.Errorf("%s: %s (%s), %d files with %d bytes of paths, files_truncated %v; want succeeded with /o/s/x.txt alone",
				how, e.Status, e.Error, len(e.Files), paths, e.FilesTruncated)
		}
	}
	r, e := s.execute(t, key, req)
	if r.Status != 200 {
		t.Fatalf("rest: %d %.300s", r.Status, r.Body)
	}
	check("rest", e)

	nc, err := s.connectNATS()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	body, _ := json.Marshal(req)
	status, data := natsCall(t, nc, schemas.OpExecutionsCreate, key, body)
	var ne schemas.Execution
	if status != "200" || json.Unmarshal(data, &ne) != nil {
		t.Fatalf("nats: %s %.300s", status, data)
	}
	check("nats", &ne)
}

// TestSecurity_HostileBundles: bundles whose checks cost the gateway far more than their size,
// over REST and NATS. A directory 1,990 levels deep holding 5,000 empty files (a 75 KB
// .tar.gz) took the gateway over a minute of CPU: REST answered 422 "i/o timeout" when its body
// timeout struck, NATS nothing within a minute; now both store it at once. A zip of 5,000 tiny
// entries from a free tenant (bundle_files 1,000) was read whole into memory, then refused
// with a 422 about its contents; now it is a 413 too_large as its directory is read.
func TestSecurity_HostileBundles(t *testing.T) {
	s := startDev(t, t.TempDir())
	nc, err := s.connectNATS()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	upload := func(how, key, contentType string, archive []byte) (string, []byte) {
		t.Helper()
		if how == "rest" {
			r := s.do(t, http.MethodPost, "/v1/bundles?name=hostile", key, contentType, archive)
			return strconv.Itoa(r.Status), r.Body
		}
		status, data := natsCall(t, nc, schemas.OpBundlesUpload, key, archive, schemas.HeaderBundleName, "hostile")
		if status == "200" { // a NATS reply without an error: created
			status = "201"
		}
		return status, data
	}

	var tarb bytes.Buffer
	tw := tar.NewWriter(&tarb)
	dir := strings.Repeat("a/", 1990)
	for i := range 5000 {
		if err := tw.WriteHeader(&tar.Header{Name: dir + "f" + strconv.Itoa(i), Mode: 0o644, Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
	}
	tw.Close()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(tarb.Bytes())
	zw.Close()
	for _, how := range []string{"rest", "nats"} {
		if status, body := upload(how, s.DevKey, "application/gzip", gz.Bytes()); status != "201" {
			t.Errorf("%s: a %d-byte tar.gz of a 1,990-level directory: %s %.300s, want 201", how, gz.Len(), status, body)
		}
	}

	free := s.newTenant(t, "zip-entries", schemas.TierFree)
	var zb bytes.Buffer
	zipw := zip.NewWriter(&zb)
	for i := range 5000 {
		if _, err := zipw.CreateHeader(&zip.FileHeader{Name: "f" + strconv.Itoa(i), Method: zip.Store}); err != nil {
			t.Fatal(err)
		}
	}
	zipw.Close()
	for _, how := range []string{"rest", "nats"} {
		status, body := upload(how, free, "application/zip", zb.Bytes())
		var p struct{ Code string }
		if json.Unmarshal(body, &p); status != "413" || p.Code != string(schemas.CodeTooLarge) {
			t.Errorf("%s: a zip of 5,000 entries from a free tenant: %s %.300s, want 413 too_large", how, status, body)
		}
	}
}

// TestMeasure_DownloadPeakRSS measures a separate gateway process's peak RSS (VmHWM) while
// eight clients of one unlimited tenant download the same 64 MiB output file (the tier's
// outputs_bytes) at once: first reading as fast as they can, then each stalling 3 s after its
// first MiB (a slow client keeps its download open while the store goes on sending). Every
// client checks the bytes it got. It is a measurement, run on request:
//
//	WASMWIZ_MEASURE=1 go test ./test -run TestMeasure_DownloadPeakRSS -v
func TestMeasure_DownloadPeakRSS(t *testing.T) {
	if os.Getenv("WASMWIZ_MEASURE") == "" {
		t.Skip("a measurement: set WASMWIZ_MEASURE=1")
	}
	const size, clients = 64 << 20, 8
	s := startDevEnv(t, t.TempDir())
	key := s.newTenant(t, "downloader", schemas.TierUnlimited)
	file := make([]byte, size)
	for i := range file {
		file[i] = byte(i % 251)
	}
	want := sha256.Sum256(file)
	br, bundle := s.uploadBundle(t, key, tarball(t, tarFile{name: "big.bin", body: string(file)}))
	if br.Status != http.StatusCreated {
		t.Fatalf("bundle: %d %s", br.Status, br.Body)
	}
	rw := false
	hello := s.upload(t, key, "hello", fixtures.Wasm("hello"))
	ex := s.run(t, key, schemas.ExecutionRequest{ModuleID: hello.ID, Mounts: []schemas.Mount{{Bundle: bundle.ID, Path: "/out", ReadOnly: &rw}}, Outputs: []string{"/out/*"}})
	if ex.Status != schemas.StatusSucceeded || len(ex.Files) != 1 || ex.Files[0].Size != size || ex.Files[0].Truncated || ex.Files[0].URL == "" {
		t.Fatalf("output file: %s %s, files %+v", ex.Status, ex.Error, ex.Files)
	}

	addr := freeAddr(t)
	gw := start(t, append(s.natsRoleEnv("gateway"), "WASMWIZ_HTTP_ADDR="+addr), "gateway")
	waitReady(t, "http://"+addr, gw)
	pid := gw.cmd.Process.Pid
	download := func(stall time.Duration) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+ex.Files[0].URL, nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("download: %v", err)
			return
		}
		defer resp.Body.Close()
		h := sha256.New()
		n, err := io.CopyN(h, resp.Body, 1<<20)
		if err == nil {
			time.Sleep(stall)
			var m int64
			m, err = io.Copy(h, resp.Body)
			n += m
		}
		if resp.StatusCode != 200 || err != nil || n != size || resp.ContentLength != size || !bytes.Equal(h.Sum(nil), want[:]) {
			t.Errorf("download: %d, %d bytes (Content-Length %d), %v", resp.StatusCode, n, resp.ContentLength, err)
		}
	}
	base := procMem(t, pid)
	var wg sync.WaitGroup
	began := time.Now()
	for range clients {
		wg.Go(func() { download(0) })
	}
	wg.Wait()
	fast, fastTook := procMem(t, pid), time.Since(began)
	began = time.Now()
	for range clients {
		wg.Go(func() { download(3 * time.Second) })
	}
	wg.Wait()
	slow, slowTook := procMem(t, pid), time.Since(began)
	t.Logf("gateway VmHWM: idle %.0f MiB; after %d concurrent downloads of a 64 MiB output file %.0f MiB (%.1f s); after %d more, each stalling 3 s after its first MiB, %.0f MiB (%.1f s); VmRSS now %.0f MiB",
		mib(base.hwm), clients, mib(fast.hwm), fastTook.Seconds(), clients, mib(slow.hwm), slowTook.Seconds(), mib(slow.rss))
	if grow := slow.hwm - base.hwm; grow > 256<<20 {
		t.Errorf("the gateway's peak RSS grew by %.0f MiB for %d downloads it should stream", mib(grow), 2*clients)
	}
}
