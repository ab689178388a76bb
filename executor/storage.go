package executor

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
func (n *Node) chargeResult(ctx context.Context, res *schemas.Result, b []byte, objects int64) (*schemas.Result, []byte, error) {
	tier, ok := n.cfg.Tiers[res.Tier]
	if !ok || tier.ResultBytes <= 0 || n.storage == nil {
		return res, b, nil
	}
	key := schemas.ResultUsageKey(res.TenantID)
	defer n.charging.lock(key)()
	for range chargeAttempts {
		var u schemas.ResultUsage
		var rev uint64
		e, err := n.storage.Get(ctx, key)
		switch {
		case err == nil:
			rev = e.Revision()
			if json.Unmarshal(e.Value(), &u) != nil {
				u = schemas.ResultUsage{} // unreadable: start again rather than refuse every result
			}
		case !errors.Is(err, jetstream.ErrKeyNotFound):
			return nil, nil, fmt.Errorf("read result usage: %w", err)
		}
		now := time.Now()
		used, _ := u.Live(now, n.resultsTTL)
		stored, out, charge := res, b, int64(len(b))+objects
		if used+charge > tier.ResultBytes {
			stored = cutCopy(res)
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
			if out, err = fitResult(stored, int(max(tier.ResultBytes-used, 0))); err != nil {
				return nil, nil, fmt.Errorf("encode result: %w", err)
			}
			charge = int64(len(out))
		}
		u.Add(now, n.resultsTTL, charge)
		v, err := json.Marshal(&u)
		if err != nil {
			return nil, nil, err
		}
		if rev == 0 {
			_, err = n.storage.Create(ctx, key, v)
		} else {
			_, err = n.storage.Update(ctx, key, v, rev)
		}
		switch {
		case err == nil:
			if stored.StorageQuotaExceeded {
				n.m.resultsCut.WithLabelValues(tier.Name).Inc()
				n.deleteOutputs(ctx, res)
			}
			return stored, out, nil
		case !errors.Is(err, jetstream.ErrKeyExists):
			return nil, nil, fmt.Errorf("charge result usage: %w", err)
		}
	}
	return nil, nil, fmt.Errorf("charge result usage: %d attempts lost to other executors", chargeAttempts)
}

// keyedMutex holds one lock per key, for as long as somebody holds or waits for it.
//
// A node charges one tenant's results one at a time (Node.charging): its own executions would
// otherwise race each other's compare-and-set on the tenant's usage record, and at 64
// concurrent executions of one tenant most attempts lost and were tried again (24 NATS messages
// per execution instead of 4, 44 executions/s). Other nodes' charges of the tenant still race
// this node's, which the compare-and-set settles.
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*keyedLock
}

type keyedLock struct {
	mu      sync.Mutex
	holders int // holding or waiting
}

// lock locks key and returns its unlock.
func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedLock{}
	}
	l := k.m[key]
	if l == nil {
		l = &keyedLock{}
		k.m[key] = l
	}
	l.holders++
	k.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		k.mu.Lock()
		if l.holders--; l.holders == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}

// cutCopy is a copy of res whose outputs fitResult may cut without touching res.
func cutCopy(res *schemas.Result) *schemas.Result {
	c := *res
	c.Files = append([]schemas.OutputFile(nil), res.Files...)
	return &c
}

// deleteOutputs removes the stdout, stderr and output file objects stored for res (storeOutputs) after its
// result was cut to fit its tenant's quota; one left behind expires with the results.
func (n *Node) deleteOutputs(ctx context.Context, res *schemas.Result) {
	for _, o := range []struct {
		stream string
		stored bool
	}{{schemas.StreamStdout, res.StdoutStored}, {schemas.StreamStderr, res.StderrStored}} {
		if !o.stored || n.outputs == nil {
			continue
		}
		if err := n.outputs.Delete(ctx, schemas.OutputObjectName(res.ID, o.stream)); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			n.log.Warn("delete an output cut by the storage quota", "execution_id", res.ID, "stream", o.stream, "err", err)
		}
	}
	for _, f := range res.Files {
		if !f.Stored || n.outputs == nil {
			continue
		}
		if err := n.outputs.Delete(ctx, schemas.OutputFileObjectName(res.ID, f.Index)); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			n.log.Warn("delete an output file cut by the storage quota", "execution_id", res.ID, "path", f.Path, "err", err)
		}
	}
}
