package streams_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmwiz/wasmwiz/internal/natstest"
	"github.com/wasmwiz/wasmwiz/internal/streams"
)

// PutAside writes every byte to the bucket's stream, as a Put does, and leaves nothing behind:
// no object, no deleted marker, no message; the objects already there are untouched.
func TestPutAside(t *testing.T) {
	srv := natstest.RunJetStream(t)
	js := natstest.JetStream(t, srv)
	ctx := context.Background()
	store, err := js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: "aside"})
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("wasm"), 300<<10) // 1.2 MB: 10 chunks of 128 KiB
	if _, err := store.PutBytes(ctx, "kept", data); err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, "OBJ_aside")
	if err != nil {
		t.Fatal(err)
	}
	before, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := streams.PutAside(ctx, js, "aside", store, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	after, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	chunks := uint64((len(data) + 128<<10 - 1) / (128 << 10))
	if written := after.State.LastSeq - before.State.LastSeq; written != chunks+1 {
		t.Errorf("PutAside wrote %d messages, want the %d chunks and the metadata a Put writes", written, chunks)
	}
	if after.State.Msgs != before.State.Msgs || after.State.Bytes != before.State.Bytes {
		t.Errorf("stream after PutAside: %d messages, %d bytes; before: %d, %d", after.State.Msgs, after.State.Bytes, before.State.Msgs, before.State.Bytes)
	}
	objs, err := store.List(ctx, jetstream.ListObjectsShowDeleted())
	if err != nil || len(objs) != 1 || objs[0].Name != "kept" {
		t.Fatalf("objects after PutAside: %v %v", objs, err)
	}
	if got, err := store.GetBytes(ctx, "kept"); err != nil || !bytes.Equal(got, data) {
		t.Errorf("the stored object after PutAside: %d bytes, %v", len(got), err)
	}
}

// TestPutAside_WithoutPurge: the executor's NATS user may not purge any stream
// (nats-roles.conf denies $JS.API.STREAM.PURGE.>), yet it stores compiled artifacts aside.
// PutAside purged, so for the executor each purge waited out the JetStream timeout (an upload
// of known bytes answered 5 s late, which told its tenant that someone had uploaded them) and
// the aside object stayed in the store. It removes its messages one by one, as the executor may.
func TestPutAside_WithoutPurge(t *testing.T) {
	srv := natstest.RunJetStreamWith(t, func(o *server.Options) {
		o.Users = []*server.User{
			{Username: "admin", Password: "a"},
			{Username: "executor", Password: "e", Permissions: &server.Permissions{
				Publish: &server.SubjectPermission{Deny: []string{"$JS.API.STREAM.PURGE.>"}},
			}},
		}
	})
	connect := func(user, pass string) jetstream.JetStream {
		nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo(user, pass))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		return js
	}
	admin, js := connect("admin", "a"), connect("executor", "e")
	ctx := context.Background()
	if _, err := admin.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: "aside"}); err != nil {
		t.Fatal(err)
	}
	store, err := js.ObjectStore(ctx, "aside")
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("wasm"), 300<<10)
	if _, err := store.PutBytes(ctx, "kept", data); err != nil {
		t.Fatal(err)
	}
	s, err := admin.Stream(ctx, "OBJ_aside")
	if err != nil {
		t.Fatal(err)
	}
	before, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := streams.PutAside(ctx, js, "aside", store, bytes.NewReader(data)); err != nil {
		t.Fatalf("PutAside as a user that may not purge: %v (after %v)", err, time.Since(start))
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("PutAside took %v (a denied request waits out the JetStream timeout)", took)
	}
	after, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.State.Msgs != before.State.Msgs || after.State.Bytes != before.State.Bytes {
		t.Errorf("stream after PutAside: %d messages, %d bytes; before: %d, %d", after.State.Msgs, after.State.Bytes, before.State.Msgs, before.State.Bytes)
	}
	objs, err := store.List(ctx, jetstream.ListObjectsShowDeleted())
	if err != nil || len(objs) != 1 || objs[0].Name != "kept" {
		t.Fatalf("objects after PutAside: %v %v", objs, err)
	}
	if got, err := store.GetBytes(ctx, "kept"); err != nil || !bytes.Equal(got, data) {
		t.Errorf("the stored object after PutAside: %d bytes, %v", len(got), err)
	}
}
