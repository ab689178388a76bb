package test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmwiz/wasmwiz/internal/fixtures"
	"github.com/wasmwiz/wasmwiz/internal/streams"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// Issue 12, holes 6 (one request can take the gateway's memory), 8 (compile bombs) and 9 (no
// per-tenant storage quota). See SECURITY.md, "Uploads".

// sizedModule is a valid WASI command of exactly size bytes (size >= 64): an empty _start and
// one passive data segment that fills the rest, its bytes set to salt so that modules differ.
func sizedModule(size int, salt byte) []byte {
	var head bytes.Buffer
	head.WriteString("\x00asm\x01\x00\x00\x00")
	section(&head, 1, []byte{1, 0x60, 0, 0})
	section(&head, 3, []byte{1, 0})
	section(&head, 5, []byte{1, 0, 1})
	section(&head, 7, []byte{2, 6, '_', 's', 't', 'a', 'r', 't', 0, 0, 6, 'm', 'e', 'm', 'o', 'r', 'y', 2, 0})
	section(&head, 12, []byte{1})             // data count: one segment
	section(&head, 10, []byte{1, 2, 0, 0x0b}) // _start: no locals, end
	// The data section: id, size, count 1, passive flag 1, length, bytes. Sizes are LEB128, so
	// find the data length that makes the total exact.
	for n := size - head.Len() - 4; n > 0; n-- {
		var seg bytes.Buffer
		seg.Write([]byte{1, 1})
		uleb(&seg, uint64(n))
		seg.Write(bytes.Repeat([]byte{salt}, n))
		var out bytes.Buffer
		out.Write(head.Bytes())
		section(&out, 11, seg.Bytes())
		if out.Len() == size {
			return out.Bytes()
		}
	}
	panic(fmt.Sprintf("no module of %d bytes", size))
}

// fillReader yields prefix, then filler bytes, total bytes in all, counting what was read.
type fillReader struct {
	prefix []byte
	filler byte
	left   int64
	read   atomic.Int64
}

func (r *fillReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.left)]
	n := copy(p, r.prefix)
	r.prefix = r.prefix[n:]
	for i := n; i < len(p); i++ {
		p[i] = r.filler
	}
	r.left -= int64(len(p))
	r.read.Add(int64(len(p)))
	return len(p), nil
}

