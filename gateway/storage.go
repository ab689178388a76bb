package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// Storage quotas (issue 12, hole 9). What a tenant stores in the shared JetStream store is
// bounded per tier, so that no tenant can fill a store the others need:
//   - modules (module_bytes) and bundles (stored_bundle_bytes): the sum of the sizes in the
//     tenant's ownership records. An upload is checked before it is stored (quotaFits) and again
//     once its ownership record is written (withinQuota): uploads racing each other, through
//     any gateways, each see the records written before their second check, so an upload that
//     would take the total past the quota withdraws its record. Uploads can be refused
//     together; the quota is never passed.
//   - results (result_bytes): executors count each result's bytes before storing it, in a
//     per-tenant record updated compare-and-set (schemas.ResultUsage; executor/storage.go),
//     and cut the outputs of a result that does not fit. Gateways refuse new executions of a
//     tenant whose stored results already fill its quota (checkResultQuota), with a
//     Retry-After for when the oldest of them expire.
// Every refusal is a 413 storage_quota_exceeded.

// ownedBytes is the sum of size over the values of tenant's records in an ownership bucket
// (<tenant>.<hex>), read in one pass: a watch of <tenant>.* delivers the current entries, then
// a nil marker. It sees every record written before it started.
func ownedBytes(ctx context.Context, kv jetstream.KeyValue, tenant string, size func([]byte) int64) (int64, error) {
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	w, err := kv.Watch(wctx, tenant+".*", jetstream.IgnoreDeletes())
	if err != nil {
		return 0, err
	}
	defer w.Stop()
	var total int64
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return 0, errors.New("ownership watch ended")
			}
			if e == nil {
				return total, nil
			}
			total += size(e.Value())
		case <-wctx.Done():
			return 0, wctx.Err()
		}
	}
}

// storedKind is one kind of stored object with a per-tenant quota.
type storedKind struct {
	what  string // "modules", "bundles"
	field string // the tier's quota field
	refs  func(g *Server) jetstream.KeyValue
	quota func(t schemas.Tier) int64
	size  func(record []byte) int64
}

var (
	storedModules = storedKind{what: "modules", field: "module_bytes",
		refs:  func(g *Server) jetstream.KeyValue { return g.moduleRefs },
		quota: func(t schemas.Tier) int64 { return t.ModuleBytes },
		size: func(b []byte) int64 {
			var m schemas.Module
			_ = json.Unmarshal(b, &m)
			return m.Size
		}}
	storedBundles = storedKind{what: "bundles", field: "stored_bundle_bytes",
		refs:  func(g *Server) jetstream.KeyValue { return g.bundleRefs },
		quota: func(t schemas.Tier) int64 { return t.StoredBundleBytes },
		size: func(b []byte) int64 {
			var x schemas.Bundle
			_ = json.Unmarshal(b, &x)
			return x.Stored
		}}
)

// quotaFits refuses (413 storage_quota_exceeded) an object of size bytes that would take what
// the tenant stores of kind past its tier's quota, before anything is stored.
func (g *Server) quotaFits(ctx context.Context, p *Principal, k storedKind, size int64) error {
	quota := k.quota(p.Tier)
	if quota <= 0 {
		return nil
	}
	used, err := ownedBytes(ctx, k.refs(g), p.TenantID, k.size)
	if err != nil {
		return unavailable(k.what+" store", err)
	}
	if used+size > quota {
		return g.quotaError(ctx, p, k, used, size, quota)
	}
	return nil
}

// withinQuota checks again once the tenant's record for a new object (refKey) is written:
// the total, which now includes it and every upload stored before, must be within the quota.
// If not, the record is withdrawn and the upload refused; the caller removes what it stored.
func (g *Server) withinQuota(ctx context.Context, p *Principal, k storedKind, refKey string, size int64) error {
	quota := k.quota(p.Tier)
	if quota <= 0 {
		return nil
	}
	used, err := ownedBytes(ctx, k.refs(g), p.TenantID, k.size)
	if err == nil && used <= quota {
		return nil
	}
	if perr := k.refs(g).Purge(context.WithoutCancel(ctx), refKey); perr != nil {
		g.log.WarnContext(ctx, "withdraw an upload over the storage quota", "what", k.what, "err", perr)
	}
	if err != nil {
		return unavailable(k.what+" store", err)
	}
	return g.quotaError(ctx, p, k, used-size, size, quota)
}

