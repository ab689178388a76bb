package accounting

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/wasmwiz/wasmwiz/internal/backoff"
	"github.com/wasmwiz/wasmwiz/internal/streams"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// ServiceName is the NATS micro service accounting serves usage queries as.
const ServiceName = "wasmwiz-accounting"

// Consumer is the accounting role: it stores every event of schemas.StreamEvents exactly once
// and answers usage queries. Create it with New, then call Run.
type Consumer struct {
	cfg      Config
	nc       *nats.Conn
	js       jetstream.JetStream
	log      *slog.Logger
	m        *metrics
	ready    atomic.Bool
	stopping atomic.Bool // ctx ended: draining, so not ready any more
}

// New makes a Consumer that reads events from nc and writes them to cfg.Store.
// It does no I/O: Run declares the streams and the consumer.
func New(cfg Config, nc *nats.Conn) (*Consumer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if nc == nil {
		return nil, errors.New("accounting: nil NATS connection")
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("accounting: jetstream: %w", err)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("accounting: metrics: %w", err)
	}
	return &Consumer{cfg: cfg, nc: nc, js: js, log: cfg.Logger.With("role", "accounting"), m: m}, nil
}

// Ready reports whether the consumer is set up and its last batch was stored (or none failed).
func (c *Consumer) Ready() bool { return c.ready.Load() && !c.stopping.Load() }

// Run consumes events until ctx ends, then finishes the batch in hand (stores and acks it, or
// naks it if the store keeps failing) and returns. It returns an error only if it could not set
// up; store and NATS errors after that are retried.
func (c *Consumer) Run(ctx context.Context) error {
	defer c.ready.Store(false)
	stop := context.AfterFunc(ctx, func() { // not ready while draining
		c.stopping.Store(true)
		c.log.Info("accounting draining: not ready")
	})
	defer stop()
	// The gateway (or admin bootstrap) makes the streams; accounting may not (SECURITY.md).
	if err := streams.Wait(ctx, c.js, streams.AccountingLookups(), func(missing string) {
		c.log.Warn("accounting waiting for the streams the gateway or `wasmwiz admin bootstrap` makes", "missing", missing)
	}); err != nil {
		return fmt.Errorf("accounting: streams: %w", err)
	}
	cons, err := c.consumer(ctx)
	if err != nil {
		return err
	}
	svc, err := c.serve(ctx)
	if err != nil {
		return err
	}
	defer svc.Stop()

	var wg sync.WaitGroup
	wg.Go(func() { c.watchPending(ctx, cons) })
	defer wg.Wait()

	c.ready.Store(true)
	c.log.Info("consumer running", "stream", schemas.StreamEvents, "consumer", schemas.ConsumerAccounting,
		"batch_size", c.cfg.BatchSize, "batch_wait_ms", c.cfg.BatchWait.Milliseconds())
	retry := backoff.Backoff{Max: c.cfg.MaxBackoff}
	for ctx.Err() == nil {
		// Fetch is not cancelled by ctx: it returns within BatchWait, and what it has
		// delivered by then is stored before Run returns.
		batch, err := cons.Fetch(c.cfg.BatchSize, jetstream.FetchMaxWait(c.cfg.BatchWait))
		if err == nil {
			msgs := make([]jetstream.Msg, 0, c.cfg.BatchSize)
			for msg := range batch.Messages() {
				msgs = append(msgs, msg)
			}
			err = batch.Error()
			if len(msgs) > 0 {
				c.handle(ctx, msgs)
			}
			if err == nil || errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoMessages) {
				retry.Reset()
				continue
			}
		}
		c.log.Warn("fetch failed", "err", err)
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) {
			if fresh, cerr := c.consumer(ctx); cerr == nil {
				cons = fresh
			}
		}
		backoff.Sleep(ctx, retry.Next())
	}
	c.log.Info("consumer stopped")
	return nil
}

// consumer creates or updates the durable consumer, retrying until ctx ends.
func (c *Consumer) consumer(ctx context.Context) (jetstream.Consumer, error) {
	cfg := jetstream.ConsumerConfig{
		Durable:       schemas.ConsumerAccounting,
		Description:   "accounting: stores every event once",
		FilterSubject: schemas.EventSubjectAll,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.cfg.AckWait,
		MaxDeliver:    -1, // billing events are never given up on
		MaxAckPending: c.cfg.maxAckPending(),
		MaxWaiting:    512,
		Replicas:      c.cfg.Replicas,
	}
	retry := backoff.Backoff{Max: 2 * time.Second}
	for {
		cons, err := c.js.CreateOrUpdateConsumer(ctx, schemas.StreamEvents, cfg)
		if err == nil {
			return cons, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("accounting: consumer %s: %w", schemas.ConsumerAccounting, errors.Join(ctx.Err(), err))
		}
		c.log.Warn("consumer setup failed", "err", err)
		backoff.Sleep(ctx, retry.Next())
	}
}

