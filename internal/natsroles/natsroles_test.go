package natsroles_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nuid"

	"github.com/wasmwiz/wasmwiz/internal/natsroles"
	"github.com/wasmwiz/wasmwiz/internal/natstest"
	"github.com/wasmwiz/wasmwiz/internal/streams"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// user is a connection as one role's user that keeps what the server refused it.
type user struct {
	nc *nats.Conn
	js jetstream.JetStream

	mu      sync.Mutex
	refused []string
}

func connect(t *testing.T, s *server.Server, role string, opts ...nats.Option) *user {
	t.Helper()
	u := &user{}
	inbox, _ := natsroles.Inbox(role)
	u.nc = natstest.Connect(t, s, append([]nats.Option{nats.UserInfo(role, role), nats.CustomInboxPrefix(inbox),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				u.mu.Lock()
				u.refused = append(u.refused, err.Error())
				u.mu.Unlock()
			}
		})}, opts...)...)
	var err error
	if u.js, err = jetstream.New(u.nc); err != nil {
		t.Fatal(err)
	}
	return u
}

// allowed fails t if the server refused anything so far. It publishes to a subject no role
// may and waits for that refusal: the server answers in order and the client hands the
// refusals over in order, so every earlier refusal has arrived by then.
func (u *user) allowed(t *testing.T, what string) {
	t.Helper()
	u.refusedPublish(t, "natsroles.sentinel."+nuid.Next())
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.refused) > 0 {
		t.Fatalf("%s: refused %v", what, u.refused)
	}
}

// refusedPublish publishes to subject and waits for the server to refuse it.
func (u *user) refusedPublish(t *testing.T, subject string) {
	t.Helper()
	if err := u.nc.Publish(subject, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	u.waitRefused(t, subject)
}

func (u *user) waitRefused(t *testing.T, subject string) {
	t.Helper()
	want := `permissions violation for publish to "` + strings.ToLower(subject) + `"`
	natstest.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		u.mu.Lock()
		defer u.mu.Unlock()
		for i, r := range u.refused {
			if strings.Contains(strings.ToLower(r), want) {
				u.refused = slices.Delete(u.refused, i, i+1)
				return nil
			}
		}
		return fmt.Errorf("the server did not refuse a publish to %s (refused: %v)", subject, u.refused)
	})
}

