package test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/wasmwiz/wasmwiz/internal/fixtures"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// shippedNATS is a nats-server running the configuration docker-compose.yml mounts (the files
// of deploy/nats, byte for byte, beside the files `wasmwiz secrets generate` and `wasmwiz
// secrets nats-tenant` made), alone on a free port: the cluster block is dropped, nothing else.
type shippedNATS struct {
	srv *server.Server
	dir string // what compose mounts in /etc/nats: the config, the secrets
	url string
}

func startShippedNATS(t *testing.T, tenants ...string) *shippedNATS {
	t.Helper()
	dir := t.TempDir()
	wasmwiz := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(bin(), args...).CombinedOutput(); err != nil {
			t.Fatalf("wasmwiz %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	wasmwiz("secrets", "generate", "--dir", dir)
	for _, id := range tenants {
		wasmwiz("secrets", "nats-tenant", "--dir", dir, id)
	}
	for _, f := range []string{"nats.conf", "wasmwiz-account.conf"} {
		b, err := os.ReadFile(filepath.Join("../deploy/nats", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// TLS paths in nats.conf are relative to the working directory (compose: /etc/nats), so
	// read it from there; includes are relative to the file.
	t.Setenv("NATS_SERVER_NAME", "nats1")
	t.Chdir(dir)
	opts, err := server.ProcessConfigFile("nats.conf")
	if err != nil {
		t.Fatalf("shipped nats.conf: %v", err)
	}
	if opts.NoAuthUser != "" || opts.TLSConfig == nil || opts.Cluster.TLSConfig == nil {
		t.Fatalf("shipped nats.conf: no_auth_user %q, client TLS %v, route TLS %v", opts.NoAuthUser, opts.TLSConfig != nil, opts.Cluster.TLSConfig != nil)
	}
	opts.Cluster, opts.Routes = server.ClusterOpts{}, nil
	opts.Host, opts.Port, opts.HTTPPort, opts.StoreDir = "127.0.0.1", -1, 0, filepath.Join(dir, "data")
	opts.NoLog, opts.NoSigs = true, true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server on the shipped config is not ready")
	}
	return &shippedNATS{srv: srv, dir: dir, url: srv.ClientURL()}
}

// roleEnv is the environment of a WasmWiz process connecting as role, as compose sets it.
func (n *shippedNATS) roleEnv(role string) []string {
	return []string{
		"WASMWIZ_NATS_URL=" + n.url,
		"WASMWIZ_NATS_NKEY=" + filepath.Join(n.dir, "nats-"+role+".nk"),
		"WASMWIZ_NATS_TLS_CA=" + filepath.Join(n.dir, "nats-ca.pem"),
	}
}

// conn is a client connection whose asynchronous errors (permission violations) are kept.
type conn struct {
	*nats.Conn
	errs chan error
}

// connect connects with the seed file (none: anonymous) over TLS with the deployment's CA.
func (n *shippedNATS) connect(seed string, more ...nats.Option) (*conn, error) {
	c := &conn{errs: make(chan error, 64)}
	opts := []nats.Option{
		nats.RootCAs(filepath.Join(n.dir, "nats-ca.pem")),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case c.errs <- err:
			default:
			}
		}),
		nats.MaxReconnects(0),
	}
	if seed != "" {
		o, err := nats.NkeyOptionFromSeed(filepath.Join(n.dir, seed))
		if err != nil {
			return nil, err
		}
		opts = append(opts, o)
	}
	nc, err := nats.Connect(n.url, append(opts, more...)...)
	if err != nil {
		return nil, err
	}
	c.Conn = nc
	return c, nil
}

func (n *shippedNATS) mustConnect(t *testing.T, seed string, more ...nats.Option) *conn {
	t.Helper()
	c, err := n.connect(seed, more...)
	if err != nil {
		t.Fatalf("connect with %s: %v", seed, err)
	}
	t.Cleanup(c.Close)
	return c
}

// refused waits for the server to refuse what the connection just did: a permissions violation
// for publishing or subscribing (kind) to subject.
func (c *conn) refused(t *testing.T, kind, subject string) {
	t.Helper()
	want := strings.ToLower("permissions violation for " + kind + ` to "` + subject + `"`)
	timeout := time.After(10 * time.Second)
	var seen []string
	for {
		select {
		case err := <-c.errs:
			if strings.Contains(strings.ToLower(err.Error()), want) {
				return
			}
			seen = append(seen, err.Error())
		case <-timeout:
			t.Fatalf("the server did not refuse %s to %q (errors seen: %v)", kind, subject, seen)
		}
	}
}

// TestSecurity_AnonymousNATS is issue 12, hole 12 ("Anonymous NATS owns everything"): on the
// shipped NATS configuration, with the roles connected as themselves (nkeys, TLS), an anonymous
// client is refused and a tenant's direct-NATS account can do nothing but call the API: each of
// the attacks that worked before is refused by the server, and the roles' state shows that
// nothing happened.
func TestSecurity_AnonymousNATS(t *testing.T) {
	n := startShippedNATS(t, "acme", "globex")
	dir := t.TempDir()

	// Every role on its own credentials, over TLS.
	keyFile := filepath.Join(dir, "admin-key")
	boot := start(t, append(n.roleEnv("admin"), "WASMWIZ_REPLICAS=1"), "admin", "bootstrap", "--key-file", keyFile)
	<-boot.done
	if boot.err != nil {
		t.Fatalf("admin bootstrap: %v\n%s", boot.err, boot.output())
	}
	httpAddr, exAddr, acAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	gw := start(t, append(n.roleEnv("gateway"), "WASMWIZ_HTTP_ADDR="+httpAddr), "gateway")
	ex := start(t, append(n.roleEnv("executor"), "WASMWIZ_CACHE_DIR="+filepath.Join(dir, "cache"), "WASMWIZ_WORKERS=2", "WASMWIZ_METRICS_ADDR="+exAddr), "executor")
	ac := start(t, append(n.roleEnv("accounting"), "DATABASE_URL=", "WASMWIZ_SQLITE_PATH="+filepath.Join(dir, "acct.db"), "WASMWIZ_METRICS_ADDR="+acAddr), "accounting")
	s := &system{URL: "http://" + httpAddr, AdminKey: readKey(t, keyFile), procs: []*proc{gw, ex, ac}}
	waitReady(t, s.URL, gw, ex)
	waitReady(t, "http://"+acAddr, ac)
	keyA := s.newTenant(t, "acme", "basic")
	keyB := s.newTenant(t, "globex", "basic")

	// The roles' view, to check that attacks changed nothing.
	ops := n.mustConnect(t, "nats-admin.nk")
	js, err := jetstream.New(ops.Conn)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	acme := n.mustConnect(t, "nats-tenant-acme.nk")
	globex := n.mustConnect(t, "nats-tenant-globex.nk")

	// What must keep working: each tenant calls the API from its own account and gets answers.
	if st, data := natsCall(t, acme.Conn, schemas.OpModulesList, keyA, nil); st != "200" {
		t.Fatalf("acme modules.list over NATS: %s %s", st, data)
	}
	// A spy on everything acme's account may subscribe to: its own inboxes.
	var spied atomic.Int64
	if _, err := acme.Subscribe("_INBOX.>", func(m *nats.Msg) { spied.Add(1) }); err != nil {
		t.Fatal(err)
	}
	if err := acme.Flush(); err != nil {
		t.Fatal(err)
	}

	st, data := natsCall(t, globex.Conn, schemas.OpModulesUpload, keyB, fixtures.Wasm("echo"))
	if st != "200" {
		t.Fatalf("globex upload over NATS: %s %s", st, data)
	}
	var m schemas.Module
	_ = json.Unmarshal(data, &m)
	body, _ := json.Marshal(schemas.ExecutionRequest{ModuleID: m.ID, Stdin: "globex's secret stdin", Env: map[string]string{"TOKEN": "globex-secret"}})
	st, data = natsCall(t, globex.Conn, schemas.OpExecutionsCreate, keyB, body)
	var e schemas.Execution
	_ = json.Unmarshal(data, &e)
	if st != "200" || e.Stdout != "globex's secret stdin" {
		t.Fatalf("globex execute over NATS: %s %s", st, data)
	}
	if err := acme.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := spied.Load(); got != 0 {
		t.Fatalf("acme's account saw %d messages of globex's traffic", got)
	}

	t.Run("roles over TLS as themselves", func(t *testing.T) {
		// Each role's connection is TLS, in account WASMWIZ, as its own nkey.
		cz, err := n.srv.Connz(&server.ConnzOptions{Username: true, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, c := range cz.Conns {
			role := strings.TrimPrefix(c.Name, "wasmwiz-")
			if role != "gateway" && role != "executor" && role != "accounting" {
				continue
			}
			pub, err := os.ReadFile(filepath.Join(n.dir, "nats-"+role+".nk"))
			if err != nil {
				t.Fatal(err)
			}
			kp, err := nkeys.ParseDecoratedNKey(pub)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := kp.PublicKey()
			if c.TLSVersion == "" || c.Account != "WASMWIZ" || c.AuthorizedUser != want {
				t.Errorf("%s's connection: TLS %q, account %q, user %q (want %s)", role, c.TLSVersion, c.Account, c.AuthorizedUser, want)
			}
			seen[role] = true
		}
		if len(seen) != 3 {
			t.Errorf("role connections seen: %v", seen)
		}
	})

	t.Run("anonymous connect", func(t *testing.T) {
		c, err := n.connect("")
		if err == nil {
			c.Close()
			t.Fatal("an anonymous client connected")
		}
		if !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(err.Error()), "authorization violation") {
			t.Fatalf("anonymous connect: %v, want an authorization violation", err)
		}
		// Nor with an nkey of its own making.
		kp, _ := nkeys.CreateUser()
		seed, _ := kp.Seed()
		if err := os.WriteFile(filepath.Join(n.dir, "stranger.nk"), seed, 0o600); err != nil {
			t.Fatal(err)
		}
		if c, err := n.connect("stranger.nk"); err == nil {
			c.Close()
			t.Fatal("a client with an unknown nkey connected")
		}
	})

	t.Run("subscribe to executions", func(t *testing.T) {
		for _, subj := range []string{"wasmwiz.exec.>", schemas.ExecSubject("basic", "globex"), ">"} {
			if _, err := acme.Subscribe(subj, func(*nats.Msg) { spied.Add(1) }); err != nil {
				t.Fatal(err)
			}
			acme.refused(t, "subscription", subj)
		}
	})

	t.Run("read the keys and results buckets", func(t *testing.T) {
		for _, subj := range []string{
			"$JS.API.DIRECT.GET.KV_" + schemas.BucketKeys,
			"$JS.API.STREAM.MSG.GET.KV_" + schemas.BucketResults,
			"$JS.API.CONSUMER.CREATE.KV_" + schemas.BucketKeys,
			"$JS.API.STREAM.INFO.KV_" + schemas.BucketResults,
		} {
			if err := acme.PublishRequest(subj, "_INBOX.acme-read", []byte(`{"last_by_subj":"$KV.wasmwiz_keys.x"}`)); err != nil {
				t.Fatal(err)
			}
			acme.refused(t, "publish", subj)
		}
		if _, err := acme.Subscribe("$KV.>", func(*nats.Msg) { spied.Add(1) }); err != nil {
			t.Fatal(err)
		}
		acme.refused(t, "subscription", "$KV.>")
		// Through the JetStream API as a client library would: nothing.
		ajs, _ := jetstream.New(acme.Conn)
		short, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if _, err := ajs.KeyValue(short, schemas.BucketKeys); err == nil {
			t.Error("acme opened the keys bucket")
		}
	})

	t.Run("write the keys and results buckets", func(t *testing.T) {
		forged := `{"id":"forged","tenant_id":"acme","admin":true,"tier":"unlimited"}`
		hash := strings.Repeat("ab", 32)
		for _, subj := range []string{"$KV." + schemas.BucketKeys + "." + hash, "$KV." + schemas.BucketResults + ".forged-execution"} {
			if err := acme.Publish(subj, []byte(forged)); err != nil {
				t.Fatal(err)
			}
			acme.refused(t, "publish", subj)
		}
		for bucket, key := range map[string]string{schemas.BucketKeys: hash, schemas.BucketResults: "forged-execution"} {
			kv, err := js.KeyValue(ctx, bucket)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := kv.Get(ctx, key); !errors.Is(err, jetstream.ErrKeyNotFound) {
				t.Errorf("%s has %s after the attack: %v", bucket, key, err)
			}
		}
	})

	// execQueued is how many requests the free tier's execution stream has ever taken.
	execQueued := func(t *testing.T) uint64 {
		t.Helper()
		st, err := js.Stream(ctx, schemas.ExecStream("free"))
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.LastSeq
	}
	t.Run("publish executions", func(t *testing.T) {
		subj := schemas.ExecSubject("free", "globex")
		if err := acme.Publish(subj, []byte(`{"module_id":"x"}`)); err != nil {
			t.Fatal(err)
		}
		acme.refused(t, "publish", subj)
		if n := execQueued(t); n != 0 {
			t.Errorf("%s received %d messages; nobody is on the free tier", schemas.ExecStream("free"), n)
		}
	})

	t.Run("reach the roles' own subjects", func(t *testing.T) {
		for _, subj := range []string{schemas.SubjectExecutorPing, schemas.AccountingSubject(schemas.OpUsage)} {
			if err := acme.PublishRequest(subj, "_INBOX.acme-ping", nil); err != nil {
				t.Fatal(err)
			}
			acme.refused(t, "publish", subj)
		}
	})

	t.Run("purge rate limits", func(t *testing.T) {
		name := schemas.RateLimitStream("basic", schemas.WindowMinute)
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		before, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if before.State.Msgs == 0 {
			t.Fatalf("%s is empty after executions: nothing to purge", name)
		}
		for _, subj := range []string{"$JS.API.STREAM.PURGE." + name, "$JS.API.STREAM.DELETE." + name} {
			if err := acme.PublishRequest(subj, "_INBOX.acme-purge", nil); err != nil {
				t.Fatal(err)
			}
			acme.refused(t, "publish", subj)
		}
		after, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if after.State.Msgs < before.State.Msgs {
			t.Errorf("%s went from %d to %d messages", name, before.State.Msgs, after.State.Msgs)
		}
	})

	t.Run("publish events", func(t *testing.T) {
		subj := schemas.EventSubject(schemas.EventExecutionCompleted, "forged")
		if err := acme.Publish(subj, []byte(`{"type":"execution.completed","tenant_id":"forged"}`)); err != nil {
			t.Fatal(err)
		}
		acme.refused(t, "publish", subj)
		st, err := js.Stream(ctx, schemas.StreamEvents)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.GetLastMsgForSubject(ctx, subj); !errors.Is(err, jetstream.ErrMsgNotFound) {
			t.Errorf("the events stream has a message on %s: %v", subj, err)
		}
	})

	t.Run("forge replies", func(t *testing.T) {
		var got atomic.Int64
		if _, err := globex.Subscribe("_INBOX.victim.>", func(*nats.Msg) { got.Add(1) }); err != nil {
			t.Fatal(err)
		}
		if err := globex.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := acme.Publish("_INBOX.victim.1", []byte(`{"status":"succeeded","stdout":"forged"}`)); err != nil {
			t.Fatal(err)
		}
		acme.refused(t, "publish", "_INBOX.victim.1")
		if err := globex.Flush(); err != nil {
			t.Fatal(err)
		}
		if got.Load() != 0 {
			t.Error("globex received acme's forged reply")
		}
		// The roles' own reply subjects (executor -> gateway) are in WASMWIZ: out of reach too.
		if err := acme.Publish("_INBOX.gateway", []byte("forged")); err != nil {
			t.Fatal(err)
		}
		acme.refused(t, "publish", "_INBOX.gateway")
	})

	// The executor's and accounting's own seeds (issue 12, defence in depth): with everything
	// they need to serve (the system above runs on them), they can neither read nor write the
	// API keys, nor change a stream so that it copies the keys where they can read them.
	for _, role := range []string{"executor", "accounting"} {
		t.Run(role+"'s seed", func(t *testing.T) {
			inbox := "_INBOX_" + role
			c := n.mustConnect(t, "nats-"+role+".nk", nats.CustomInboxPrefix(inbox))
			cjs, err := jetstream.New(c.Conn)
			if err != nil {
				t.Fatal(err)
			}
			keysKV, err := js.KeyValue(ctx, schemas.BucketKeys)
			if err != nil {
				t.Fatal(err)
			}
			hashes, err := keysKV.ListKeys(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var hash string
			for h := range hashes.Keys() {
				hash = h
			}
			if hash == "" {
				t.Fatal("the keys bucket is empty: nothing to steal")
			}
			keysStream := "KV_" + schemas.BucketKeys

			// Each library call gets a context of its own: a refused request waits it out.
			short := func() context.Context {
				c, cancel := context.WithTimeout(ctx, 2*time.Second)
				t.Cleanup(cancel)
				return c
			}
			// Read a key record, as the library does (it looks the bucket up first: its stream's
			// info, which with a subjects filter lists the keys' hashes) and by hand.
			if _, err := cjs.KeyValue(short(), schemas.BucketKeys); err == nil {
				t.Fatalf("%s looked up the keys bucket", role)
			}
			c.refused(t, "publish", "$JS.API.STREAM.INFO."+keysStream)
			for _, subj := range []string{
				"$JS.API.DIRECT.GET." + keysStream + ".$KV." + schemas.BucketKeys + "." + hash,
				"$JS.API.STREAM.MSG.GET." + keysStream,
				"$JS.API.DIRECT.GET." + keysStream,
				"$JS.API.CONSUMER.CREATE." + keysStream,
				"$JS.API.CONSUMER.CREATE." + keysStream + ".spy.$KV." + schemas.BucketKeys + ".>",
				"$JS.API.CONSUMER.DURABLE.CREATE." + keysStream + ".spy",
			} {
				if err := c.PublishRequest(subj, inbox+".spy", []byte(`{"last_by_subj":"$KV.wasmwiz_keys.`+hash+`"}`)); err != nil {
					t.Fatal(err)
				}
				c.refused(t, "publish", subj)
			}
			// Watch the keys' subjects, or every inbox (the gateway's key lookups come back
			// on its inbox; the API's replies on _R_).
			for _, subj := range []string{"$KV." + schemas.BucketKeys + ".>", "_INBOX.>", "_R_.>", ">"} {
				if _, err := c.Subscribe(subj, func(*nats.Msg) { spied.Add(1) }); err != nil {
					t.Fatal(err)
				}
				c.refused(t, "subscription", subj)
			}
			// Republish the keys bucket onto its own inbox, or source it into a new stream.
			st, err := js.Stream(ctx, keysStream)
			if err != nil {
				t.Fatal(err)
			}
			info, err := st.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			cfg := info.Config
			cfg.RePublish = &jetstream.RePublish{Source: ">", Destination: inbox + ".keys.>"}
			if _, err := cjs.UpdateStream(short(), cfg); err == nil {
				t.Errorf("%s updated %s", role, keysStream)
			}
			c.refused(t, "publish", "$JS.API.STREAM.UPDATE."+keysStream)
			if _, err := cjs.CreateStream(short(), jetstream.StreamConfig{Name: "SPY_" + role,
				Sources: []*jetstream.StreamSource{{Name: keysStream}}}); err == nil {
				t.Errorf("%s created a stream sourcing %s", role, keysStream)
			}
			c.refused(t, "publish", "$JS.API.STREAM.CREATE.SPY_"+role)
			// Any stream: its own events, a tier's queue.
			ev, err := js.Stream(ctx, schemas.StreamEvents)
			if err != nil {
				t.Fatal(err)
			}
			evInfo, err := ev.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			evCfg := evInfo.Config
			evCfg.RePublish = &jetstream.RePublish{Source: ">", Destination: inbox + ".events.>"}
			if _, err := cjs.UpdateStream(short(), evCfg); err == nil {
				t.Errorf("%s updated %s", role, schemas.StreamEvents)
			}
			c.refused(t, "publish", "$JS.API.STREAM.UPDATE."+schemas.StreamEvents)
			for _, subj := range []string{"$JS.API.STREAM.PURGE." + schemas.ExecStream("basic"), "$JS.API.STREAM.DELETE." + schemas.StreamEvents} {
				if err := c.PublishRequest(subj, inbox+".spy", nil); err != nil {
					t.Fatal(err)
				}
				c.refused(t, "publish", subj)
			}
			// Forge a key.
			forged := strings.Repeat("cd", 32)
			subj := "$KV." + schemas.BucketKeys + "." + forged
			if err := c.Publish(subj, []byte(`{"id":"forged","tenant_id":"acme","admin":true}`)); err != nil {
				t.Fatal(err)
			}
			c.refused(t, "publish", subj)

			// Nothing changed: no republish, no spy stream, no forged key.
			if info, err := st.Info(ctx); err != nil || info.Config.RePublish != nil {
				t.Errorf("%s after the attack: %v, republish %+v", keysStream, err, info.Config.RePublish)
			}
			if info, err := ev.Info(ctx); err != nil || info.Config.RePublish != nil {
				t.Errorf("%s after the attack: %v", schemas.StreamEvents, err)
			}
			if _, err := js.Stream(ctx, "SPY_"+role); !errors.Is(err, jetstream.ErrStreamNotFound) {
				t.Errorf("stream SPY_%s: %v", role, err)
			}
			if _, err := keysKV.Get(ctx, forged); !errors.Is(err, jetstream.ErrKeyNotFound) {
				t.Errorf("the forged key record: %v", err)
			}
			// What the role needs still works on this connection: the results bucket
			// (executor), the events stream (accounting).
			if role == "executor" {
				if _, err := cjs.KeyValue(ctx, schemas.BucketResults); err != nil {
					t.Errorf("%s cannot look up the results bucket: %v", role, err)
				}
			} else if _, err := cjs.Stream(ctx, schemas.StreamEvents); err != nil {
				t.Errorf("%s cannot look up %s: %v", role, schemas.StreamEvents, err)
			}
		})
	}

	// Beyond the keys: the executor and accounting may publish only what their work publishes
	// (natsroles.For, allow lists). Each refusal is checked in the state it would have changed.
	events, err := js.Stream(ctx, schemas.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	noEvent := func(t *testing.T, subj string) {
		t.Helper()
		if _, err := events.GetLastMsgForSubject(ctx, subj); !errors.Is(err, jetstream.ErrMsgNotFound) {
			t.Errorf("the events stream has a message on %s: %v", subj, err)
		}
	}
	kvOf := func(t *testing.T, bucket string) jetstream.KeyValue {
		t.Helper()
		kv, err := js.KeyValue(ctx, bucket)
		if err != nil {
			t.Fatal(err)
		}
		return kv
	}
	// notListed checks that c's user may not look up the streams named (whose info, with a
	// subjects filter, lists tenant ids and execution ids), through the library as a leaked seed
	// would, nor list the streams; and that it may look up those of keep, with their subjects.
	notListed := func(t *testing.T, c *conn, keep []string, names ...string) {
		t.Helper()
		cjs, err := jetstream.New(c.Conn)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range keep {
			st, err := cjs.Stream(ctx, name)
			if err == nil {
				_, err = st.Info(ctx, jetstream.WithSubjectFilter(">"))
			}
			if err != nil {
				t.Errorf("cannot look up %s, which it uses: %v", name, err)
			}
		}
		for _, name := range names {
			short, cancel := context.WithTimeout(ctx, 500*time.Millisecond) // refused: it times out
			_, err := cjs.Stream(short, name)
			cancel()
			if err == nil {
				t.Errorf("looked up %s", name)
			}
			c.refused(t, "publish", "$JS.API.STREAM.INFO."+name)
		}
		for _, subj := range []string{"$JS.API.STREAM.NAMES", "$JS.API.STREAM.LIST"} {
			if err := c.PublishRequest(subj, "_INBOX_x", []byte(`{}`)); err != nil {
				t.Fatal(err)
			}
			c.refused(t, "publish", subj)
		}
	}
	t.Run("executor's seed publishes only its work", func(t *testing.T) {
		c := n.mustConnect(t, "nats-executor.nk", nats.CustomInboxPrefix("_INBOX_executor"))
		// (0) It looks up only the streams it uses: not the gateway's records and rate limits.
		notListed(t, c, []string{schemas.ExecStream("free"), "KV_" + schemas.BucketResults, "OBJ_" + schemas.ObjectModules, schemas.StreamHistory},
			"KV_"+schemas.BucketIdempotency, "KV_"+schemas.BucketTenants, "KV_"+schemas.BucketBundleOwner, "KV_"+schemas.BucketKeyUsage,
			schemas.RateLimitStream("free", schemas.WindowMinute), schemas.RateLimitStream("pro", schemas.WindowDay))
		// (a) An execution request into a tier's queue, as any tenant.
		before := execQueued(t)
		subj := schemas.ExecSubject("free", "globex")
		if err := c.Publish(subj, body); err != nil {
			t.Fatal(err)
		}
		c.refused(t, "publish", subj)
		if after := execQueued(t); after != before {
			t.Errorf("%s went from %d to %d messages", schemas.ExecStream("free"), before, after)
		}
		// (b) Events that are not an execution's (those it publishes: its job, and billed).
		for _, typ := range []string{schemas.EventKeyCreated, schemas.EventModuleUploaded, schemas.EventRateLimitRejected} {
			subj := schemas.EventSubject(typ, "forged") // a tenant with no events of its own
			if err := c.Publish(subj, []byte(`{"type":"`+typ+`","tenant_id":"forged"}`)); err != nil {
				t.Fatal(err)
			}
			c.refused(t, "publish", subj)
			noEvent(t, subj)
		}
		// (c) Buckets it never writes (it writes results and result usage): acme's tenant
		// record (its tier), a module record making a module globex's, an idempotency record;
		// and the API as anyone, and a gateway's inbox outside the executors' reply prefix.
		tenants := kvOf(t, schemas.BucketTenants)
		acmeBefore, err := tenants.Get(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		forgedRef := "globex." + strings.Repeat("ef", 32)
		for _, subj := range []string{
			"$KV." + schemas.BucketTenants + ".acme",
			"$KV." + schemas.BucketModuleOwner + "." + forgedRef,
			"$KV." + schemas.BucketIdempotency + ".acme.forged",
			schemas.APISubject(schemas.OpExecutionsCreate),
			"_INBOX.gateway",
		} {
			if err := c.Publish(subj, []byte(`{"id":"acme","tier":"unlimited"}`)); err != nil {
				t.Fatal(err)
			}
			c.refused(t, "publish", subj)
		}
		if after, err := tenants.Get(ctx, "acme"); err != nil || after.Revision() != acmeBefore.Revision() {
			t.Errorf("acme's tenant record after the attack: %v (revision %d, was %d)", err, after.Revision(), acmeBefore.Revision())
		}
		if _, err := kvOf(t, schemas.BucketModuleOwner).Get(ctx, forgedRef); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Errorf("the forged module record: %v", err)
		}
		if _, err := kvOf(t, schemas.BucketIdempotency).Get(ctx, "acme.forged"); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Errorf("the forged idempotency record: %v", err)
		}
	})
	t.Run("accounting's seed publishes only its work", func(t *testing.T) {
		c := n.mustConnect(t, "nats-accounting.nk", nats.CustomInboxPrefix("_INBOX_accounting"))
		// It looks up the events stream only: not the history, results, queues, records.
		notListed(t, c, []string{schemas.StreamEvents},
			schemas.StreamHistory, "KV_"+schemas.BucketResults, "KV_"+schemas.BucketModuleOwner, "KV_"+schemas.BucketIdempotency,
			schemas.ExecStream("free"), schemas.RateLimitStream("free", schemas.WindowMinute), "OBJ_"+schemas.ObjectModules)
		before := execQueued(t)
		forgedEvent := schemas.EventSubject(schemas.EventExecutionCompleted, "forged")
		for _, subj := range []string{
			schemas.ExecSubject("free", "globex"),
			"$KV." + schemas.BucketResults + ".forged-by-accounting",
			forgedEvent,
			"$JS.API.CONSUMER.MSG.NEXT." + schemas.ExecStream("basic") + "." + schemas.ExecConsumer("basic"),
		} {
			if err := c.PublishRequest(subj, "_INBOX_accounting.x", []byte(`{"status":"succeeded","stdout":"forged"}`)); err != nil {
				t.Fatal(err)
			}
			c.refused(t, "publish", subj)
		}
		if after := execQueued(t); after != before {
			t.Errorf("%s went from %d to %d messages", schemas.ExecStream("free"), before, after)
		}
		if _, err := kvOf(t, schemas.BucketResults).Get(ctx, "forged-by-accounting"); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Errorf("the result forged by accounting: %v", err)
		}
		noEvent(t, forgedEvent)
	})

	if got := spied.Load(); got != 0 {
		t.Errorf("acme's subscriptions received %d messages", got)
	}
	// The system still serves after all that, usage included (accounting answers the gateway
	// through allow_responses). The roles' logs show no refusal (start's cleanup checks).
	if st, data := natsCall(t, globex.Conn, schemas.OpUsage, keyB, nil); st != "200" {
		t.Errorf("globex usage: %s %s", st, data)
	}
	st, data = natsCall(t, globex.Conn, schemas.OpExecutionsCreate, keyB, body)
	if st != "200" {
		t.Errorf("globex after the attacks: %s %s", st, data)
	}
}

// TestSecurity_DevNATS: `wasmwiz dev`'s NATS refuses anonymous clients too; the roles inside it
// work on the credentials dev made (mode 0600, kept across restarts), tenant dev reaches the API
// with its seed and nothing else, and a tenant added with `wasmwiz secrets nats-tenant` connects
// after a restart.
func TestSecurity_DevNATS(t *testing.T) {
	dataDir := t.TempDir()
	s := startDev(t, dataDir)
	natsDir := filepath.Join(dataDir, "nats")

	if nc, err := nats.Connect(s.NATSURL); err == nil {
		nc.Close()
		t.Fatal("an anonymous client connected to dev's NATS")
	} else if !strings.Contains(strings.ToLower(err.Error()), "authorization violation") {
		t.Fatalf("anonymous connect: %v, want an authorization violation", err)
	}
	seeds := map[string][]byte{}
	for _, f := range []string{"nats-gateway.nk", "nats-executor.nk", "nats-accounting.nk", "nats-admin.nk", "nats-tenant-dev.nk"} {
		p := filepath.Join(natsDir, f)
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, fi.Mode().Perm())
		}
		seeds[f], _ = os.ReadFile(p)
	}
	// The roles inside dev work on their credentials: an execution over REST runs.
	m := s.upload(t, s.DevKey, "echo", fixtures.Wasm("echo"))
	if e := s.run(t, s.DevKey, schemas.ExecutionRequest{ModuleID: m.ID, Stdin: "dev"}); e.Stdout != "dev" {
		t.Fatalf("execution in dev: %+v", e)
	}
	// Tenant dev: the API, and nothing else.
	errs := make(chan error, 16)
	nc, err := s.connectNATS(nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	if err != nil {
		t.Fatal(err)
	}
	if st, data := natsCall(t, nc, schemas.OpModulesList, s.DevKey, nil); st != "200" {
		t.Fatalf("tenant dev modules.list: %s %s", st, data)
	}
	c := &conn{Conn: nc, errs: errs}
	if _, err := nc.Subscribe("wasmwiz.exec.>", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	c.refused(t, "subscription", "wasmwiz.exec.>")
	if err := nc.Publish("$KV.wasmwiz_keys.x", nil); err != nil {
		t.Fatal(err)
	}
	c.refused(t, "publish", "$KV.wasmwiz_keys.x")
	nc.Close()

	// Another tenant, then a restart: the same seeds, and the new tenant connects.
	if out, err := exec.Command(bin(), "secrets", "nats-tenant", "--dir", natsDir, "acme").CombinedOutput(); err != nil {
		t.Fatalf("secrets nats-tenant: %v\n%s", err, out)
	}
	s.procs[0].stop(t)
	s = startDev(t, dataDir)
	for f, b := range seeds {
		if now, _ := os.ReadFile(filepath.Join(natsDir, f)); string(now) != string(b) {
			t.Errorf("%s changed across a restart", f)
		}
	}
	seed, err := nats.NkeyOptionFromSeed(filepath.Join(natsDir, "nats-tenant-acme.nk"))
	if err != nil {
		t.Fatal(err)
	}
	acme, err := nats.Connect(s.NATSURL, seed)
	if err != nil {
		t.Fatalf("tenant acme after the restart: %v", err)
	}
	defer acme.Close()
	if st, data := natsCall(t, acme, schemas.OpModulesList, s.DevKey, nil); st != "200" {
		t.Fatalf("modules.list from acme's account: %s %s", st, data)
	}
	if e := s.run(t, s.DevKey, schemas.ExecutionRequest{ModuleID: m.ID, Stdin: "again"}); e.Stdout != "again" {
		t.Fatalf("execution after the restart: %+v", e)
	}
}
