package executor

import (
	"context"
	"errors"
	"log/slog"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmwiz/wasmwiz/internal/streams"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// outputsTimeout bounds storing one stdout or stderr in the outputs object store (64 MiB, in
// chunks, takes well under a second on a local server).
const outputsTimeout = time.Minute

// storeOutputs moves a stdout, stderr or output file longer than schemas.InlineOutputMax to the outputs
// object store (schemas.OutputObjectName), so that it need not fit in the result's NATS
// message: the result keeps its first part (cut where a UTF-8 character starts) and is marked
// StdoutStored / StderrStored. A store that refuses (full, unreachable) leaves the output cut
// and marked truncated instead: the execution's result never waits on its output. Storing the
// same execution's output again (a redelivery) replaces the object with the same bytes (putOutput). It
// returns the bytes stored in objects, which count against the tenant's result_bytes
// (chargeResult).
func (n *Node) storeOutputs(ctx context.Context, log *slog.Logger, res *schemas.Result) (stored int64) {
	for _, o := range []struct {
		stream    string
		data      *[]byte
		stored    *bool
		truncated *bool
	}{
		{schemas.StreamStdout, &res.Stdout, &res.StdoutStored, &res.StdoutTruncated},
		{schemas.StreamStderr, &res.Stderr, &res.StderrStored, &res.StderrTruncated},
	} {
		if len(*o.data) <= schemas.InlineOutputMax || n.outputs == nil {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, outputsTimeout)
		err := n.putOutput(pctx, schemas.OutputObjectName(res.ID, o.stream), *o.data)
		cancel()
		if err != nil {
			log.Error("store large output; the result keeps its first part only", "stream", o.stream, "bytes", len(*o.data), "err", err)
			*o.truncated = true
		} else {
			*o.stored = true
			stored += int64(len(*o.data))
		}
		*o.data = (*o.data)[:runeStart(*o.data, schemas.InlineOutputMax)]
	}
	// Output files over InlineOutputMax likewise, whole: the result keeps only their record.
	files := 0
	for i := range res.Files {
		f := &res.Files[i]
		if len(f.Data) <= schemas.InlineOutputMax || n.outputs == nil {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, outputsTimeout)
		err := n.putOutput(pctx, schemas.OutputFileObjectName(res.ID, files), f.Data)
		cancel()
		if err != nil {
			log.Error("store large output file; the result keeps its first part only", "bytes", len(f.Data), "err", err)
			f.Data, f.Truncated = f.Data[:schemas.InlineOutputMax], true
			continue
		}
		stored += int64(len(f.Data))
		f.Stored, f.Index, f.Kept, f.Data = true, files, int64(len(f.Data)), nil
		files++
	}
	return stored
}

// putOutput stores data as the outputs object name. One of that name that an earlier attempt
// of the execution stored (a redelivery) is deleted first, by deleting its messages
// (streams.DeleteObject): a Put over it purges the old chunks, which the executor's NATS user
// may not, and waited out its context (a minute) for the answer that never came.
func (n *Node) putOutput(ctx context.Context, name string, data []byte) error {
	if err := streams.DeleteObject(ctx, n.js, schemas.ObjectOutputs, n.outputs, name); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		return err
	}
	_, err := n.outputs.PutBytes(ctx, name, data)
	return err
}

// runeStart is the largest i <= n at which a UTF-8 character of b starts (n when b is not
// UTF-8 there: binary output is cut anywhere).
func runeStart(b []byte, n int) int {
	for i := n; i > n-utf8.UTFMax && i > 0; i-- {
		if utf8.RuneStart(b[i]) {
			return i
		}
	}
	return n
}
