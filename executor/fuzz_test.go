package executor

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// FuzzDecodeExecRequest feeds the node's decoding of an execution request message (what
// handle does with a JetStream message before anything runs: JSON body, checkRequest, the
// subject's tenant against the body's) arbitrary bodies and subjects. It must never panic, a
// request it accepts must carry valid ids, and the limits derived from any accepted request
// must stay within the tier's (a crafted timeout, memory or output size cannot raise them).
func FuzzDecodeExecRequest(f *testing.F) {
	good, _ := json.Marshal(schemas.ExecRequest{
		ExecutionID: "ex_0123456789abcdef0123456789abcdef", TenantID: "acme", KeyID: "k1", Tier: "free",
		ModuleID:   "sha256:" + strings.Repeat("ab", 32),
		ModuleName: "m", Stdin: []byte("hi"), Args: []string{"a"}, Env: map[string]string{"K": "V"},
		TimeoutMS: 1000, MemoryMB: 16, StdoutMax: 10, StderrMax: 10, CreatedAt: time.Unix(0, 0).UTC(),
	})
	var seed schemas.ExecRequest
	if err := json.Unmarshal(good, &seed); err != nil || checkRequest(&seed) != nil {
		f.Fatalf("the good seed is refused: %v %v", err, checkRequest(&seed))
	}
	f.Add(good, "wasmwiz.exec.free.acme")
	f.Add(good, "wasmwiz.exec.free.other")
	f.Add([]byte(`{"execution_id":"x","tenant_id":"acme","module_id":"sha256:00","timeout_ms":-1,"memory_mb":-5}`), "wasmwiz.exec.free.acme")
	f.Add([]byte(`{"timeout_ms":9223372036854775807,"memory_mb":9223372036854775807,"stdout_max":-9223372036854775808}`), "wasmwiz.exec.pro.acme")
	f.Add([]byte(`null`), "")
	f.Add([]byte(`[]`), "wasmwiz.exec..")
	tier := schemas.DefaultTiers()[schemas.TierFree]

	f.Fuzz(func(t *testing.T, body []byte, subject string) {
		var req schemas.ExecRequest
		err := json.Unmarshal(body, &req)
		if err == nil {
			err = checkRequest(&req)
		}
		if err != nil {
			return
		}
		if !schemas.ValidExecutionID(req.ExecutionID) || !schemas.ValidToken(req.TenantID) {
			t.Fatalf("accepted ids %q %q", req.ExecutionID, req.TenantID)
		}
		if _, err := schemas.ParseModuleID(req.ModuleID); err != nil {
			t.Fatalf("accepted module id %q: %v", req.ModuleID, err)
		}
		// handle refuses a body whose tenant is not its subject's (never panicking on either).
		if _, tenant, err := schemas.ParseExecSubject(subject); err == nil && tenant == req.TenantID && !schemas.ValidToken(tenant) {
			t.Fatalf("subject %q names an invalid tenant %q", subject, tenant)
		}
		// The limits execute derives (see execute) stay within the tier, whatever was asked.
		if d := clampDuration(time.Duration(req.TimeoutMS)*time.Millisecond, tier.WallTime); d <= 0 || d > tier.WallTime {
			t.Fatalf("timeout_ms %d gives %v (tier %v)", req.TimeoutMS, d, tier.WallTime)
		}
		if m := clampInt(req.MemoryMB, tier.MemoryMB); m <= 0 || m > tier.MemoryMB || uint64(m)*16 > 65536 {
			t.Fatalf("memory_mb %d gives %d (tier %d)", req.MemoryMB, m, tier.MemoryMB)
		}
		for _, asked := range []int{req.StdoutMax, req.StderrMax} {
			if n := clampInt(asked, tier.StdoutMax); n <= 0 || n > tier.StdoutMax {
				t.Fatalf("output max %d gives %d (tier %d)", asked, n, tier.StdoutMax)
			}
		}
		// What was accepted survives a re-encoding (a redelivery decodes the same bytes again).
		again, _ := json.Marshal(&req)
		var req2 schemas.ExecRequest
		if err := json.Unmarshal(again, &req2); err != nil || checkRequest(&req2) != nil {
			t.Fatalf("re-encoded request %s is refused: %v", again, err)
		}
	})
}
