package gateway

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmwiz/wasmwiz/internal/natstest"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// While a stream has no leader (its leader's server died and the others are electing one, a
// few seconds), a publish to it finds no responders, as it does when there is no stream at
// all. The gateway publishes again until a stream takes the message (it answered 503 after
// the client library's own two retries, half a second: 4–6 s of 503s in a fault run), and the
// message is stored once.
func TestPublishExecMsg_RidesOutNoResponders(t *testing.T) {
	srv := natstest.RunJetStream(t)
	js := natstest.JetStream(t, srv)
	g := &Server{js: js, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx := context.Background()

	msg := nats.NewMsg(schemas.ExecSubject(schemas.TierFree, "acme"))
	msg.Data = []byte(`{}`)
	msg.Header.Set(schemas.HeaderNewExecution, "true")
	inMsgs := func() int64 {
		v, err := srv.Varz(nil)
		if err != nil {
			t.Fatal(err)
		}
		return v.InMsgs
	}
	before := inMsgs()
	done := make(chan error, 1)
	go func() { done <- g.publishExecMsg(ctx, msg, "ex_noleader", time.Now().Add(publishRetryFor)) }()
	// Each try is one request (the client library's own retries are off): more than three
	// means the gateway tried again.
	natstest.CheckFor(t, 10*time.Second, poll, state(func() bool {
		select {
		case err := <-done:
			t.Fatalf("publish ended while no stream could take it: %v", err)
		default:
		}
		return inMsgs()-before > 3
	}, func() string { return "the gateway did not publish again" }))

	stream := schemas.ExecStream(schemas.TierFree)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: stream, Subjects: []string{schemas.ExecSubjectTier(schemas.TierFree)}, Retention: jetstream.WorkQueuePolicy, Duplicates: time.Hour,
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("publish once the stream is back: %v", err)
		}
	case <-time.After(publishRetryFor):
		t.Fatal("publish never returned")
	}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != 1 {
		t.Errorf("%d messages stored, want 1", n)
	}
}

// A bucket whose stream has no leader answers nothing, as one that is not there at all. The
// gateway claims an Idempotency-Key again until the bucket takes it (it answered 503 for the
// whole election), and stops at its bound when it never does.
func TestClaimIdempotencyKey_RidesOutNoLeader(t *testing.T) {
	srv := natstest.RunJetStream(t)
	js := natstest.JetStream(t, srv)
	ctx := context.Background()
	cfg := jetstream.KeyValueConfig{Bucket: schemas.BucketIdempotency}
	kv, err := js.CreateKeyValue(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteKeyValue(ctx, cfg.Bucket); err != nil {
		t.Fatal(err)
	}
	g := &Server{js: js, idempotency: kv, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	p := &Principal{TenantID: "acme"}
	er := &schemas.ExecRequest{ExecutionID: "ex_claim", CreatedAt: time.Now()}

	start := time.Now()
	if _, err := g.claimIdempotencyKey(ctx, p, er, "k0", "hash", time.Now().Add(300*time.Millisecond)); err == nil {
		t.Fatal("claimed a key in a bucket that is not there")
	} else if took := time.Since(start); took < 250*time.Millisecond {
		t.Fatalf("gave up after %v, before its bound (err %v)", took, err)
	}

	done := make(chan error, 1)
	go func() {
		c, err := g.claimIdempotencyKey(ctx, p, er, "k1", "hash", time.Now().Add(storeRetryFor))
		if err == nil && c == nil {
			err = errors.New("claimed by another request")
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("the claim ended while no stream could take it: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	if _, err := js.CreateKeyValue(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("claim once the bucket is back: %v", err)
		}
	case <-time.After(storeRetryFor):
		t.Fatal("the claim never returned")
	}
	if _, err := kv.Get(ctx, idempotencyKV("acme", "k1")); err != nil {
		t.Errorf("the claim is not stored: %v", err)
	}
}

// A stream leader that lost its quorum takes a publish and answers nothing: the proposal stays
// in its log and is committed once its peers are back, so the execution runs after all. The
// gateway must not call that a refusal: its 503 says the execution may still run and names it
// (the fault suite's quorum fault ran 9 executions whose clients had been answered a plain 503),
// while a publish nothing took (no responders) stays a refusal.
func TestPublishExecMsg_TimeoutIsNotARefusal(t *testing.T) {
	srv := natstest.RunJetStream(t)
	js := natstest.JetStream(t, srv)
	nc := natstest.Connect(t, srv)
	g := &Server{js: js, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx := context.Background()
	subject := schemas.ExecSubject(schemas.TierFree, "acme")
	newMsg := func() *nats.Msg {
		msg := nats.NewMsg(subject)
		msg.Data = []byte(`{}`)
		msg.Header.Set(schemas.HeaderNewExecution, "true")
		return msg
	}

	// Nothing takes it: a refusal.
	err := g.publishExecMsg(ctx, newMsg(), "ex_refused", time.Now().Add(time.Second))
	if err == nil || errors.As(err, new(*unconfirmedError)) {
		t.Fatalf("publish that nothing took: %v, want a refusal", err)
	}
	if se := g.publicError(ctx, "execute", unavailable("execution queue", err)); se.Code != schemas.CodeUnavailable || se.RetryAfter == 0 || strings.Contains(se.Message, "ex_refused") || se.ExecutionID != "" {
		t.Errorf("refusal: %+v, want a 503 with Retry-After that names no execution", se)
	}

	// Something takes it and never answers, as a leader without quorum does.
	sub, err := nc.SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	err = g.publishExecMsg(ctx, newMsg(), "ex_unconfirmed", time.Now().Add(3*time.Second))
	var ue *unconfirmedError
	if !errors.As(err, &ue) || ue.id != "ex_unconfirmed" {
		t.Fatalf("publish taken and never acknowledged: %v, want unconfirmed", err)
	}
	se := g.publicError(ctx, "execute", err)
	if se.Code != schemas.CodeUnavailable || se.RetryAfter == 0 || !strings.Contains(se.Message, "ex_unconfirmed") || !strings.Contains(se.Message, "may still run") || se.ExecutionID != "ex_unconfirmed" {
		t.Errorf("unconfirmed: %+v, want a 503 with Retry-After saying ex_unconfirmed may still run, and naming it in execution_id", se)
	}
	if p := problemFrom(se); p.ExecutionID != "ex_unconfirmed" {
		t.Errorf("problem+json of the unconfirmed 503 has execution_id %q, want ex_unconfirmed", p.ExecutionID)
	}
	if n, _, _ := sub.Pending(); n < 2 {
		t.Errorf("%d tries reached the stream, want it tried again", n)
	}
	sub.Unsubscribe()

	// What the quorum fault showed: the first try unanswered, the next ones answered 409
	// "duplicate message id is in process" (the first is proposed, not committed). Those are
	// tried again, and the execution may still run; it did, after a plain 503.
	var tries atomic.Int32
	inproc, err := nc.Subscribe(subject, func(m *nats.Msg) {
		if tries.Add(1) > 1 {
			_ = m.Respond([]byte(`{"type":"io.nats.jetstream.api.v1.pub_ack_response","error":{"code":409,"err_code":10158,"description":"duplicate message id is in process"}}`))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer inproc.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	err = g.publishExecMsg(ctx, newMsg(), "ex_inprocess", time.Now().Add(3*time.Second))
	if !errors.As(err, &ue) || ue.id != "ex_inprocess" {
		t.Fatalf("publish unanswered, then in process: %v, want unconfirmed", err)
	}
	if n := tries.Load(); n < 3 {
		t.Errorf("%d tries, want the in-process answers tried again", n)
	}
}
