// Package streams declares WasmWiz's JetStream streams, consumers, KV buckets and object store,
// and creates or updates them. The gateway and `wasmwiz admin bootstrap` (and `wasmwiz dev`)
// call Ensure at start; it is idempotent, so several replicas starting at once agree. The
// executor and accounting only Wait for what Ensure made: their NATS users may not create or
// update streams (SECURITY.md, "per-role NATS permissions").
package streams

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// Options sizes the streams. Zero values take the defaults.
type Options struct {
	Replicas int // 1 on a single server, 3 on a cluster
	// ResultsTTL is how long results stay readable. Zero keeps an existing bucket's (so that
	// roles started without it never undo what an operator set at bootstrap), and makes a new
	// one with DefaultResultsTTL.
	ResultsTTL      time.Duration
	EventsMaxAge    time.Duration // default 30 days
	DuplicateWindow time.Duration // for exec requests; default 1h
	// EventsDuplicateWindow is the events stream's; default EventsDuplicateWindow.
	EventsDuplicateWindow time.Duration
	Tiers                 map[string]schemas.Tier
}

func (o *Options) defaults() {
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.EventsMaxAge <= 0 {
		o.EventsMaxAge = 30 * 24 * time.Hour
	}
	if o.DuplicateWindow <= 0 {
		o.DuplicateWindow = time.Hour
	}
	if o.EventsDuplicateWindow <= 0 {
		o.EventsDuplicateWindow = EventsDuplicateWindow
	}
	if o.Tiers == nil {
		o.Tiers = schemas.DefaultTiers()
	}
}

// EventsDuplicateWindow is how long the events stream remembers an event's id (Nats-Msg-Id) to
// drop a second copy. An execution's event is published again only when its request is
// redelivered after the event was stored (a node lost before its ack): that is within seconds
// (AckWait), unless every executor was down meanwhile. The server
// keeps every id of the window in memory, ~160 bytes each (measured: 200,000 publishes with ids
// grew its heap by 42 MB, without by 10 MB): at 1,000 executions/s an hour would hold ~580 MB,
// ten minutes ~95 MB. A copy published later still bills once (accounting stores each execution
// once); only the audit stream would hold it twice, under the same id.
const EventsDuplicateWindow = 10 * time.Minute

// CompilingMaxAge, plus three times the wall time of the tier's largest compile (sent up to
// three times), is how long a compile in flight counts against its tenant if the gateway that
// started it never says it ended (the gateway died): longer than any compile may wait for.
const CompilingMaxAge = 2 * time.Minute

// CompilingAge is how long a compile slot of tier t lasts at most: CompilingMaxAge plus three
// times the wall time of the tier's largest compile (schemas.Tier.CompileWall).
func CompilingAge(t schemas.Tier) time.Duration {
	return CompilingMaxAge + t.CompileWall(t.ModuleSize)*3
}

// DefaultResultsTTL is a new results bucket's TTL when none is given.
const DefaultResultsTTL = 24 * time.Hour

// MaxDeliver is how often an execution request is delivered before it goes to the dead letters.
const MaxDeliver = 5

// AckWait is how long an execution request of a tier may go without news from the executor
// holding it before JetStream redelivers it: short, so that a request lost with its executor
// (kill -9, a lost host) runs again within seconds, not after its wall time. Executors report
// progress (InProgress) every second for every request they hold, queued, running or recording
// its result, so a live node's requests are not redelivered however long their guests run.
func AckWait(schemas.Tier) time.Duration { return 5 * time.Second }

