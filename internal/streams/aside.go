package streams

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
)

// AsidePrefix begins the names PutAside gives its objects; nothing else is named so.
const AsidePrefix = "aside-"

// PutOrAside stores r as the object name of the object store bucket or, when the store has that
// object already, aside (PutAside): the same work either way, so that an upload's time does not
// tell whether someone else stored the object. A store it cannot ask is an error.
func PutOrAside(ctx context.Context, js jetstream.JetStream, bucket string, store jetstream.ObjectStore, name string, r io.Reader) error {
	_, err := store.GetInfo(ctx, name)
	switch {
	case err == nil:
		return PutAside(ctx, js, bucket, store, r)
	case errors.Is(err, jetstream.ErrObjectNotFound):
		_, err = store.Put(ctx, jetstream.ObjectMeta{Name: name}, r)
	}
	return err
}

// PutAside stores r in the object store bucket under a name of its own and removes it again:
// the work of storing an object, for a caller whose object the store already holds and who
// must not answer sooner for it. An upload of bytes another tenant uploaded does this where an
// upload of new bytes stores them, so that its time does not tell that someone else uploaded
// them (issue 12, upload timing; see SECURITY.md). The object is never read; a store too full
// for it refuses it as it would refuse the object itself. It is removed by deleting its chunks
// and its metadata from the bucket's stream (DeleteMessages), so that, unlike a Delete, it
// leaves no marker, and so that a caller who may not purge streams (the executor's NATS user,
// nats-roles.conf) can remove it.
func PutAside(ctx context.Context, js jetstream.JetStream, bucket string, store jetstream.ObjectStore, r io.Reader) error {
	var b [12]byte
	_, _ = rand.Read(b[:])
	name := AsidePrefix + hex.EncodeToString(b[:])
	info, err := store.Put(ctx, jetstream.ObjectMeta{Name: name}, r) // removes what it wrote if it fails
	if err != nil {
		return err
	}
	ctx = context.WithoutCancel(ctx) // what was stored goes, even for a caller gone
	if err := deleteObjectMessages(ctx, js, bucket, name, info.NUID); err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	return nil
}

// DeleteObject removes the object name from the object store bucket: its chunks and its
// metadata, by deleting their messages (DeleteMessages), for a caller who may not purge streams
// (the executor), where ObjectStore.Delete purges the chunks. Unlike Delete it leaves no
// deleted marker: the object is simply not there any more. An object that is not there is
// jetstream.ErrObjectNotFound.
func DeleteObject(ctx context.Context, js jetstream.JetStream, bucket string, store jetstream.ObjectStore, name string) error {
	info, err := store.GetInfo(ctx, name, jetstream.GetObjectInfoShowDeleted())
	if err != nil {
		return err
	}
	return deleteObjectMessages(ctx, js, bucket, name, info.NUID)
}

// deleteObjectMessages deletes the messages of the object name of bucket, whose chunks are
// those of nuid: its chunks and its metadata.
func deleteObjectMessages(ctx context.Context, js jetstream.JetStream, bucket, name, nuid string) error {
	s, err := js.Stream(ctx, "OBJ_"+bucket)
	if err != nil {
		return err
	}
	return DeleteMessages(ctx, s, chunkSubject(bucket, nuid), metaSubject(bucket, name))
}

// chunkSubject and metaSubject are the subjects of an object's chunks and of its metadata in
// its bucket's stream, as nats.go's object store names them.
func chunkSubject(bucket, nuid string) string { return fmt.Sprintf("$O.%s.C.%s", bucket, nuid) }

func metaSubject(bucket, name string) string {
	return fmt.Sprintf("$O.%s.M.%s", bucket, base64.URLEncoding.EncodeToString([]byte(name)))
}

// deleteConcurrency is how many message deletes DeleteMessages has in flight at once.
const deleteConcurrency = 16

// DeleteMessages removes every message of stream s on the given subjects, as a purge of them
// would, by deleting each message: the executor's NATS user may delete messages but not purge
// streams (nats-roles.conf), and a request it may not make is not refused, it times out. It
// finds the messages' sequences with an ephemeral consumer that delivers headers only, and
// deletes them 16 at a time.
func DeleteMessages(ctx context.Context, s jetstream.Stream, subjects ...string) error {
	c, err := s.CreateConsumer(ctx, jetstream.ConsumerConfig{
		FilterSubjects:    subjects,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		HeadersOnly:       true,
		InactiveThreshold: time.Minute, // if the delete below does not happen
	})
	if err != nil {
		return fmt.Errorf("finding messages to delete: %w", err)
	}
	defer func() { _ = s.DeleteConsumer(ctx, c.CachedInfo().Name) }()
	want := c.CachedInfo().NumPending
	seqs := make([]uint64, 0, want)
	for uint64(len(seqs)) < want {
		batch, err := c.FetchNoWait(int(min(want-uint64(len(seqs)), 1024)))
		if err != nil {
			return fmt.Errorf("finding messages to delete: %w", err)
		}
		n := 0
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				return fmt.Errorf("finding messages to delete: %w", err)
			}
			seqs = append(seqs, md.Sequence.Stream)
			n++
		}
		if err := batch.Error(); err != nil {
			return fmt.Errorf("finding messages to delete: %w", err)
		}
		if n == 0 {
			break // deleted by someone else meanwhile
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(deleteConcurrency)
	for _, seq := range seqs {
		g.Go(func() error {
			if err := s.DeleteMsg(gctx, seq); err != nil && !isMsgNotFound(err) {
				return fmt.Errorf("deleting message %d: %w", seq, err)
			}
			return nil
		})
	}
	return g.Wait()
}

func isMsgNotFound(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeMessageNotFound
}
