//go:build faults

package test

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/internal/fixtures"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// TestFaults_RestoreDrill backs up a single-node system (wasmwiz dev: JetStream store and
// SQLite in one data directory) by copying its data directory while it is stopped, does more
// work, wipes the directory, restores the copy and starts again: modules, keys, results and
// usage from before the backup are all back, the work after it is lost. It reports the time
// from the wipe to a ready system (RTO) and what was lost (RPO). A cold copy of a stopped node
// only: the JetStream snapshot API (nats stream backup/restore) on a cluster is not drilled here.
func TestFaults_RestoreDrill(t *testing.T) {
	root := t.TempDir()
	data, backup := filepath.Join(root, "data"), filepath.Join(root, "backup")
	s := startDev(t, data)
	m := s.upload(t, s.DevKey, "hello", fixtures.Wasm("hello"))
	before := s.run(t, s.DevKey, schemas.ExecutionRequest{ModuleID: m.ID})
	r := s.do(t, http.MethodPost, "/v1/keys", s.DevKey, "application/json", []byte(`{}`))
	if r.Status != 201 {
		t.Fatalf("create key: %d %s", r.Status, r.Body)
	}
	var made schemas.CreatedKey
	r.decode(t, &made)
	usage := func(s *system) int64 {
		r := s.do(t, http.MethodGet, "/v1/usage", s.DevKey, "", nil)
		if r.Status != 200 {
			return -1
		}
		var u schemas.UsageResponse
		r.decode(t, &u)
		return u.Total.Executions
	}
	eventually(t, 30*time.Second, "usage never counted the execution", func() bool { return usage(s) == 1 })

	// The backup: stop, copy the data directory.
	s.procs[0].stop(t)
	took := time.Now()
	if out, err := exec.Command("cp", "-a", data, backup).CombinedOutput(); err != nil {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	backupTook := time.Since(took)

	// Work after the backup: the restore loses it.
	s2 := startDev(t, data)
	after := s2.run(t, s2.DevKey, schemas.ExecutionRequest{ModuleID: m.ID})
	eventually(t, 30*time.Second, "usage never counted the second execution", func() bool { return usage(s2) == 2 })
	s2.procs[0].stop(t)

	// The disaster, then the restore.
	if err := os.RemoveAll(data); err != nil {
		t.Fatal(err)
	}
	wiped := time.Now()
	if out, err := exec.Command("cp", "-a", backup, data).CombinedOutput(); err != nil {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	s3 := startDev(t, data)
	rto := time.Since(wiped)

	if s3.DevKey != s.DevKey {
		t.Errorf("the dev key changed across the restore")
	}
	if r := s3.do(t, http.MethodGet, "/v1/modules/"+m.ID, s.DevKey, "", nil); r.Status != 200 {
		t.Errorf("module after the restore: %d %s", r.Status, r.Body)
	}
	if r := s3.do(t, http.MethodGet, "/v1/modules", made.Key, "", nil); r.Status != 200 {
		t.Errorf("the key made before the backup, after the restore: %d %s", r.Status, r.Body)
	}
	var got schemas.Execution
	if r := s3.do(t, http.MethodGet, "/v1/executions/"+before.ID, s.DevKey, "", nil); r.Status != 200 {
		t.Errorf("result from before the backup: %d %s", r.Status, r.Body)
	} else if r.decode(t, &got); got.Status != schemas.StatusSucceeded {
		t.Errorf("result from before the backup: %+v", got)
	}
	lost := s3.do(t, http.MethodGet, "/v1/executions/"+after.ID, s.DevKey, "", nil).Status == 404
	if n := usage(s3); n != 1 {
		t.Errorf("usage after the restore: %d executions, want 1 (the one before the backup)", n)
	}
	if e := s3.run(t, s.DevKey, schemas.ExecutionRequest{ModuleID: m.ID}); e.Status != schemas.StatusSucceeded {
		t.Errorf("run after the restore: %+v", e)
	}
	report, _ := json.Marshal(map[string]any{"backup_ms": backupTook.Milliseconds(), "rto_ms": rto.Milliseconds(),
		"rpo": "everything after the backup", "execution_after_backup_lost": lost})
	t.Logf("restore drill: %s", report)
	if !lost {
		t.Errorf("the execution after the backup survived the restore: the backup was not what was restored")
	}
}