// sendLarge posts a body of total bytes (prefix, then filler) and reports the answer and how
// many bytes the client had handed to the connection when the answer came.
func sendLarge(t *testing.T, s *system, path, key, contentType string, prefix []byte, filler byte, total int64, withLength bool) (int, string, int64) {
	t.Helper()
	body := &fillReader{prefix: prefix, filler: filler, left: total}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+path, body)
	if withLength {
		req.ContentLength = total
	} else {
		req.ContentLength = -1 // chunked: the gateway learns the size only by reading
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	sent := body.read.Load()
	if err != nil {
		t.Fatalf("POST %s (%d bytes, length given: %v): %v after %d bytes", path, total, withLength, err, sent)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := &response{Status: resp.StatusCode, Header: resp.Header, Body: b}
	code := ""
	if r.Status >= 400 {
		code, _ = r.problem(t)
	}
	return r.Status, code, sent
}

// TestSecurity_BodyLimitFromTier (hole 6): a free tenant's request body is cut off at the free
// tier's limit while it is read, with or without a Content-Length: the gateway does not read
// the largest tier's 50 MiB (uploads) or ~70 MB (executions) first. Before the fix both
// requests below were read to the largest tier's limit.
func TestSecurity_BodyLimitFromTier(t *testing.T) {
	s := startDev(t, t.TempDir())
	free := s.newTenant(t, "small", schemas.TierFree)
	tier := schemas.DefaultTiers()[schemas.TierFree]
	const total = 65 << 20 // the attack of issue 12: 65 MiB from a free tenant
	// Loopback socket buffers hold a few MiB the gateway has not read.
	const slack = 16 << 20
	for _, tc := range []struct {
		path, contentType string
		prefix            []byte
		filler            byte
		limit             int64
	}{
		{"/v1/modules?name=big", "application/wasm", []byte("\x00asm\x01\x00\x00\x00"), 0, tier.ModuleSize},
		{"/v1/executions", "application/json", []byte(`{"module_base64":"`), 'A', tier.ModuleSize*4/3 + 4<<20},
	} {
		for _, withLength := range []bool{true, false} {
			status, code, sent := sendLarge(t, s, tc.path, free, tc.contentType, tc.prefix, tc.filler, total, withLength)
			t.Logf("%s, %d MiB, Content-Length given: %v: %d %s after the client sent %.1f MiB (free limit %.1f MiB)",
				tc.path, total>>20, withLength, status, code, mib(sent), mib(tc.limit))
			if status != http.StatusRequestEntityTooLarge || code != string(schemas.CodeTooLarge) {
				t.Errorf("%s (Content-Length given: %v): %d %s, want 413 too_large", tc.path, withLength, status, code)
			}
			if sent > tc.limit+slack {
				t.Errorf("%s (Content-Length given: %v): the gateway read about %.0f MiB before refusing; the free tier's limit is %.1f MiB",
					tc.path, withLength, mib(sent), mib(tc.limit))
			}
		}
	}
	// A module of exactly the free tier's size is still accepted.
	m := s.upload(t, free, "exact", sizedModule(int(tier.ModuleSize), 1))
	if m.Size != tier.ModuleSize {
		t.Errorf("uploaded %d bytes, want %d", m.Size, tier.ModuleSize)
	}
}

func writeTiers(t *testing.T, tiers string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tiers.json")
	if err := os.WriteFile(path, []byte(tiers), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func (s *system) moduleNames(t *testing.T, key string) []string {
	t.Helper()
	var l schemas.ModuleList
	r := s.do(t, http.MethodGet, "/v1/modules", key, "", nil)
	r.decode(t, &l)
	var names []string
	for _, m := range l.Modules {
		names = append(names, m.Name)
	}
	return names
}

// TestSecurity_CompileBombRateLimitedBeforeCompile (hole 8): an inline module from a tenant
// whose execution limit is spent is refused with 429 before it is compiled (before the fix it
// was compiled and stored, then refused); uploads have their own per-tier rate limit; an
// upload's compile time is in its module.uploaded event.
func TestSecurity_CompileBombRateLimitedBeforeCompile(t *testing.T) {
	tiers := writeTiers(t, `{"free": {"uploads_per_minute": 3}}`)
	s := startDevEnv(t, t.TempDir(), "WASMWIZ_TIERS_FILE="+tiers)
	free := s.newTenant(t, "bomber", schemas.TierFree)
	events := s.openEvents(t, free, url.Values{})

	hello := s.upload(t, free, "hello", fixtures.Wasm("hello")) // upload 1 of 3
	got := events.until(t, func(ev sseEvent) bool { return ev.Event == schemas.EventModuleUploaded })
	if mod := got[len(got)-1].Data.Module; mod == nil || mod.CompileMS <= 0 {
		t.Errorf("module.uploaded carries no compile time: %+v", mod)
	}

	limit := schemas.DefaultTiers()[schemas.TierFree].ExecPerMinute
	for range limit {
		if r, _ := s.execute(t, free, schemas.ExecutionRequest{ModuleID: hello.ID, Async: true}); r.Status != 202 {
			t.Fatalf("execution within the limit: %d %s", r.Status, r.Body)
		}
	}
	// The limit is spent. An inline module that takes a while to compile:
	bomb := genModule(1, patAdd, 150_000)
	start := time.Now()
	r, _ := s.execute(t, free, schemas.ExecutionRequest{ModuleBase64: b64(bomb)})
	took := time.Since(start)
	code, detail := "", ""
	if r.Status >= 400 {
		code, detail = r.problem(t)
	}
	t.Logf("inline module after the limit: %d %s %q in %v", r.Status, code, detail, took.Round(time.Millisecond))
	if r.Status != 429 || code != string(schemas.CodeRateLimited) || r.Header.Get("Retry-After") == "" {
		t.Fatalf("inline module with the execution limit spent: %d %s, want 429 rate_limited with Retry-After", r.Status, r.Body)
	}
	if names := s.moduleNames(t, free); len(names) != 1 {
		t.Fatalf("the refused inline module was compiled and stored: modules %v", names)
	}

	// Uploads 2 and 3 of the tier's 3 per minute; the refused inline module did not count.
	for i := range 2 {
		s.upload(t, free, fmt.Sprintf("m%d", i), sizedModule(4096, byte(i)))
	}
	r = s.do(t, http.MethodPost, "/v1/modules?name=fourth", free, "application/wasm", sizedModule(4096, 9))
	code, detail = r.problem(t)
	if r.Status != 429 || code != string(schemas.CodeRateLimited) || !strings.Contains(detail, "uploads per minute") || r.Header.Get("Retry-After") == "" {
		t.Fatalf("fourth upload in a minute: %d %s, want 429 naming the upload limit, with Retry-After", r.Status, r.Body)
	}
	// A module the tenant already has costs no compile and is not limited.
	if r := s.do(t, http.MethodPost, "/v1/modules?name=hello", free, "application/wasm", fixtures.Wasm("hello")); r.Status != 201 {
		t.Errorf("re-upload of an owned module: %d %s", r.Status, r.Body)
	}
	// Other tenants are not affected.
	s.upload(t, s.DevKey, "other", sizedModule(4096, 9))
}

// TestSecurity_CompileBombKeepsWorkers (hole 8): a compile bomb on a node with one execution
// worker neither takes that worker from another tenant's executions nor goes unbilled. Before
// the fix the bomb held the only worker until the compile timeout killed it, and another
// tenant's executions waited that long. Here another tenant's executions all succeed while the
// bomb compiles; that none of them waited for the compile's worker is proven without a clock by
// executor's TestNode_CompileKeepsExecutionWorkers (a duration bound here failed on a loaded
// machine, where a plain execution took longer than half the compile timeout).
func TestSecurity_CompileBombKeepsWorkers(t *testing.T) {
	// The bomber's tier (free) stops compiles at 300 ms, short enough that the bomb outlasts it on
	// a quiet machine too: it compiled in 0.83 s (a 1 s timeout let it through), in 4 s on a loaded
	// one. Only that tier: the other tenant's uploads and the spare workers' warm-up compiles keep
	// their budgets, which a loaded machine may need.
	const compileTimeout = 300 * time.Millisecond
	tiers := writeTiers(t, fmt.Sprintf(`{"free": {"compile_max_ms": %d}}`, compileTimeout.Milliseconds()))
	s := startDevEnv(t, t.TempDir(), "WASMWIZ_WORKERS=1", "WASMWIZ_TIERS_FILE="+tiers, "WASMWIZ_SYNC_WAIT=30s")
	free := s.newTenant(t, "bomber", schemas.TierFree)
	events := s.openEvents(t, free, url.Values{})
	// The other tenant is the admin tenant: its tier has no rate limit to run into.
	hello := s.upload(t, s.AdminKey, "hello", fixtures.Wasm("hello"))
	s.run(t, s.AdminKey, schemas.ExecutionRequest{ModuleID: hello.ID}) // warm

	bombDone := make(chan *response, 1)
	go func() {
		bombDone <- s.do(t, http.MethodPost, "/v1/modules?name=bomb", free, "application/wasm", genModule(1, patAdd, 1_100_000))
	}()
	var slowest time.Duration
	runs := 0
	var bomb *response
	for bomb == nil {
		start := time.Now()
		e := s.run(t, s.AdminKey, schemas.ExecutionRequest{ModuleID: hello.ID})
		if e.Status != schemas.StatusSucceeded {
			t.Fatalf("execution during the bomb: %+v", e)
		}
		slowest = max(slowest, time.Since(start))
		runs++
		select {
		case bomb = <-bombDone:
		default:
		}
	}
	t.Logf("%d executions of another tenant ran while the bomb compiled; the slowest took %v; the bomb: %d %s",
		runs, slowest.Round(time.Millisecond), bomb.Status, trunc(string(bomb.Body), 160))
	if bomb.Status != 422 || !strings.Contains(string(bomb.Body), "too expensive to compile") {
		t.Fatalf("bomb: %d %s, want 422 too expensive to compile", bomb.Status, bomb.Body)
	}
	got := events.until(t, func(ev sseEvent) bool { return ev.Event == schemas.EventModuleRejected })
	mod := got[len(got)-1].Data.Module
	t.Logf("module.rejected: %+v", mod)
	if mod == nil || mod.CompileMS < float64(compileTimeout.Milliseconds())*0.9 || !strings.Contains(mod.Error, "too expensive") {
		t.Errorf("the bomb's compile time is not billed: %+v", mod)
	}
}

// TestSecurity_StorageQuota (hole 9): a tenant's stored modules are bounded by its tier's
// module_bytes; an upload (REST or inline) past it is refused with 413 quota_exceeded, and
// deleting a module makes room. Before the fix there was no quota.
func TestSecurity_StorageQuota(t *testing.T) {
	tiers := writeTiers(t, `{"free": {"module_size": 1048576, "module_bytes": 1048576}}`)
	s := startDevEnv(t, t.TempDir(), "WASMWIZ_TIERS_FILE="+tiers)
	free := s.newTenant(t, "hoarder", schemas.TierFree)
	const size = 400 << 10
	a := s.upload(t, free, "a", sizedModule(size, 'a'))
	s.upload(t, free, "b", sizedModule(size, 'b'))

	r := s.do(t, http.MethodPost, "/v1/modules?name=c", free, "application/wasm", sizedModule(size, 'c'))
	code, detail := r.problem(t)
	t.Logf("third module: %d %s %q", r.Status, code, detail)
	if r.Status != 413 || code != string(schemas.CodeStorageQuotaExceeded) || !strings.Contains(detail, "quota") {
		t.Fatalf("upload over the quota: %d %s, want 413 quota_exceeded", r.Status, r.Body)
	}
	r, _ = s.execute(t, free, schemas.ExecutionRequest{ModuleBase64: b64(sizedModule(size, 'd'))})
	if code, _ := r.problem(t); r.Status != 413 || code != string(schemas.CodeStorageQuotaExceeded) {
		t.Fatalf("inline module over the quota: %d %s, want 413 quota_exceeded", r.Status, r.Body)
	}
	// The same bytes again are not stored twice and not refused.
	if r := s.do(t, http.MethodPost, "/v1/modules?name=a", free, "application/wasm", sizedModule(size, 'a')); r.Status != 201 {
		t.Fatalf("re-upload of an owned module: %d %s", r.Status, r.Body)
	}
	// Another tenant has its own quota.
	other := s.newTenant(t, "neighbour", schemas.TierFree)
	s.upload(t, other, "c", sizedModule(size, 'c'))
	// Deleting makes room.
	if r := s.do(t, http.MethodDelete, "/v1/modules/"+a.ID, free, "", nil); r.Status != 204 {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	s.upload(t, free, "c", sizedModule(size, 'c'))
	var l schemas.ModuleList
	s.do(t, http.MethodGet, "/v1/modules", free, "", nil).decode(t, &l)
	var stored int64
	for _, m := range l.Modules {
		stored += m.Size
	}
	if stored > 1<<20 {
		t.Errorf("the tenant stores %d bytes, over its quota", stored)
	}
}

// TestMeasure_UploadPeakRSS measures a separate gateway process's peak RSS (VmHWM) while six
// maximum-size requests arrive at once: six 65 MiB inline-module executions from a free tenant
// (the attack of issue 12: 1.74 GiB before the fix) and six 50 MiB uploads from a pro tenant
// each from its own pro tenant (the largest legitimate uploads). It is a measurement, run on request:
//
//	WASMWIZ_MEASURE=1 go test ./test -run TestMeasure_UploadPeakRSS -v
func TestMeasure_UploadPeakRSS(t *testing.T) {
	if os.Getenv("WASMWIZ_MEASURE") == "" {
		t.Skip("a measurement: set WASMWIZ_MEASURE=1")
	}
	s := startDevEnv(t, t.TempDir(), "WASMWIZ_COMPILE_TIMEOUT=60s")
	addr := freeAddr(t)
	gw := start(t, append(s.natsRoleEnv("gateway"), "WASMWIZ_HTTP_ADDR="+addr), "gateway")
	waitReady(t, "http://"+addr, gw)
	g := &system{URL: "http://" + addr}
	pid := gw.cmd.Process.Pid
	free := s.newTenant(t, "attacker", schemas.TierFree)
	var pros []string // six tenants: one tenant's compiles in flight are capped (4 on pro)
	for i := range 6 {
		pros = append(pros, s.newTenant(t, fmt.Sprintf("bigcorp%d", i), schemas.TierPro))
	}
	proSize := int(schemas.DefaultTiers()[schemas.TierPro].ModuleSize)
	modules := make([][]byte, 6)
	for i := range modules {
		modules[i] = sizedModule(proSize, byte(i+1))
	}
	base := procMem(t, pid)
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			status, code, sent := sendLarge(t, g, "/v1/executions", free, "application/json", []byte(`{"module_base64":"`), 'A', 65<<20, true)
			t.Logf("free 65 MiB execution: %d %s after %.1f MiB", status, code, mib(sent))
		})
	}
	wg.Wait()
	afterFree := procMem(t, pid)
	for i := range 6 {
		wg.Go(func() {
			r := g.do(t, http.MethodPost, fmt.Sprintf("/v1/modules?name=big%d", i), pros[i], "application/wasm", modules[i])
			// The gateway's part (spool, inspect, store) is what is measured; an executor on this
			// small machine may refuse or fail to fetch six 50 MiB compiles at once (503).
			t.Logf("pro upload %d: %d %s", i, r.Status, trunc(string(r.Body), 200))
		})
	}
	wg.Wait()
	afterPro := procMem(t, pid)
	t.Logf("gateway VmHWM: idle %.0f MiB; after 6 concurrent 65 MiB free-tier executions %.0f MiB; after 6 concurrent 50 MiB pro uploads %.0f MiB (VmRSS now %.0f MiB)",
		mib(base.hwm), mib(afterFree.hwm), mib(afterPro.hwm), mib(afterPro.rss))
	if grow := afterPro.hwm - base.hwm; grow > 256<<20 {
		t.Errorf("the gateway's peak RSS grew by %.0f MiB for six uploads it should stream", mib(grow))
	}
}

// TestStoreBudget_ShippedConfigs (hole 9): with the shipped NATS configuration (its WasmWiz
// account's file storage limit), the modules and bundles object stores and the results bucket
// are created with their share of the account (streams.StoreBudget) — so none can take the
// storage the queues, counters, keys and events need — and every tier's storage quota
// (module_bytes, stored_bundle_bytes, result_bytes) fits in its share at the shipped three
// replicas, in compose and in the Helm values: no one tenant can fill a store. Only the
// unlimited tier, for the operator's own tenants, has no quotas.
func TestStoreBudget_ShippedConfigs(t *testing.T) {
	values, err := os.ReadFile("../deploy/k8s/nats/values.yaml") // before startShippedNATS changes directory
	if err != nil {
		t.Fatal(err)
	}
	ns := startShippedNATS(t)
	nc := ns.mustConnect(t, "nats-admin.nk")
	js, err := jetstream.New(nc.Conn)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := streams.Ensure(ctx, js, streams.Options{}); err != nil {
		t.Fatalf("ensure streams under the shipped account limit: %v", err)
	}
	ai, err := js.AccountInfo(ctx)
	if err != nil || ai.Limits.MaxStore <= 0 {
		t.Fatalf("account info: %+v %v", ai, err)
	}
	b := streams.StoreBudget(ai.Limits.MaxStore, 1)
	if b.Modules+b.Bundles+b.Results+b.Outputs+b.Compiled >= ai.Limits.MaxStore {
		t.Errorf("the shares %+v leave nothing of the account's %d for queues, counters and events", b, ai.Limits.MaxStore)
	}
	for name, want := range map[string]int64{"OBJ_" + schemas.ObjectModules: b.Modules, "OBJ_" + schemas.ObjectBundles: b.Bundles, "KV_" + schemas.BucketResults: b.Results, "OBJ_" + schemas.ObjectCompiled: b.Compiled, "OBJ_" + schemas.ObjectOutputs: b.Outputs} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.CachedInfo().Config.MaxBytes; got != want || got <= 0 {
			t.Errorf("%s MaxBytes %d, want %d of the account's %d", name, got, want, ai.Limits.MaxStore)
		}
	}

	// The shipped limits: compose's nats.conf (read by the server above) and the Helm values.
	m := regexp.MustCompile(`max_file: (\d+)`).FindSubmatch(values)
	if m == nil {
		t.Fatal("deploy/k8s/nats/values.yaml sets no max_file for the WasmWiz account")
	}
	helm, _ := strconv.ParseInt(string(m[1]), 10, 64)
	for where, limit := range map[string]int64{"deploy/nats/nats.conf": ai.Limits.MaxStore, "deploy/k8s/nats/values.yaml": helm} {
		b := streams.StoreBudget(limit, 3)
		for _, tier := range schemas.DefaultTiers() {
			for _, q := range []struct {
				field        string
				quota, share int64
			}{
				{"module_bytes", tier.ModuleBytes, b.Modules},
				{"stored_bundle_bytes", tier.StoredBundleBytes, b.Bundles},
				{"result_bytes", tier.ResultBytes, b.Results},
			} {
				if (q.quota == 0 && tier.Name != schemas.TierUnlimited) || q.quota > q.share {
					t.Errorf("%s: tier %s's %s is %d (0: unlimited); its store gets %d of the account's %d at 3 replicas",
						where, tier.Name, q.field, q.quota, q.share, limit)
				}
			}
		}
	}
}

