package test

import (
	"encoding/json"
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
