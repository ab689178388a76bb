package test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/internal/fixtures"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// Hole 9 (results): a tenant's stored results had no bound but its executions per day times
// ~2.65 MB within the results TTL, so one tenant could fill the results bucket for everyone.
// Now each tier has result_bytes: the executor counts every result's bytes (compare-and-set on
// a per-tenant record) and cuts the outputs of a result that would go past it, marked
// storage_quota_exceeded (status and exit code are still the guest's: the accepted execution is
// not lost); once the quota is used, the gateway refuses new executions with 413
// storage_quota_exceeded and a Retry-After, over REST and NATS. Another tenant is unaffected.
// Before the fix every execution ran and stored its whole output.
func TestSecurity_Hole9_ResultStorageQuota(t *testing.T) {
	const quota = 1_000_000
	s := startDevTiers(t, fmt.Sprintf(`{"free": {"result_bytes": %d, "exec_per_minute": 100}}`, quota))
	nc := s.natsConn(t)
	stdin := strings.Repeat("r", 300_000) // stored base64 in the result: ~400 KB each
	for _, transport := range []string{"rest", "nats"} {
		t.Run(transport, func(t *testing.T) {
			key := s.newTenant(t, "hoarder-"+transport, schemas.TierFree)
			m := s.upload(t, key, "echo", fixtures.Wasm("echo"))
			body := mustJSON(schemas.ExecutionRequest{ModuleID: m.ID, Stdin: stdin})
			exec := func() (status int, code, retryAfter string, e schemas.Execution) {
				if transport == "rest" {
					r := s.do(t, http.MethodPost, "/v1/executions", key, "application/json", body)
					if r.Status == 200 {
						r.decode(t, &e)
					} else {
						code, _ = r.problem(t)
					}
					return r.Status, code, r.Header.Get("Retry-After"), e
				}
				msg := natsMsg(t, nc, schemas.OpExecutionsCreate, key, body)
				if status = natsStatus(msg); status == 200 {
					if err := json.Unmarshal(msg.Data, &e); err != nil {
						t.Fatal(err)
					}
				} else {
					code = natsProblemCode(t, msg)
				}
				return status, code, msg.Header.Get("Retry-After"), e
			}
			var cut []string
			for i := range 8 {
				status, code, retryAfter, e := exec()
				t.Logf("execution %d: %d %s stdout %d bytes truncated=%v storage_quota_exceeded=%v", i, status, code, len(e.Stdout), e.StdoutTruncated, e.StorageQuotaExceeded)
				if status != 200 {
					if status != 413 || code != string(schemas.CodeStorageQuotaExceeded) {
						t.Fatalf("execution %d: %d %s, want 200 or 413 storage_quota_exceeded", i, status, code)
					}
					if ra, err := strconv.Atoi(retryAfter); err != nil || ra < 1 {
						t.Errorf("413 without a Retry-After: %q", retryAfter)
					}
					if i < 2 || len(cut) == 0 {
						t.Fatalf("refused after %d executions, %d of them cut: the first two fit the quota", i, len(cut))
					}
					// The cut results are stored, with the guest's status and the flag.
					for _, id := range cut {
						var got schemas.Execution
						s.do(t, http.MethodGet, "/v1/executions/"+id, key, "", nil).decode(t, &got)
						if got.Status != schemas.StatusSucceeded || !got.StorageQuotaExceeded || !got.StdoutTruncated {
							t.Errorf("stored cut result %s: %+v", id, got)
						}
					}
					return
				}
				if e.Status != schemas.StatusSucceeded || e.ExitCode == nil || *e.ExitCode != 0 {
					t.Fatalf("execution %d: %+v", i, e)
				}
				whole := len(e.Stdout) == len(stdin) && !e.StdoutTruncated && !e.StorageQuotaExceeded
				switch {
				case i < 2 && !whole:
					t.Fatalf("execution %d was cut, but two results fit the quota", i)
				case !whole && (!e.StorageQuotaExceeded || !e.StdoutTruncated):
					t.Fatalf("execution %d lost output without saying why: %+v", i, e)
				case whole && len(cut) > 0:
					t.Fatalf("execution %d stored whole after the quota was reached", i)
				case !whole:
					cut = append(cut, e.ID)
				}
			}
			t.Fatal("eight executions of ~400 KB results each ran within a 1 MB quota")
		})
	}
	// A tenant with its own quota is not affected by the other two.
	key := s.newTenant(t, "neighbour", schemas.TierFree)
	e := s.run(t, key, schemas.ExecutionRequest{ModuleBase64: b64(fixtures.Wasm("echo")), Stdin: stdin})
	if len(e.Stdout) != len(stdin) || e.StorageQuotaExceeded {
		t.Errorf("another tenant's result: %d bytes, storage_quota_exceeded=%v", len(e.Stdout), e.StorageQuotaExceeded)
	}
}