// Ensure creates or updates everything WasmWiz stores in JetStream.
func Ensure(ctx context.Context, js jetstream.JetStream, o Options) error {
	o.defaults()
	streamsCfg := []jetstream.StreamConfig{
		{
			Name:        schemas.StreamEvents,
			Description: "WasmWiz events: executions, modules, keys, rate limits",
			Subjects:    []string{schemas.EventSubjectAll},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    o.Replicas,
			Duplicates:  o.EventsDuplicateWindow,
			MaxAge:      o.EventsMaxAge,
		},
		{
			Name:        schemas.StreamDLQ,
			Description: "WasmWiz execution requests that exhausted their deliveries",
			Subjects:    []string{schemas.SubjectDLQ},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    o.Replicas,
			MaxAge:      30 * 24 * time.Hour,
		},
	}
	for name, t := range o.Tiers {
		streamsCfg = append(streamsCfg, jetstream.StreamConfig{
			Name:        schemas.ExecStream(name),
			Description: "WasmWiz execution requests of tier " + name + "; a tenant's subject holds its queued and running executions",
			Subjects:    []string{schemas.ExecSubjectTier(name)},
			Retention:   jetstream.WorkQueuePolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    o.Replicas,
			Duplicates:  o.DuplicateWindow,
			MaxAge:      24 * time.Hour,
			// The tier's in-flight cap, enforced by the server for every gateway at once.
			MaxMsgsPerSubject:    int64(t.InFlight),
			Discard:              jetstream.DiscardNew,
			DiscardNewPerSubject: true,
			MaxMsgs:              -1,
			MaxBytes:             -1,
		})
		for _, w := range []struct {
			window string
			limit  int
			age    time.Duration
			what   string
		}{
			{schemas.WindowMinute, t.ExecPerMinute, time.Minute, "executions admitted per tenant in the last minute"},
			{schemas.WindowDay, t.ExecPerDay, 24 * time.Hour, "executions admitted per tenant in the last day"},
			{schemas.WindowUpload, t.UploadsPerMinute, time.Minute, "uploads (compiles) admitted per tenant in the last minute"},
			{schemas.WindowCompiling, t.CompileSlots(), CompilingAge(t), "compiles in flight per tenant (deleted when each ends)"},
		} {
			if w.limit <= 0 {
				continue
			}
			streamsCfg = append(streamsCfg, jetstream.StreamConfig{
				Name:                 schemas.RateLimitStream(name, w.window),
				Description:          "rate-limit counters: " + w.what,
				Subjects:             []string{schemas.RateLimitSubject(name, w.window, "*")},
				Retention:            jetstream.LimitsPolicy,
				Storage:              jetstream.FileStorage,
				Replicas:             o.Replicas,
				MaxAge:               w.age,
				MaxMsgsPerSubject:    int64(w.limit),
				Discard:              jetstream.DiscardNew,
				DiscardNewPerSubject: true,
				MaxMsgs:              -1,
				MaxBytes:             -1,
			})
		}
	}
	for _, cfg := range streamsCfg {
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("stream %s: %w", cfg.Name, err)
		}
	}
	for name, t := range o.Tiers {
		_, err := js.CreateOrUpdateConsumer(ctx, schemas.ExecStream(name), jetstream.ConsumerConfig{
			Durable:       schemas.ExecConsumer(name),
			Description:   "executors serving tier " + name,
			FilterSubject: schemas.ExecSubjectTier(name),
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       AckWait(t),
			MaxDeliver:    MaxDeliver,
			MaxAckPending: 10_000,
			Replicas:      o.Replicas,
		})
		if err != nil {
			return fmt.Errorf("consumer %s: %w", schemas.ExecConsumer(name), err)
		}
	}
	budget := StoreBudget(-1, o.Replicas)
	if ai, err := js.AccountInfo(ctx); err == nil {
		budget = StoreBudget(ai.Limits.MaxStore, o.Replicas)
	}
	resultsTTL := o.ResultsTTL
	if resultsTTL <= 0 {
		resultsTTL = DefaultResultsTTL
		if kv, err := js.KeyValue(ctx, schemas.BucketResults); err == nil {
			if st, err := kv.Status(ctx); err == nil && st.TTL() > 0 {
				resultsTTL = st.TTL()
			}
		}
	}
	// The execution history lists what the results bucket still holds: its records age out
	// with the results (a final record is written when its result is), and it may take an
	// eighth of the results' share of the account's storage, oldest records dropped first.
	historyMax := int64(-1)
	if budget.Results > 0 {
		historyMax = budget.Results / 8
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        schemas.StreamHistory,
		Description: "execution history: summaries per tenant and minute of creation, newest read first",
		Subjects:    []string{schemas.HistorySubjectAll},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
		MaxAge:      resultsTTL,
		MaxBytes:    historyMax,
		Duplicates:  min(2*time.Minute, resultsTTL),
		AllowDirect: true,
	}); err != nil {
		return fmt.Errorf("stream %s: %w", schemas.StreamHistory, err)
	}
	kvs := []jetstream.KeyValueConfig{
		{Bucket: schemas.BucketResults, Description: "execution results by id", TTL: resultsTTL, MaxValueSize: 8 << 20, MaxBytes: budget.Results},
		// A tenant's record outlives its last result by a window: then nothing it counts is stored.
		{Bucket: schemas.BucketStorage, Description: "stored result bytes per tenant: <tenant>.results", TTL: resultsTTL + schemas.ResultUsageWindow},
		{Bucket: schemas.BucketKeys, Description: "API key records by sha256 of the secret"},
		{Bucket: schemas.BucketTenants, Description: "tenants by id"},
		{Bucket: schemas.BucketModuleOwner, Description: "module ownership: <tenant>.<sha256 hex>"},
		{Bucket: schemas.BucketBundleOwner, Description: "bundle ownership: <tenant>.<sha256 hex>"},
		{Bucket: schemas.BucketKeyUsage, Description: "last use of each API key, flushed by gateways"},
		{Bucket: schemas.BucketIdempotency, Description: "idempotency keys: <tenant>.<sha256 of key>", TTL: 24 * time.Hour},
	}
	for _, cfg := range kvs {
		cfg.Storage = jetstream.FileStorage
		cfg.Replicas = o.Replicas
		if _, err := js.CreateOrUpdateKeyValue(ctx, cfg); err != nil {
			return fmt.Errorf("kv %s: %w", cfg.Bucket, err)
		}
	}
	_, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      schemas.ObjectModules,
		Description: "WebAssembly modules, content-addressed: sha256-<hex>",
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
		Compression: true,
		MaxBytes:    budget.Modules,
	})
	if err != nil {
		return fmt.Errorf("object store %s: %w", schemas.ObjectModules, err)
	}
	_, err = js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      schemas.ObjectBundles,
		Description: "bundles (tar archives of guest files), content-addressed: sha256-<hex>",
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
		Compression: true,
		MaxBytes:    budget.Bundles,
	})
	if err != nil {
		return fmt.Errorf("object store %s: %w", schemas.ObjectBundles, err)
	}
	// Compiled artifacts are a cache (executor/artifacts.go): they expire, and a full store
	// only means that nodes compile for themselves. Its share is a quarter of the modules' share.
	_, err = js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      schemas.ObjectCompiled,
		Description: "compiled modules shared by executor nodes: <wazero version, platform, CPU>/<module hex>",
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
		TTL:         CompiledTTL,
		MaxBytes:    budget.Compiled,
	})
	if err != nil {
		return fmt.Errorf("object store %s: %w", schemas.ObjectCompiled, err)
	}
	_, err = js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      schemas.ObjectOutputs,
		Description: "stdout and stderr too large for a result: <execution id>/stdout, kept as long as results",
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
		Compression: true,
		TTL:         resultsTTL,
		MaxBytes:    budget.Outputs,
	})
	if err != nil {
		return fmt.Errorf("object store %s: %w", schemas.ObjectOutputs, err)
	}
	return nil
}

