package streams_test

import (
	"bytes"
	"context"
	"errors"
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
	after := wantLeftAsBefore(t, s, before, store, data)
	chunks := uint64((len(data) + 128<<10 - 1) / (128 << 10))
	if written := after.State.LastSeq - before.State.LastSeq; written != chunks+1 {
		t.Errorf("PutAside wrote %d messages, want the %d chunks and the metadata a Put writes", written, chunks)
	}
}

// wantLeftAsBefore fails t unless PutAside left the bucket's stream s as before (no message,
// no deleted marker) and its one object, "kept", whole; it returns the stream's info after.
func wantLeftAsBefore(t *testing.T, s jetstream.Stream, before *jetstream.StreamInfo, store jetstream.ObjectStore, data []byte) *jetstream.StreamInfo {
	t.Helper()
	ctx := context.Background()
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
	return after
}

// TestPutAside_WithoutPurge: the executor's NATS user may not purge any stream
// (nats-roles.conf does not allow $JS.API.STREAM.PURGE.>), yet it stores compiled artifacts aside.
// PutAside purged, so for the executor each purge waited out the JetStream timeout (an upload
// of known bytes answered 5 s late, which told its tenant that someone had uploaded them) and
// the aside object stayed in the store. It removes its messages one by one, as the executor may.
func TestPutAside_WithoutPurge(t *testing.T) {
	admin, js := noPurgeServer(t)
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
	wantLeftAsBefore(t, s, before, store, data)
}

// TestDeleteObject: an object deleted by a user that may not purge (the executor deletes the
// outputs of a result cut to its tenant's quota) is gone, chunks and metadata, and the others
// stay. ObjectStore.Delete waited out the JetStream timeout on its purge and left the chunks.
func TestDeleteObject(t *testing.T) {
	admin, js := noPurgeServer(t)
	ctx := context.Background()
	if _, err := admin.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: "outs"}); err != nil {
		t.Fatal(err)
	}
	store, err := js.ObjectStore(ctx, "outs")
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("out!"), 300<<10)
	for _, name := range []string{"kept", "gone"} {
		if _, err := store.PutBytes(ctx, name, data); err != nil {
			t.Fatal(err)
		}
	}
	s, err := admin.Stream(ctx, "OBJ_outs")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	held := info.State.Msgs
	start := time.Now()
	if err := streams.DeleteObject(ctx, js, "outs", store, "gone"); err != nil {
		t.Fatalf("DeleteObject: %v (after %v)", err, time.Since(start))
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("DeleteObject took %v", took)
	}
	if info, err = s.Info(ctx); err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != held/2 {
		t.Errorf("stream after DeleteObject: %d messages, want %d (the other object's)", info.State.Msgs, held/2)
	}
	if _, err := store.GetInfo(ctx, "gone", jetstream.GetObjectInfoShowDeleted()); !errors.Is(err, jetstream.ErrObjectNotFound) {
		t.Errorf("the deleted object: %v, want not found", err)
	}
	if got, err := store.GetBytes(ctx, "kept"); err != nil || !bytes.Equal(got, data) {
		t.Errorf("the other object: %d bytes, %v", len(got), err)
	}
	if err := streams.DeleteObject(ctx, js, "outs", store, "gone"); !errors.Is(err, jetstream.ErrObjectNotFound) {
		t.Errorf("deleting it again: %v, want not found", err)
	}
}

// noPurgeServer starts a server with two users: admin, who may do anything, and one that may
// not purge streams, as the executor's NATS user (nats-roles.conf).
func noPurgeServer(t *testing.T) (admin, js jetstream.JetStream) {
	t.Helper()
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
	return connect("admin", "a"), connect("executor", "e")
}
