package streams

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/nats-io/nats.go/jetstream"
)

// AsidePrefix begins the names PutAside gives its objects; nothing else is named so.
const AsidePrefix = "aside-"

// PutAside stores r in the object store bucket under a name of its own and removes it again:
// the work of storing an object, for a caller whose object the store already holds and who
// must not answer sooner for it. An upload of bytes another tenant uploaded does this where an
// upload of new bytes stores them, so that its time does not tell that someone else uploaded
// them (issue 12, upload timing; see SECURITY.md). The object is never read; a store too full
// for it refuses it as it would refuse the object itself. It is removed by purging its chunks
// and its metadata from the bucket's stream, so that, unlike a Delete, it leaves no marker.
func PutAside(ctx context.Context, js jetstream.JetStream, bucket string, store jetstream.ObjectStore, r io.Reader) error {
	var b [12]byte
	_, _ = rand.Read(b[:])
	name := AsidePrefix + hex.EncodeToString(b[:])
	info, err := store.Put(ctx, jetstream.ObjectMeta{Name: name}, r) // removes what it wrote if it fails
	if err != nil {
		return err
	}
	ctx = context.WithoutCancel(ctx) // what was stored goes, even for a caller gone
	s, err := js.Stream(ctx, "OBJ_"+bucket)
	if err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSubject(fmt.Sprintf("$O.%s.C.%s", bucket, info.NUID))); err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSubject(fmt.Sprintf("$O.%s.M.%s", bucket, base64.URLEncoding.EncodeToString([]byte(name))))); err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	return nil
}
