package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmwiz/wasmwiz/internal/streams"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// chargeAttempts bounds the compare-and-set retries of one charge: each retry means another
// executor charged the same tenant in between, so a few suffice even for a busy tenant.
const chargeAttempts = 32

// chargeResult counts a result's stored bytes against its tenant's result_bytes before it is
// stored, and returns the bytes to store. The tenant's usage record (schemas.ResultUsage, KV
// BucketStorage) is updated compare-and-set on the revision read, so executors storing results
// of one tenant at once each see the others' charges. A result that fits what the quota has
// left is stored as it is; one that does not has its stdout, stderr and output files cut to
// what is left (possibly nothing) and is marked StorageQuotaExceeded. An accepted execution is
// never refused here: its status, exit code and costs are always stored, so the quota can be
// passed by at most such an outputless result per execution in flight. objects is the bytes of
// res's stdout and stderr already stored as objects (storeOutputs): they count too, and are
// deleted when the result does not fit. res is not changed; the result stored is returned with
// its bytes.
//
// A node charges one tenant's results in batches (tenantCharges): the results that arrive
// while a charge of the tenant is on its way wait for it and are then charged together, in one
// compare-and-set, by the first of them. And a node remembers the record as its own last
// compare-and-set left it, so that it reads it again only when another node changed it since
// (its compare-and-set then fails on the revision).
func (n *Node) chargeResult(ctx context.Context, res *schemas.Result, b []byte, objects int64) (*schemas.Result, []byte, error) {
	tier, ok := n.cfg.Tiers[res.Tier]
	if !ok || tier.ResultBytes <= 0 || n.storage == nil {
		return res, b, nil
	}
	c := &charge{res: res, b: b, objects: objects, done: make(chan bool, 1)}
	key := schemas.ResultUsageKey(res.TenantID)
	t, lead := n.charges.enqueue(key, c)
	if !lead && !<-c.done {
		return c.stored, c.out, c.err // charged in another's batch
	}
	// This charge leads: it takes every charge of the tenant waiting (itself included), charges
	// them in one compare-and-set with its own context, and hands the lead to the next waiting.
	batch := n.charges.take(t)
	n.chargeBatch(ctx, key, tier, t, batch)
	n.charges.done(key, t, batch, c)
	return c.stored, c.out, c.err
}

// charge is one result waiting to be charged, and once done the result to store.
type charge struct {
	res     *schemas.Result
	b       []byte
	objects int64

	stored *schemas.Result
	out    []byte
	err    error
	done   chan bool // receives false when charged, true when this charge is to lead the next batch
}

// tenantCharges is one tenant's charges on this node: those waiting, whether a batch is being
// charged, and the usage record as this node's last compare-and-set left it. Only the leading
// charge reads or writes usage, rev and known (the lead passes through a channel).
type tenantCharges struct {
	waiting []*charge
	busy    bool

	usage schemas.ResultUsage
	rev   uint64 // 0: no record
	known bool   // usage and rev are the record's as of this node's last read or write
}

// maxRememberedTenants bounds the tenants whose usage record a node remembers while none of
// their results is being charged; beyond it an idle tenant's record is forgotten (and read
// again at its next charge).
const maxRememberedTenants = 4096

// chargeQueues holds the tenants' charges on a node (Node.charges).
//
// Charging a tenant's results one compare-and-set each, concurrently, lost most of the
// compare-and-sets to each other (24 NATS messages per execution instead of 4 at 64 concurrent,
// 44 executions/s); one at a time capped a tenant at one charge per two round trips per node
// (~460/s). In batches, the round trips are shared by the results waiting, and other nodes'
// charges of the tenant still race this node's, which the compare-and-set settles.
type chargeQueues struct {
	mu sync.Mutex
	m  map[string]*tenantCharges
}

// enqueue adds c to key's waiting charges; lead is true when no batch of key is being
// charged, so c is to charge one now.
func (q *chargeQueues) enqueue(key string, c *charge) (t *tenantCharges, lead bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.m == nil {
		q.m = map[string]*tenantCharges{}
	}
	t = q.m[key]
	if t == nil {
		t = &tenantCharges{}
		q.m[key] = t
	}
	t.waiting = append(t.waiting, c)
	lead = !t.busy
	t.busy = true
	return t, lead
}

// take is every charge waiting of t, for the leader to charge.
func (q *chargeQueues) take(t *tenantCharges) []*charge {
	q.mu.Lock()
	defer q.mu.Unlock()
	batch := t.waiting
	t.waiting = nil
	return batch
}

// done tells a batch's charges (but the leader's own, self) that they are charged, and passes
// the lead to the first charge that came in meanwhile, if any.
func (q *chargeQueues) done(key string, t *tenantCharges, batch []*charge, self *charge) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, c := range batch {
		if c != self {
			c.done <- false
		}
	}
	if len(t.waiting) > 0 {
		t.waiting[0].done <- true
		return
	}
	t.busy = false
	if len(q.m) > maxRememberedTenants {
		delete(q.m, key)
	}
}

