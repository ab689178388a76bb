package streams_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmwiz/wasmwiz/internal/natstest"
	"github.com/wasmwiz/wasmwiz/internal/streams"
)

func TestLeaderReads(t *testing.T) {
	servers := natstest.RunCluster(t, 3)
	js := natstest.JetStream(t, servers[0])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var kv jetstream.KeyValue
	natstest.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() (err error) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "leader_test", Replicas: 3})
		return err
	})
	if streams.LeaderReads(js, kv, 1) != kv {
		t.Fatal("one replica: want the bucket itself")
	}
	lk := streams.LeaderReads(js, kv, 3)

	if _, err := lk.Get(ctx, "missing"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("missing key: %v", err)
	}
	if _, err := lk.Get(ctx, "bad..key"); !errors.Is(err, jetstream.ErrInvalidKey) {
		t.Fatalf("invalid key: %v", err)
	}
	// Every write must be visible to the very next read, however the replicas are doing.
	for i := range 200 {
		key := "k" + string(rune('a'+i%26)) + "." + string(rune('a'+i/26))
		rev, err := lk.Create(ctx, key, []byte{byte(i)})
		if err != nil {
			t.Fatal(err)
		}
		e, err := lk.Get(ctx, key)
		if err != nil {
			t.Fatalf("read after write %d: %v", i, err)
		}
		if e.Revision() != rev || len(e.Value()) != 1 || e.Value()[0] != byte(i) || e.Key() != key || e.Bucket() != "leader_test" {
			t.Fatalf("read after write %d: rev %d value %v key %s, wrote rev %d", i, e.Revision(), e.Value(), e.Key(), rev)
		}
		if e.Operation() != jetstream.KeyValuePut || e.Created().IsZero() {
			t.Fatalf("entry %d: op %v created %v", i, e.Operation(), e.Created())
		}
	}
	if err := lk.Delete(ctx, "ka.a"); err != nil {
		t.Fatal(err)
	}
	if _, err := lk.Get(ctx, "ka.a"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("deleted key: %v", err)
	}
}