func (g *Server) quotaError(ctx context.Context, p *Principal, k storedKind, used, size, quota int64) error {
	msg := fmt.Sprintf("storage quota exceeded: your %s take %d bytes, this one %d, and the %s tier stores at most %d (%s); delete %s you no longer need",
		k.what, used, size, p.Tier.Name, quota, k.field, k.what)
	g.rejected(ctx, p, k.field, msg)
	return schemas.Errorf(schemas.CodeStorageQuotaExceeded, "%s", msg)
}

// resultRoom is the least of its result_bytes a tenant must have left for a new execution: a
// result without outputs (status, exit code, costs) takes under 1 KiB.
const resultRoom = 4 << 10

// resultUsageFresh is how long a tenant's result usage, as checkResultQuota read it, serves the
// tenant's next executions on this gateway before it is read again. Reading it for every
// execution cost two NATS messages each. The check only spares the workers a tenant whose
// results could not be kept: the executors charge every result against the record itself,
// compare-and-set, and cut what does not fit. So a gateway that has not yet seen a quota fill
// admits at most resultUsageFresh more of the tenant's executions, each of whose results is then
// stored without its outputs (under 1 KiB); the quota is passed by at most that, as by an
// execution in flight when it filled. A result this gateway relays that was cut to fit
// (storage_quota_exceeded) makes it read the tenant's usage again at once (forget).
const resultUsageFresh = time.Second

// maxUsageEntries bounds the tenants whose result usage a gateway remembers; past it the cache
// starts over.
const maxUsageEntries = 100_000

// usageRead is a tenant's result usage as this gateway last read it.
type usageRead struct {
	mu sync.Mutex // one read of the tenant at a time; the others wait for it
	u  schemas.ResultUsage
	at time.Time // when it was read; zero: never
}

// usageReads is the gateway's usageRead of each tenant.
type usageReads struct {
	mu sync.Mutex
	m  map[string]*usageRead
}

func (c *usageReads) of(tenant string) *usageRead {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.m[tenant]
	if r == nil {
		if c.m == nil || len(c.m) >= maxUsageEntries {
			c.m = map[string]*usageRead{}
		}
		r = &usageRead{}
		c.m[tenant] = r
	}
	return r
}

// forget makes the next check of tenant read its usage again.
func (c *usageReads) forget(tenant string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, tenant)
}

// resultUsage is tenant's result usage, read at most once per resultUsageFresh.
func (g *Server) resultUsage(ctx context.Context, tenant string) (schemas.ResultUsage, error) {
	r := g.usageReads.of(tenant)
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.at.IsZero() && time.Since(r.at) < resultUsageFresh {
		return r.u, nil
	}
	at := time.Now()
	var u schemas.ResultUsage
	e, err := g.storage.Get(ctx, schemas.ResultUsageKey(tenant))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return u, err
	case json.Unmarshal(e.Value(), &u) != nil:
		u = schemas.ResultUsage{} // the executors start such a record again
	}
	r.u, r.at = u, at
	return u, nil
}

// checkResultQuota refuses (413 storage_quota_exceeded, Retry-After) an execution of a tenant
// whose stored results already take its tier's result_bytes (all but resultRoom): its result
// could not be stored whole; the usage read serves for resultUsageFresh. Executions admitted before the quota filled are never refused; their results are cut
// to fit instead (executor/storage.go).
func (g *Server) checkResultQuota(ctx context.Context, p *Principal) error {
	if p.Tier.ResultBytes <= 0 {
		return nil
	}
	u, err := g.resultUsage(ctx, p.TenantID)
	if err != nil {
		return unavailable("storage usage", err)
	}
	used, freesAt := u.Live(time.Now(), g.resultsTTL)
	if used+resultRoom <= p.Tier.ResultBytes {
		return nil
	}
	retry := max(time.Until(freesAt), time.Second)
	msg := fmt.Sprintf("storage quota exceeded: your stored results take %d bytes and the %s tier stores at most %d (result_bytes) within their %v lifetime; retry in %ds, when the oldest expire",
		used, p.Tier.Name, p.Tier.ResultBytes, g.resultsTTL, seconds(retry))
	g.rejected(ctx, p, "result_bytes", msg)
	return &schemas.Error{Code: schemas.CodeStorageQuotaExceeded, Message: msg, RetryAfter: seconds(retry)}
}