// CompiledTTL is how long a shared compiled artifact is kept after it was stored.
const CompiledTTL = 7 * 24 * time.Hour

// Budget is what the stores that fill with use may hold (one copy each; -1: unbounded).
type Budget struct {
	Modules, Bundles, Results, Outputs, Compiled int64
}

// StoreBudget is what the modules and bundles object stores, the results bucket, the outputs
// object store and the compiled-artifacts cache may hold (one copy) when the account has a
// JetStream file storage limit of accountMaxStore bytes (<= 0: no limit, and all are
// unbounded): of the account's storage divided by the replicas (a stream's MaxBytes is reserved
// from the account once per replica), a quarter for modules, an eighth for bundles, five
// sixteenths for results, a sixteenth for outputs too large for a result and a sixteenth for
// compiled artifacts. The last three sixteenths are left to the execution queues, the
// rate-limit counters, the keys, tenants, usage records and the events, so a full store refuses
// only its own writes. Each tier's storage quotas (module_bytes, stored_bundle_bytes,
// result_bytes: results and their stored outputs) should fit in their shares
// (TestStoreBudget_ShippedConfigs checks the shipped configurations), so that no one tenant can
// fill one; the WasmWiz*StoreFilling alerts watch them.
func StoreBudget(accountMaxStore int64, replicas int) Budget {
	if accountMaxStore <= 0 {
		return Budget{-1, -1, -1, -1, -1}
	}
	per := accountMaxStore / int64(max(replicas, 1))
	return Budget{Modules: per / 4, Bundles: per / 8, Results: per * 5 / 16, Outputs: per / 16, Compiled: per / 16}
}