// chargeBatch charges batch (results of one tenant, in order) in one compare-and-set on the
// tenant's usage record, and sets each charge's result or error.
func (n *Node) chargeBatch(ctx context.Context, key string, tier schemas.Tier, t *tenantCharges, batch []*charge) {
	fail := func(err error) {
		t.known = false
		for _, c := range batch {
			c.stored, c.out, c.err = nil, nil, err
		}
	}
	for range chargeAttempts {
		if !t.known {
			t.usage, t.rev = schemas.ResultUsage{}, 0
			e, err := n.storage.Get(ctx, key)
			switch {
			case err == nil:
				t.rev = e.Revision()
				if json.Unmarshal(e.Value(), &t.usage) != nil {
					t.usage = schemas.ResultUsage{} // unreadable: start again rather than refuse every result
				}
			case !errors.Is(err, jetstream.ErrKeyNotFound):
				fail(fmt.Errorf("read result usage: %w", err))
				return
			}
			t.known = true
		}
		now := time.Now()
		used, _ := t.usage.Live(now, n.resultsTTL)
		var total int64
		for _, c := range batch {
			stored, out, charge := c.res, c.b, int64(len(c.b))+c.objects
			if used+charge > tier.ResultBytes {
				stored = cutCopy(c.res)
				stored.StorageQuotaExceeded = true
				// Outputs stored as objects go first: the inline part is all that is kept.
				stored.StdoutTruncated = stored.StdoutTruncated || stored.StdoutStored
				stored.StderrTruncated = stored.StderrTruncated || stored.StderrStored
				stored.StdoutStored, stored.StderrStored = false, false
				for i := range stored.Files {
					if f := &stored.Files[i]; f.Stored {
						f.Stored, f.Truncated, f.Kept = false, true, 0
					}
				}
				var err error
				if out, err = fitResult(stored, int(max(tier.ResultBytes-used, 0))); err != nil {
					fail(fmt.Errorf("encode result: %w", err))
					return
				}
				charge = int64(len(out))
			}
			c.stored, c.out, c.err = stored, out, nil
			used += charge
			total += charge
		}
		u := t.usage // Add makes a new map: t.usage stays the record as read until the write succeeds
		u.Add(now, n.resultsTTL, total)
		v, err := json.Marshal(&u)
		if err != nil {
			fail(err)
			return
		}
		var rev uint64
		if t.rev == 0 {
			rev, err = n.storage.Create(ctx, key, v)
		} else {
			rev, err = n.storage.Update(ctx, key, v, t.rev)
		}
		switch {
		case err == nil:
			t.usage, t.rev = u, rev
			for _, c := range batch {
				if c.stored.StorageQuotaExceeded {
					n.m.resultsCut.WithLabelValues(tier.Name).Inc()
					n.deleteOutputs(ctx, c.res)
				}
			}
			return
		case errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch):
			t.known = false // another node charged the tenant since: read the record again
		default:
			fail(fmt.Errorf("charge result usage: %w", err))
			return
		}
	}
	fail(fmt.Errorf("charge result usage: %d attempts lost to other executors", chargeAttempts))
}

// cutCopy is a copy of res whose outputs fitResult may cut without touching res.
func cutCopy(res *schemas.Result) *schemas.Result {
	c := *res
	c.Files = append([]schemas.OutputFile(nil), res.Files...)
	return &c
}

// deleteOutputs removes the stdout, stderr and output file objects stored for res (storeOutputs) after its
// result was cut to fit its tenant's quota, by deleting their messages (streams.DeleteObject: the
// executor may not purge); one left behind expires with the results.
func (n *Node) deleteOutputs(ctx context.Context, res *schemas.Result) {
	for _, o := range []struct {
		stream string
		stored bool
	}{{schemas.StreamStdout, res.StdoutStored}, {schemas.StreamStderr, res.StderrStored}} {
		if !o.stored || n.outputs == nil {
			continue
		}
		if err := streams.DeleteObject(ctx, n.js, schemas.ObjectOutputs, n.outputs, schemas.OutputObjectName(res.ID, o.stream)); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			n.log.Warn("delete an output cut by the storage quota", "execution_id", res.ID, "stream", o.stream, "err", err)
		}
	}
	for _, f := range res.Files {
		if !f.Stored || n.outputs == nil {
			continue
		}
		if err := streams.DeleteObject(ctx, n.js, schemas.ObjectOutputs, n.outputs, schemas.OutputFileObjectName(res.ID, f.Index)); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			n.log.Warn("delete an output file cut by the storage quota", "execution_id", res.ID, "path", f.Path, "err", err)
		}
	}
}
