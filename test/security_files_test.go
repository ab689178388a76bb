package test

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"

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