// Lookups are the streams (by name) and the tiers' execution consumers that a role looks up:
// what Wait waits for, and all the JetStream info its NATS user may read (natsroles.For). A
// stream's info, asked with a subjects filter, lists its subjects, which carry tenant and
// execution ids, so a role looks up only the streams it reads, writes or publishes to.
type Lookups struct {
	Streams, Tiers []string
}

// ExecutorLookups are the executor's for the named tiers: the tiers' queues and consumers, the
// events, history and dead-letter streams it publishes to, the results, result-usage and
// module-record buckets, the four object stores. Not the keys, tenants, bundle records, key
// usage or idempotency buckets, nor the rate-limit streams: the gateway's.
func ExecutorLookups(tiers []string) Lookups {
	l := Lookups{Streams: []string{schemas.StreamEvents, schemas.StreamDLQ, schemas.StreamHistory}, Tiers: tiers}
	for _, name := range tiers {
		l.Streams = append(l.Streams, schemas.ExecStream(name))
	}
	for _, b := range []string{schemas.BucketResults, schemas.BucketStorage, schemas.BucketModuleOwner} {
		l.Streams = append(l.Streams, "KV_"+b)
	}
	for _, b := range []string{schemas.ObjectModules, schemas.ObjectBundles, schemas.ObjectCompiled, schemas.ObjectOutputs} {
		l.Streams = append(l.Streams, "OBJ_"+b)
	}
	return l
}

// AccountingLookups are accounting's: the events stream, on which it makes its consumer.
func AccountingLookups() Lookups { return Lookups{Streams: []string{schemas.StreamEvents}} }

// TierNames are the names of tiers, sorted.
func TierNames(tiers map[string]schemas.Tier) []string {
	names := make([]string, 0, len(tiers))
	for name := range tiers {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Wait returns once every stream and execution consumer of l exists (it looks them up; it
// creates nothing; Ensure, the gateway's, makes them), or when ctx ends. The executor and
// accounting call it with their Lookups: their NATS users may look nothing else up
// (nats-roles.conf). waiting is called with what is still missing when Wait first finds
// something missing and every ten seconds after, so that a role started before the gateway says
// what it waits for.
func Wait(ctx context.Context, js jetstream.JetStream, l Lookups, waiting func(missing string)) error {
	missing := func() (string, error) {
		for _, name := range l.Streams {
			if _, err := js.Stream(ctx, name); err != nil {
				return "stream " + name, err
			}
		}
		for _, name := range l.Tiers {
			if _, err := js.Consumer(ctx, schemas.ExecStream(name), schemas.ExecConsumer(name)); err != nil {
				return "consumer " + schemas.ExecConsumer(name), err
			}
		}
		return "", nil
	}
	var told time.Time
	for delay := 100 * time.Millisecond; ; delay = min(2*delay, 2*time.Second) {
		what, err := missing()
		if err == nil {
			return nil
		}
		if js.Conn().IsClosed() {
			return fmt.Errorf("%s: %w", what, err)
		}
		if waiting != nil && time.Since(told) >= 10*time.Second {
			told = time.Now()
			waiting(fmt.Sprintf("%s (%v)", what, err))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, errors.Join(ctx.Err(), err))
		case <-time.After(delay):
		}
	}
}

// EnsureWithRetry calls Ensure until it succeeds or ctx ends; a cluster that is still electing
// its leaders answers with errors for a moment.
func EnsureWithRetry(ctx context.Context, js jetstream.JetStream, o Options) error {
	var err error
	for delay := 100 * time.Millisecond; ; delay = min(2*delay, 2*time.Second) {
		if err = Ensure(ctx, js, o); err == nil {
			return nil
		}
		if js.Conn().IsClosed() { // closed for good: no retry can succeed
			return err
		}
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), err)
		case <-time.After(delay):
		}
	}
}