// watchPending refreshes the pending gauges from the consumer's info.
func (c *Consumer) watchPending(ctx context.Context, cons jetstream.Consumer) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if info, err := cons.Info(ictx); err == nil {
			c.m.pending.Set(float64(info.NumPending))
			c.m.ackPending.Set(float64(info.NumAckPending))
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// handle decodes a fetched batch, terminates what can never be stored, stores the rest in one
// transaction, retrying with backoff, and acks after the commit.
func (c *Consumer) handle(ctx context.Context, msgs []jetstream.Msg) {
	start := time.Now()
	entries := make([]Entry, 0, len(msgs))
	held := make([]jetstream.Msg, 0, len(msgs))
	for _, msg := range msgs {
		meta, err := msg.Metadata()
		if err != nil {
			c.terminate(msg, 0, fmt.Errorf("no metadata: %w", err))
			continue
		}
		var ev schemas.Event
		if err := json.Unmarshal(msg.Data(), &ev); err != nil {
			c.terminate(msg, meta.Sequence.Stream, fmt.Errorf("undecodable event: %w", err))
			continue
		}
		if err := ValidateEvent(&ev, msg.Subject()); err != nil {
			c.terminate(msg, meta.Sequence.Stream, err)
			continue
		}
		entries = append(entries, Entry{Seq: meta.Sequence.Stream, Event: ev})
		held = append(held, msg)
	}
	if len(entries) > 0 {
		c.commit(ctx, entries, held, start)
	}
}

// errRejected means the store is up but refuses the batch: some event in it cannot be stored.
var errRejected = errors.New("store is up but rejects the batch")

// errAbandoned means ctx ended while the store was failing.
var errAbandoned = errors.New("batch abandoned at shutdown")

// commit stores entries in one transaction and acks their messages after the commit. If the
// store is up but refuses the batch, it splits the batch in halves and commits each, so that
// one event the database refuses (a bug, a schema drift) cannot block the stream: that event
// alone is naked, with a delay, for as long as it is refused, and never acked.
func (c *Consumer) commit(ctx context.Context, entries []Entry, held []jetstream.Msg, start time.Time) {
	res, err := c.insert(ctx, entries, held)
	switch {
	case errors.Is(err, errAbandoned):
		for _, msg := range held {
			msg.Nak()
		}
		c.log.Warn("batch abandoned at shutdown; naked for redelivery", "events", len(entries))
		return
	case errors.Is(err, errRejected) && len(entries) == 1:
		c.m.rejected.Inc()
		ev := &entries[0].Event
		c.log.Error("store rejects an event; it stays in the stream and is retried",
			"event_id", ev.ID, "type", ev.Type, "tenant_id", ev.TenantID, "stream_seq", entries[0].Seq,
			"retry_in", c.cfg.RejectedRetry.String())
		held[0].NakWithDelay(c.cfg.RejectedRetry)
		return
	case errors.Is(err, errRejected):
		half := len(entries) / 2
		c.commit(ctx, entries[:half], held[:half], start)
		c.commit(ctx, entries[half:], held[half:], start)
		return
	}
	committed := time.Now()
	for _, msg := range held {
		if err := msg.Ack(); err != nil {
			// Stored; a redelivery will find it and insert nothing.
			c.log.Warn("ack failed", "subject", msg.Subject(), "err", err)
		}
	}
	// Acks are fire-and-forget publishes; make sure they reached the server before the next
	// batch (or before Run returns and the caller closes the connection).
	if err := c.nc.FlushTimeout(5 * time.Second); err != nil {
		c.log.Warn("ack flush failed", "err", err)
	}
	c.m.batchSize.Observe(float64(len(entries)))
	c.m.batchDuration.Observe(committed.Sub(start).Seconds())
	c.m.rows.WithLabelValues("executions").Add(float64(res.Executions))
	c.m.rows.WithLabelValues("events").Add(float64(res.Events))
	c.m.duplicates.Add(float64(res.Duplicates))
	for i := range entries {
		if t := entries[i].Event.Time; !t.IsZero() {
			c.m.lag.Observe(max(0, committed.Sub(t).Seconds()))
		}
	}
	c.ready.Store(true)
}

// insert stores a batch, retrying with capped exponential backoff while the store is down
// (its Ping fails). It gives up with errRejected when the store is up and the batch has
// failed twice, and with errAbandoned when ctx ends. Meanwhile it keeps the held messages from
// being redelivered with InProgress every AckWait/3.
func (c *Consumer) insert(ctx context.Context, entries []Entry, held []jetstream.Msg) (InsertResult, error) {
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		t := time.NewTicker(c.cfg.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				for _, msg := range held {
					msg.InProgress()
				}
			}
		}
	}()
	retry := backoff.Backoff{Max: c.cfg.MaxBackoff}
	for attempt := 1; ; attempt++ {
		// The attempt is not cancelled by ctx: a batch under way at shutdown is committed.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.insertTimeout())
		res, err := c.cfg.Store.Insert(actx, entries)
		cancel()
		if err == nil {
			return res, nil
		}
		c.m.insertErrors.Inc()
		c.ready.Store(false)
		c.log.Error("insert failed", "events", len(entries), "attempt", attempt, "err", err)
		if ctx.Err() != nil {
			return res, errAbandoned
		}
		if attempt >= 2 {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			up := c.cfg.Store.Ping(pctx) == nil
			cancel()
			if up {
				return res, errRejected
			}
		}
		backoff.Sleep(ctx, retry.Next())
		if ctx.Err() != nil {
			return res, errAbandoned
		}
	}
}