func random(t *testing.T, n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// setup starts a server with the roles' users, makes the streams as the gateway does, and
// fills what the roles read: an execution request, a module, a bundle, a module record.
func setup(t *testing.T) (*server.Server, jetstream.JetStream, context.Context) {
	t.Helper()
	s := natstest.RunJetStreamRoles(t, "executor", "accounting")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	admin := natstest.JetStream(t, s)
	if err := streams.Ensure(ctx, admin, streams.Options{}); err != nil {
		t.Fatal(err)
	}
	return s, admin, ctx
}

// onlyLookups checks that u may look up, by the client library, every stream of l and its
// tiers' consumers, and that the server refuses it the info of every other stream the gateway
// made (the keys, tenants, idempotency, bundle records and key usage buckets, the rate-limit
// streams: with a subjects filter their info lists tenant ids, execution ids, keys' hashes),
// the consumers of those, and the stream listings.
func onlyLookups(t *testing.T, ctx context.Context, admin jetstream.JetStream, u *user, l streams.Lookups) {
	t.Helper()
	for _, name := range l.Streams {
		st, err := u.js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		// What the role's user may look up, it may look up with a subjects filter too.
		if _, err := st.Info(ctx, jetstream.WithSubjectFilter(">")); err != nil {
			t.Fatalf("stream %s with subjects: %v", name, err)
		}
	}
	for _, tier := range l.Tiers {
		if _, err := u.js.Consumer(ctx, schemas.ExecStream(tier), schemas.ExecConsumer(tier)); err != nil {
			t.Fatalf("consumer %s: %v", schemas.ExecConsumer(tier), err)
		}
	}
	u.allowed(t, "its lookups")
	others := 0
	for name := range admin.StreamNames(ctx).Name() {
		if slices.Contains(l.Streams, name) {
			continue
		}
		others++
		u.refusedPublish(t, "$JS.API.STREAM.INFO."+name)
		u.refusedPublish(t, "$JS.API.CONSUMER.LIST."+name)
		u.refusedPublish(t, "$JS.API.CONSUMER.NAMES."+name)
		u.refusedPublish(t, "$JS.API.CONSUMER.INFO."+name+".x")
	}
	// The gateway's buckets and the rate-limit streams are among those refused.
	for _, name := range []string{"KV_" + schemas.BucketKeys, "KV_" + schemas.BucketIdempotency, "KV_" + schemas.BucketTenants,
		"KV_" + schemas.BucketBundleOwner, "KV_" + schemas.BucketKeyUsage, schemas.RateLimitStream(schemas.TierFree, schemas.WindowMinute)} {
		if slices.Contains(l.Streams, name) {
			t.Errorf("%s may look up %s", u.nc.Opts.User, name)
		}
	}
	if others < 6 {
		t.Fatalf("%d streams refused, want the gateway's buckets and rate limits at least", others)
	}
	for _, subj := range []string{"$JS.API.STREAM.LIST", "$JS.API.STREAM.NAMES", "$JS.API.CONSUMER.INFO.x.y"} {
		u.refusedPublish(t, subj)
	}
	// Through the library, as a leaked seed would: the lookups fail.
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if _, err := u.js.KeyValue(short, schemas.BucketIdempotency); err == nil {
		t.Errorf("%s looked up the idempotency records", u.nc.Opts.User)
	}
	u.waitRefused(t, "$JS.API.STREAM.INFO.KV_"+schemas.BucketIdempotency)
	short, cancel = context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if names := u.js.StreamNames(short); names.Err() == nil {
		for range names.Name() {
		}
		if names.Err() == nil {
			t.Errorf("%s listed the streams", u.nc.Opts.User)
		}
	}
	u.waitRefused(t, "$JS.API.STREAM.NAMES")
}

// TestFor_Executor does, as the executor's user, each kind of call the executor makes
// (executor/, internal/streams), through the client library as the executor does: none is
// refused. Leader reads and multi-chunk object reads, which a single-server test of the node
// does not reach, are among them; it looks up every stream it uses and no other
// (onlyLookups). Then what it never does is refused: publishing an execution,
// an event that is not an execution's, writing the buckets and object stores of the other
// roles, calling the API, answering on another inbox of the gateway, reading accounting's
// consumer, deleting the events' messages.
func TestFor_Executor(t *testing.T) {
	s, admin, ctx := setup(t)
	ex := connect(t, s, "executor")
	if err := streams.Wait(ctx, ex.js, streams.ExecutorLookups(streams.TierNames(schemas.DefaultTiers())), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ex.js.AccountInfo(ctx); err != nil {
		t.Fatal(err)
	}
	ex.allowed(t, "looking up the streams")
	onlyLookups(t, ctx, admin, ex, streams.ExecutorLookups(streams.TierNames(schemas.DefaultTiers())))

	// Results and result usage: create, update, put, read (direct and leader), status.
	for _, bucket := range []string{schemas.BucketResults, schemas.BucketStorage} {
		kv, err := ex.js.KeyValue(ctx, bucket)
		if err != nil {
			t.Fatal(err)
		}
		rev, err := kv.Create(ctx, "acme.k1", []byte("1"))
		if err != nil {
			t.Fatalf("%s create: %v", bucket, err)
		}
		if _, err := kv.Create(ctx, "acme.k1", []byte("again")); !errors.Is(err, jetstream.ErrKeyExists) {
			t.Fatalf("%s create again: %v", bucket, err)
		}
		if _, err := kv.Update(ctx, "acme.k1", []byte("2"), rev); err != nil {
			t.Fatalf("%s update: %v", bucket, err)
		}
		if _, err := kv.Put(ctx, "acme.k1", []byte("3")); err != nil {
			t.Fatalf("%s put: %v", bucket, err)
		}
		if _, err := ex.js.PublishAsync("$KV."+bucket+".acme.k2", []byte("4")); err != nil {
			t.Fatal(err)
		}
		select {
		case <-ex.js.PublishAsyncComplete():
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
		for _, r := range []jetstream.KeyValue{kv, streams.LeaderReads(ex.js, kv, 3)} {
			if e, err := r.Get(ctx, "acme.k1"); err != nil || string(e.Value()) != "3" {
				t.Fatalf("%s get: %v", bucket, err)
			}
		}
		if _, err := kv.Status(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Module records: read only.
	refs, err := admin.KeyValue(ctx, schemas.BucketModuleOwner)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := refs.Put(ctx, "acme.abc", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	exRefs, err := ex.js.KeyValue(ctx, schemas.BucketModuleOwner)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []jetstream.KeyValue{exRefs, streams.LeaderReads(ex.js, exRefs, 3)} {
		if _, err := r.Get(ctx, "acme.abc"); err != nil {
			t.Fatalf("module record: %v", err)
		}
	}
	ex.allowed(t, "the buckets")

	// Modules and bundles: read, several chunks each: an ordered consumer, and flow control,
	// which the server asks for once more than 1 MiB is delivered and not yet answered for.
	big := random(t, 3<<20)
	for _, bucket := range []string{schemas.ObjectModules, schemas.ObjectBundles} {
		store, err := admin.ObjectStore(ctx, bucket)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := store.PutBytes(ctx, "sha256-big", big); err != nil {
			t.Fatal(err)
		}
		exStore, err := ex.js.ObjectStore(ctx, bucket)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := exStore.GetInfo(ctx, "sha256-big"); err != nil {
			t.Fatalf("%s info: %v", bucket, err)
		}
		got, err := exStore.GetBytes(ctx, "sha256-big")
		if err != nil || !bytes.Equal(got, big) {
			t.Fatalf("%s read: %d bytes, %v", bucket, len(got), err)
		}
	}
	// Compiled artifacts: stored with a header, read, stored aside; outputs: stored, deleted.
	compiled, err := ex.js.ObjectStore(ctx, schemas.ObjectCompiled)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := compiled.Put(ctx, jetstream.ObjectMeta{Name: "v1/abc", Headers: nats.Header{"Wasmwiz-Cache-File": []string{"f"}}}, bytes.NewReader(big)); err != nil {
		t.Fatal(err)
	}
	obj, err := compiled.Get(ctx, "v1/abc")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(obj); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("compiled read: %d bytes, %v", len(got), err)
	}
	if err := streams.PutAside(ctx, ex.js, schemas.ObjectCompiled, compiled, bytes.NewReader(big)); err != nil {
		t.Fatal(err)
	}
	outputs, err := ex.js.ObjectStore(ctx, schemas.ObjectOutputs)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := outputs.PutBytes(ctx, "ex_1/stdout", big); err != nil {
		t.Fatal(err)
	}
	if err := streams.DeleteObject(ctx, ex.js, schemas.ObjectOutputs, outputs, "ex_1/stdout"); err != nil {
		t.Fatal(err)
	}
	ex.allowed(t, "the object stores")

	// A tier's queue: the consumer looked up, a request fetched, in progress, acked.
	if _, err := admin.Publish(ctx, schemas.ExecSubject("free", "acme"), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	cons, err := ex.js.Consumer(ctx, schemas.ExecStream("free"), schemas.ExecConsumer("free"))
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for m := range batch.Messages() {
		n++
		if err := m.InProgress(); err != nil {
			t.Fatal(err)
		}
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatalf("ack: %v", err)
		}
	}
	if n != 1 {
		t.Fatalf("fetched %d requests, want 1 (%v)", n, batch.Error())
	}
	if _, err := cons.Info(ctx); err != nil {
		t.Fatal(err)
	}
	// What an execution publishes: its events, its history, a dead letter.
	for _, subj := range []string{
		schemas.EventSubject(schemas.EventExecutionCompleted, "acme"), schemas.EventSubject(schemas.EventExecutionFailed, "acme"),
		schemas.HistorySubject("acme", time.Now()), schemas.SubjectDLQ,
	} {
		if _, err := ex.js.Publish(ctx, subj, []byte(`{}`)); err != nil {
			t.Fatalf("publish %s: %v", subj, err)
		}
	}
	ex.allowed(t, "executing")

	// Replies to a gateway (an execution's, a compile's, a ping's) under its reply prefix, and
	// the question to the other executors with their answer.
	gw := natstest.Connect(t, s, nats.CustomInboxPrefix(schemas.ExecutorReplyPrefix+".gw"))
	sub, err := ex.nc.Subscribe(schemas.SubjectExecutorPing, func(m *nats.Msg) { _ = m.Respond([]byte("node")) })
	if err != nil {
		t.Fatal(err)
	}
	if err := ex.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := gw.Request(schemas.SubjectExecutorPing, nil, 5*time.Second); err != nil {
		t.Fatalf("ping: %v", err)
	}
	replies, err := gw.SubscribeSync(schemas.ExecutorReplyPrefix + ".gw1.*")
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := ex.nc.Publish(schemas.ExecutorReplyPrefix+".gw1.ex_1", []byte("result")); err != nil {
		t.Fatal(err)
	}
	if _, err := replies.NextMsg(5 * time.Second); err != nil {
		t.Fatalf("execution reply: %v", err)
	}
	peer := connect(t, s, "executor")
	if _, err := peer.nc.Subscribe(schemas.SubjectExecutorRunning, func(m *nats.Msg) { _ = m.Respond([]byte("peer")) }); err != nil {
		t.Fatal(err)
	}
	if err := peer.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := ex.nc.Request(schemas.SubjectExecutorRunning, []byte("ex_1"), 5*time.Second); err != nil {
		t.Fatalf("running: %v", err)
	}
	ex.allowed(t, "replies")
	peer.allowed(t, "answering a peer")

	// A ping from elsewhere than a gateway's reply prefix (the default inbox) is not answered:
	// the executor may answer only there.
	_ = sub.Unsubscribe()
	asked := make(chan string, 1)
	if _, err := ex.nc.Subscribe(schemas.SubjectExecutorPing, func(m *nats.Msg) { asked <- m.Reply; _ = m.Respond([]byte("node")) }); err != nil {
		t.Fatal(err)
	}
	if err := ex.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	plain := natstest.Connect(t, s)
	if _, err := plain.Request(schemas.SubjectExecutorPing, nil, 500*time.Millisecond); err == nil {
		t.Fatal("the executor answered on _INBOX.")
	}
	ex.waitRefused(t, <-asked)

	// What it never publishes.
	for _, subj := range []string{
		schemas.ExecSubject("free", "globex"),                 // (a) an execution request
		schemas.EventSubject(schemas.EventKeyCreated, "acme"), // (b) events not its own
		schemas.EventSubject(schemas.EventModuleUploaded, "acme"),
		schemas.EventSubject(schemas.EventRateLimitRejected, "acme"),
		"$KV." + schemas.BucketKeys + ".x", // (c) buckets and object stores it never writes
		"$KV." + schemas.BucketTenants + ".acme",
		"$KV." + schemas.BucketModuleOwner + ".acme.abc",
		"$KV." + schemas.BucketBundleOwner + ".acme.abc",
		"$KV." + schemas.BucketIdempotency + ".acme.x",
		"$KV." + schemas.BucketKeyUsage + ".k",
		"$O." + schemas.ObjectModules + ".M.x",
		"$O." + schemas.ObjectBundles + ".C.x",
		schemas.RateLimitSubject("free", schemas.WindowMinute, "acme"),
		schemas.APISubject(schemas.OpExecutionsCreate), // the API, as anyone
		schemas.AccountingSubject(schemas.OpUsage),
		"$SRV.PING",
		"_INBOX.gateway-inbox", // the gateway's other inboxes (its key lookups)
		"_INBOX_accounting.x",
		"$JS.API.CONSUMER.MSG.NEXT." + schemas.StreamEvents + "." + schemas.ConsumerAccounting, // accounting's events
		"$JS.ACK." + schemas.StreamEvents + "." + schemas.ConsumerAccounting + ".1.1.1.1.0",
		"$JS.API.CONSUMER.CREATE." + schemas.StreamEvents,
		"$JS.API.STREAM.MSG.DELETE." + schemas.StreamEvents,
		"$JS.API.STREAM.MSG.DELETE." + schemas.ExecStream("free"),
		"$JS.API.STREAM.MSG.GET." + schemas.StreamEvents,
		"$JS.API.DIRECT.GET." + schemas.StreamHistory,
		"$JS.API.STREAM.MSG.GET.KV_" + schemas.BucketKeys,
		"$JS.API.DIRECT.GET.KV_" + schemas.BucketTenants,
		"$JS.API.CONSUMER.INFO.KV_" + schemas.BucketKeys + ".x",
		"$JS.API.STREAM.INFO.KV_" + schemas.BucketKeys,
		"$JS.API.STREAM.PURGE." + schemas.ExecStream("free"),
		"$JS.API.STREAM.UPDATE." + schemas.StreamEvents,
		"$JS.API.CONSUMER.DELETE." + schemas.ExecStream("free") + "." + schemas.ExecConsumer("free"),
	} {
		ex.refusedPublish(t, subj)
	}
}

// TestFor_Accounting does, as accounting's user, what accounting does: look up the events stream
// and no other (onlyLookups), make
// its durable consumer, fetch, ack, nak, terminate, read its info, and answer its micro
// service's requests (allow_responses); none is refused. Then what it never does is refused:
// publishing executions, events or results, a second answer to one request, an unasked reply,
// pulling the executors' queues.
func TestFor_Accounting(t *testing.T) {
	s, admin, ctx := setup(t)
	ac := connect(t, s, "accounting")
	if err := streams.Wait(ctx, ac.js, streams.AccountingLookups(), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ac.js.AccountInfo(ctx); err != nil {
		t.Fatal(err)
	}
	ac.allowed(t, "looking up the events")
	onlyLookups(t, ctx, admin, ac, streams.AccountingLookups())
	for i := range 3 {
		if _, err := admin.Publish(ctx, schemas.EventSubject(schemas.EventExecutionCompleted, "acme"), fmt.Appendf(nil, `{"n":%d}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := ac.js.CreateOrUpdateConsumer(ctx, schemas.StreamEvents, jetstream.ConsumerConfig{
		Durable: schemas.ConsumerAccounting, FilterSubject: schemas.EventSubjectAll, AckPolicy: jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy, MaxDeliver: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(3, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for m := range batch.Messages() {
		var err error
		switch n {
		case 0:
			if err = m.InProgress(); err == nil {
				err = m.DoubleAck(ctx)
			}
		case 1:
			err = m.NakWithDelay(time.Minute)
		default:
			err = m.Term()
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 3 {
		t.Fatalf("fetched %d events, want 3 (%v)", n, batch.Error())
	}
	if _, err := cons.Info(ctx); err != nil {
		t.Fatal(err)
	}
	ac.allowed(t, "consuming events")

	// Its micro service answers the gateway and operators, and $SRV pings.
	svc, err := micro.AddService(ac.nc, micro.Config{Name: "wasmwiz-accounting", Version: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Stop()
	answered := make(chan *nats.Msg, 1)
	if err := svc.AddEndpoint(schemas.OpUsage, micro.HandlerFunc(func(r micro.Request) { _ = r.Respond([]byte("usage")) }),
		micro.WithEndpointSubject(schemas.AccountingSubject(schemas.OpUsage))); err != nil {
		t.Fatal(err)
	}
	// A raw subscription too, to answer one request twice.
	twice, err := ac.nc.Subscribe(schemas.AccountingSubject("twice"), func(m *nats.Msg) {
		_ = m.Respond([]byte("1"))
		answered <- m
	})
	if err != nil {
		t.Fatal(err)
	}
	defer twice.Unsubscribe()
	if err := ac.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	gw := natstest.Connect(t, s)
	if m, err := gw.Request(schemas.AccountingSubject(schemas.OpUsage), nil, 5*time.Second); err != nil || string(m.Data) != "usage" {
		t.Fatalf("usage: %v", err)
	}
	if _, err := gw.Request("$SRV.PING", nil, 5*time.Second); err != nil {
		t.Fatalf("$SRV.PING: %v", err)
	}
	if _, err := gw.Request(schemas.AccountingSubject("twice"), nil, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	ac.allowed(t, "answering")
	last := <-answered
	if err := last.Respond([]byte("2")); err != nil {
		t.Fatal(err)
	}
	ac.waitRefused(t, last.Reply) // a second answer

	for _, subj := range []string{
		schemas.ExecSubject("free", "acme"),                           // executions
		schemas.EventSubject(schemas.EventExecutionCompleted, "acme"), // billing events
		"$KV." + schemas.BucketResults + ".ex_1",                      // results
		"$KV." + schemas.BucketKeys + ".x",
		"$O." + schemas.ObjectOutputs + ".M.x",
		schemas.HistorySubject("acme", time.Now()),
		schemas.SubjectDLQ,
		schemas.SubjectCompile,
		schemas.APISubject(schemas.OpExecutionsCreate),
		"_INBOX.gateway-inbox", // an inbox nobody asked it on
		schemas.ExecutorReplyPrefix + ".gw.ex_1",
		"$JS.API.CONSUMER.MSG.NEXT." + schemas.ExecStream("free") + "." + schemas.ExecConsumer("free"),
		"$JS.ACK." + schemas.ExecStream("free") + "." + schemas.ExecConsumer("free") + ".1.1.1.1.0",
		"$JS.API.CONSUMER.CREATE." + schemas.StreamEvents + ".spy",
		"$JS.API.CONSUMER.DELETE." + schemas.StreamEvents + "." + schemas.ConsumerAccounting,
		"$JS.API.STREAM.MSG.GET.KV_" + schemas.BucketResults,
		"$JS.API.DIRECT.GET." + schemas.StreamEvents,
		"$JS.API.STREAM.MSG.DELETE." + schemas.StreamEvents,
		"$JS.API.STREAM.PURGE." + schemas.StreamEvents,
		"$JS.API.STREAM.INFO.KV_" + schemas.BucketKeys,
	} {
		ac.refusedPublish(t, subj)
	}
}