// Hole 9 (bundles): bundles had no storage quota at all. Now a tier's stored_bundle_bytes
// bounds the archives a tenant stores; past it an upload is a 413 storage_quota_exceeded over
// REST and NATS, the same archive again costs nothing, and deleting a bundle makes room.
func TestSecurity_Hole9_BundleStorageQuota(t *testing.T) {
	s := startDevTiers(t, `{"free": {"files": {"bundle_bytes": 65536, "bundle_files": 10}, "stored_bundle_bytes": 150000}}`)
	nc := s.natsConn(t)
	archive := func(c byte) []byte {
		return tarball(t, tarFile{name: "data.bin", body: strings.Repeat(string(c), 60_000)})
	}
	for _, transport := range []string{"rest", "nats"} {
		t.Run(transport, func(t *testing.T) {
			key := s.newTenant(t, "bundler-"+transport, schemas.TierFree)
			upload := func(a []byte) (int, string, *schemas.Bundle) {
				var b schemas.Bundle
				if transport == "rest" {
					r := s.do(t, http.MethodPost, "/v1/bundles?name=data", key, "application/x-tar", a)
					if r.Status == http.StatusCreated {
						r.decode(t, &b)
						return 200, "", &b
					}
					code, _ := r.problem(t)
					return r.Status, code, nil
				}
				msg := natsMsg(t, nc, schemas.OpBundlesUpload, key, a, "Wasmwiz-Bundle-Name", "data")
				if st := natsStatus(msg); st != 200 {
					return st, natsProblemCode(t, msg), nil
				}
				if err := json.Unmarshal(msg.Data, &b); err != nil {
					t.Fatal(err)
				}
				return 200, "", &b
			}
			_, _, first := upload(archive('a'))
			if st, code, _ := upload(archive('b')); st != 200 {
				t.Fatalf("second bundle within the quota: %d %s", st, code)
			}
			if st, code, _ := upload(archive('c')); st != 413 || code != string(schemas.CodeStorageQuotaExceeded) {
				t.Fatalf("third bundle over the quota: %d %s, want 413 storage_quota_exceeded", st, code)
			}
			if st, code, _ := upload(archive('a')); st != 200 {
				t.Fatalf("an owned bundle again: %d %s", st, code)
			}
			if first == nil {
				t.Fatal("first bundle refused")
			}
			if r := s.do(t, http.MethodDelete, "/v1/bundles/"+first.ID, key, "", nil); r.Status != http.StatusNoContent {
				t.Fatalf("delete: %d %s", r.Status, r.Body)
			}
			if st, code, _ := upload(archive('c')); st != 200 {
				t.Fatalf("after a delete: %d %s", st, code)
			}
		})
	}
}

// Hole 9 (racing uploads): the module quota was checked before storing only, so uploads
// racing each other (one tenant, several gateways or compile slots) could all pass it. Each
// upload now checks again once its ownership record is written and withdraws it if the total
// is over: whatever the interleaving, the tenant never stores more than its quota.
func TestSecurity_Hole9_RacingUploadsStayWithinQuota(t *testing.T) {
	const quota, size = 1 << 20, 400 << 10
	s := startDevTiers(t, fmt.Sprintf(`{"free": {"module_size": %d, "module_bytes": %d, "compiles_in_flight": 4, "uploads_per_minute": 100}}`, quota, quota))
	key := s.newTenant(t, "racer", schemas.TierFree)
	var wg sync.WaitGroup
	// Four at once: dev's executor takes four compiles at a time (two per worker).
	statuses := make([]int, 4)
	for i := range statuses {
		wg.Go(func() {
			r := s.do(t, http.MethodPost, fmt.Sprintf("/v1/modules?name=m%d", i), key, "application/wasm", sizedModule(size, byte('a'+i)))
			statuses[i] = r.Status
			if r.Status != 201 {
				// 413 is the quota; a small machine's executor may also be too busy to compile (503).
				if code, _ := r.problem(t); (r.Status != 413 || code != string(schemas.CodeStorageQuotaExceeded)) && r.Status != 503 {
					t.Errorf("upload %d: %d %s", i, r.Status, r.Body)
				}
			}
		})
	}
	wg.Wait()
	var l schemas.ModuleList
	s.do(t, http.MethodGet, "/v1/modules", key, "", nil).decode(t, &l)
	var stored int64
	for _, m := range l.Modules {
		stored += m.Size
	}
	t.Logf("statuses %v; %d modules stored, %d bytes of a %d quota", statuses, len(l.Modules), stored, quota)
	if stored > quota {
		t.Errorf("racing uploads stored %d bytes, over the %d quota", stored, quota)
	}
	if len(l.Modules) == 0 {
		t.Error("no upload was stored")
	}
}

// Hole 9 (stored outputs): a result cut to its tenant's quota drops the outputs the executor had
// stored as objects (a stdout over 1 MiB) with them. The executor's NATS user may not purge
// streams (nats-roles.conf), and an object store's Delete purges the object's chunks: so the
// delete waited out the JetStream timeout before the result was answered, and the chunks stayed
// in the outputs store, uncounted, until they expired.
func TestSecurity_Hole9_CutOutputsRemoved(t *testing.T) {
	s := startDevTiers(t, `{"free": {"result_bytes": 1500000, "stdin_max": 2097152, "stdout_max": 2097152, "exec_per_minute": 100}}`)
	key := s.newTenant(t, "big-stdout", schemas.TierFree)
	m := s.upload(t, key, "echo", fixtures.Wasm("echo"))
	js := s.adminJetStream(t)
	outputs := func() uint64 { return objectStoreState(t, js, schemas.ObjectOutputs).Msgs }
	before := outputs()
	start := time.Now()
	// 1.6 MB of stdout: its first MiB inline and the whole stored as an object, together over
	// the quota, so the result is cut and the object deleted.
	e := s.run(t, key, schemas.ExecutionRequest{ModuleID: m.ID, Stdin: strings.Repeat("o", 1_600_000)})
	took := time.Since(start)
	if e.Status != schemas.StatusSucceeded || !e.StorageQuotaExceeded || !e.StdoutTruncated {
		t.Fatalf("execution: %s, storage_quota_exceeded=%v, stdout_truncated=%v", e.Status, e.StorageQuotaExceeded, e.StdoutTruncated)
	}
	if after := outputs(); after != before {
		t.Errorf("the outputs store holds %d messages after the cut result, %d before: its stored stdout was not removed", after, before)
	}
	if took > 4*time.Second {
		t.Errorf("the cut result took %v to answer (a purge the executor may not make waits out its timeout)", took)
	}
}