func (c *Consumer) terminate(msg jetstream.Msg, seq uint64, reason error) {
	c.m.invalid.Inc()
	c.log.Error("terminated an event it cannot store", "subject", msg.Subject(), "stream_seq", seq, "err", reason)
	if err := msg.Term(); err != nil {
		c.log.Warn("term failed", "subject", msg.Subject(), "err", err)
	}
}

// serve starts the micro service (usage and reconcile queries); it is stopped when Run returns.
func (c *Consumer) serve(ctx context.Context) (micro.Service, error) {
	svc, err := micro.AddService(c.nc, micro.Config{
		Name:        ServiceName,
		Version:     "1.0.0",
		Description: "WasmWiz usage queries",
	})
	if err != nil {
		return nil, fmt.Errorf("accounting: micro service: %w", err)
	}
	endpoints := map[string]micro.Handler{
		schemas.OpUsage:     micro.ContextHandler(ctx, query(c, schemas.OpUsage, c.cfg.Store.Usage)),
		schemas.OpReconcile: micro.ContextHandler(ctx, query(c, schemas.OpReconcile, c.cfg.Store.Reconcile)),
	}
	for op, h := range endpoints {
		if err := svc.AddEndpoint(op, h, micro.WithEndpointSubject(schemas.AccountingSubject(op))); err != nil {
			svc.Stop()
			return nil, fmt.Errorf("accounting: micro endpoint %s: %w", op, err)
		}
	}
	return svc, nil
}

// query makes the handler of a JSON query endpoint. The tenant is taken from the request:
// callers (the gateway, the operator's CLI) authorise it, and NATS permissions restrict who may
// call.
func query[Req, Resp any](c *Consumer, op string, run func(context.Context, Req) (Resp, error)) func(context.Context, micro.Request) {
	return func(ctx context.Context, req micro.Request) {
		var in Req
		if err := json.Unmarshal(req.Data(), &in); err != nil {
			c.respondError(req, schemas.Errorf(schemas.CodeBadRequest, "the body must be a JSON %s request", op))
			return
		}
		qctx, cancel := context.WithTimeout(ctx, c.cfg.QueryTimeout)
		defer cancel()
		out, err := run(qctx, in)
		if err != nil {
			e := schemas.AsError(err)
			if e.Code == schemas.CodeInternal {
				c.log.Error("query failed", "operation", op, "err", err)
			}
			c.respondError(req, e)
			return
		}
		c.m.usageQueries.WithLabelValues("").Inc()
		if err := req.RespondJSON(out); err != nil {
			c.log.Warn("query reply failed", "operation", op, "err", err)
		}
	}
}

func (c *Consumer) respondError(req micro.Request, e *schemas.Error) {
	c.m.usageQueries.WithLabelValues(string(e.Code)).Inc()
	body, _ := json.Marshal(e)
	if err := req.Error(strconv.Itoa(e.Code.Status()), e.Message, body); err != nil {
		c.log.Warn("usage error reply failed", "err", err)
	}
}