// TestSecurity_UploadTimingSamePath (issue 12, upload timing): an upload of bytes another
// tenant had uploaded answered in 70 ms against 1.6 s for new bytes, which told a tenant what
// others had uploaded. Now a tenant that does not own a module gets the same path whatever
// other tenants uploaded, and the test shows it by the work done, not by a clock: tenant B's
// upload of tenant A's bytes writes as many messages to the module store as B's upload of new
// bytes of the same size (the gateway stored nothing for it before), the executor fetches the
// module again (a file-cache miss), compiles it afresh and stores its artifact (aside, since
// the store has it), and the compile is in B's module.uploaded event, to be billed. Bundles are
// stored the same way. A re-upload by a tenant that owns the module still costs nothing.
func TestSecurity_UploadTimingSamePath(t *testing.T) {
	s := startDev(t, t.TempDir())
	a := s.newTenant(t, "tenant-a", schemas.TierPro)
	b := s.newTenant(t, "tenant-b", schemas.TierPro)
	js := s.adminJetStream(t)
	lastSeq := func(bucket string) uint64 { return objectStoreState(t, js, bucket).LastSeq }
	metric := func(name string) float64 {
		t.Helper()
		v, _ := strconv.ParseFloat(metricSum(string(s.do(t, http.MethodGet, "/metrics", "", "", nil).Body), name), 64)
		return v
	}
	held := func(bucket string) uint64 { return objectStoreState(t, js, bucket).Msgs }
	type work struct {
		modules, compiled uint64  // messages written to the module and artifact stores
		kept              int64   // messages the artifact store holds more after the upload
		fetches, compiles float64 // the executor's file-cache misses and compiles
		took              time.Duration
	}
	upload := func(key string, wasm []byte) work {
		t.Helper()
		m0, c0, h0 := lastSeq(schemas.ObjectModules), lastSeq(schemas.ObjectCompiled), held(schemas.ObjectCompiled)
		f0 := metric(`wasmwiz_module_cache_misses_total{cache="file"}`)
		k0 := metric("wasmwiz_compile_duration_seconds_count")
		start := time.Now()
		s.upload(t, key, "m", wasm)
		return work{
			modules: lastSeq(schemas.ObjectModules) - m0, compiled: lastSeq(schemas.ObjectCompiled) - c0,
			kept:     int64(held(schemas.ObjectCompiled)) - int64(h0),
			fetches:  metric(`wasmwiz_module_cache_misses_total{cache="file"}`) - f0,
			compiles: metric("wasmwiz_compile_duration_seconds_count") - k0,
			took:     time.Since(start),
		}
	}
	const size = 1 << 20 // 8 chunks of the object store's 128 KiB
	known, fresh := sizedModule(size, 1), sizedModule(size, 2)
	first := upload(a, known)
	if first.modules < size/(128<<10) || first.compiled == 0 || first.fetches != 1 || first.compiles != 1 {
		t.Fatalf("tenant A's upload of new bytes: %+v", first)
	}
	// The module runs, so the node holds its file and its compiled code.
	mod := s.upload(t, a, "m", known) // A owns it: answered at once, nothing stored or compiled
	s.run(t, a, schemas.ExecutionRequest{ModuleID: mod.ID})

	events := s.openEvents(t, b, url.Values{})
	again := upload(b, known)
	other := upload(b, fresh)
	t.Logf("work of tenant B's upload of A's bytes: %+v; of new bytes: %+v", again, other)
	if again.modules != other.modules {
		t.Errorf("tenant B's upload of A's bytes wrote %d messages to the module store, of new bytes %d: not the same path", again.modules, other.modules)
	}
	if again.compiled == 0 {
		t.Errorf("tenant B's upload of A's bytes stored no compiled artifact (new bytes: %d messages)", other.compiled)
	}
	// The artifact stored aside is removed again by the executor, whose NATS user may not purge
	// streams: it was left in the store, and the upload waited 5 s for the purge it may not make
	// (which told B by the clock that someone had uploaded these bytes).
	if again.kept != 0 {
		t.Errorf("tenant B's upload of A's bytes left %d messages in the artifact store (its artifact stored aside was not removed)", again.kept)
	}
	if again.took > other.took+3*time.Second {
		t.Errorf("tenant B's upload of A's bytes took %v, of new bytes %v", again.took, other.took)
	}
	if again.fetches != 1 || again.compiles != 1 {
		t.Errorf("tenant B's upload of A's bytes: %v module fetches and %v compiles on the executor, want 1 and 1", again.fetches, again.compiles)
	}
	got := events.until(t, func(ev sseEvent) bool {
		return ev.Event == schemas.EventModuleUploaded && ev.Data.Module != nil && ev.Data.Module.ModuleID == mod.ID
	})
	if m := got[len(got)-1].Data.Module; m.CompileMS <= 0 {
		t.Errorf("tenant B's module.uploaded for A's bytes bills no compile: %+v", m)
	}

	// Bundles likewise: B's upload of A's bundle stores as much as B's upload of a new one.
	bundleWrites := func(key string, archive []byte) uint64 {
		t.Helper()
		b0 := lastSeq(schemas.ObjectBundles)
		if r, _ := s.uploadBundle(t, key, archive); r.Status != http.StatusCreated {
			t.Fatalf("bundle upload: %d %s", r.Status, r.Body)
		}
		return lastSeq(schemas.ObjectBundles) - b0
	}
	data := func(c byte) []byte {
		return tarball(t, tarFile{name: "data.bin", body: string(bytes.Repeat([]byte{c}, 512<<10))})
	}
	bundleWrites(a, data('a'))
	if knownB, newB := bundleWrites(b, data('a')), bundleWrites(b, data('b')); knownB != newB {
		t.Errorf("tenant B's upload of A's bundle wrote %d messages to the bundle store, of a new one %d", knownB, newB)
	}

	// The owner's re-upload is the one short cut; B's copy and A's module both work.
	if w := upload(b, known); w.modules != 0 || w.compiles != 0 || w.fetches != 0 {
		t.Errorf("tenant B's re-upload of its own module: %+v, want no work", w)
	}
	for _, key := range []string{a, b} {
		if e := s.run(t, key, schemas.ExecutionRequest{ModuleID: mod.ID}); e.Status != schemas.StatusSucceeded {
			t.Errorf("run after the uploads: %s", e.Status)
		}
	}
}
