package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// A stdout or stderr longer than schemas.InlineOutputMax is stored by the executor in the
// outputs object store; the result carries its first part and says so (StdoutStored), and the
// caller reads the whole of it here: GET /v1/executions/{id}/stdout (streamed from the store)
// or, over NATS, executions.output in pieces.

// output returns one of an execution's outputs: its whole bytes as a reader (the stored object,
// or the result's own bytes) and their size.
func (g *Server) output(ctx context.Context, p *Principal, id, stream string) (io.ReadCloser, int64, error) {
	notFound := schemas.Errorf(schemas.CodeNotFound, "execution %s not found", truncateID(id))
	r, err := g.ownResult(ctx, p, id, notFound)
	if err != nil {
		return nil, 0, err
	}
	inline, stored := r.Stdout, r.StdoutStored
	if stream == schemas.StreamStderr {
		inline, stored = r.Stderr, r.StderrStored
	}
	if !stored {
		return io.NopCloser(bytes.NewReader(inline)), int64(len(inline)), nil
	}
	return g.openOutput(ctx, schemas.OutputObjectName(r.ID, stream), "the "+stream+" of execution "+r.ID)
}

// A stored output is read from the outputs store as the client takes it, never held whole
// (before, GET /v1/executions/{id}/files/{path} read up to the tier's outputs_bytes, 64 MiB on
// unlimited, into memory per request). nats.go reads an object under one deadline for the whole
// of it, the Get's context's, and gives a context without one JetStream's default timeout (5 s):
// so eight concurrent 64 MiB downloads failed with "read pipe: i/o timeout" (a 503, or a cut
// stream for stdout). Each object gets downloadTime(size) instead.
const (
	downloadBase = time.Minute // for any download, beyond minDownloadRate
	// minDownloadRate is the slowest a client may take a download, on average: a stalled
	// client (or store) holds one of the tenant's concurrent requests and a NATS consumer for
	// at most downloadBase plus the size at this rate.
	minDownloadRate = 64 << 10 // bytes a second
	// downloadBuffer is what the gateway reads from the store at a time for one download,
	// besides what NATS has sent ahead of it (JetStream's flow control).
	downloadBuffer = 32 << 10
)

// downloadTime bounds a download of size bytes from the store.
func downloadTime(size int64) time.Duration {
	return downloadBase + time.Duration(size/minDownloadRate)*time.Second
}

// openOutput opens the object name of the outputs store, to be read within
// downloadTime(size); what names it in a 404.
func (g *Server) openOutput(ctx context.Context, name, what string) (io.ReadCloser, int64, error) {
	var (
		info *jetstream.ObjectInfo
		err  error
	)
	for attempt := range 5 { // a follower may not have the object the leader acknowledged yet
		info, err = g.outputs.GetInfo(ctx, name)
		if !errors.Is(err, jetstream.ErrObjectNotFound) {
			break
		}
		select {
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		case <-time.After(time.Duration(attempt+1) * 50 * time.Millisecond):
		}
	}
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, 0, schemas.Errorf(schemas.CodeNotFound, "%s has expired", what)
	} else if err != nil {
		return nil, 0, unavailable("outputs store", err)
	}
	dctx, cancel := context.WithTimeout(ctx, downloadTime(int64(info.Size)))
	obj, err := g.outputs.Get(dctx, name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		cancel()
		return nil, 0, schemas.Errorf(schemas.CodeNotFound, "%s has expired", what)
	} else if err != nil {
		cancel()
		return nil, 0, unavailable("outputs store", err)
	}
	if info, err = obj.Info(); err != nil {
		obj.Close()
		cancel()
		return nil, 0, unavailable("outputs store", err)
	}
	return &objectReader{ObjectResult: obj, cancel: cancel}, int64(info.Size), nil
}

// objectReader is an object being read, with the deadline it is read under.
type objectReader struct {
	jetstream.ObjectResult
	cancel context.CancelFunc
}

func (o *objectReader) Close() error {
	err := o.ObjectResult.Close()
	o.cancel()
	return err
}

// download is an output being sent: its reader, its size, and the bytes read but not sent yet
// (buf[:held]).
//
// nats.go checks an object's digest only when the last chunk has been read, by answering the
// read after it with ErrDigestMismatch instead of io.EOF. So the last byte is held back until
// the reader has said io.EOF: a download whose store fails (a digest that does not match, a
// store that stops) ends with fewer bytes than its Content-Length, never as a whole body.
type download struct {
	r    io.ReadCloser
	size int64
	buf  []byte
	held int
	eof  bool // the reader said io.EOF: buf[:held] is all that is left
}

// startDownload reads the first downloadBuffer bytes of r (size bytes in all) before anything
// is sent, so that a store that fails at once, and a small object whose digest does not match,
// are answered with a problem+json rather than a 200 cut short. It closes r when it fails.
func startDownload(r io.ReadCloser, size int64) (*download, error) {
	d := &download{r: r, size: size, buf: make([]byte, downloadBuffer)}
	n, err := io.ReadFull(r, d.buf)
	d.held = n
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		d.eof = true
		err = d.checkSize(0)
	case err == nil:
		err = d.checkSize(0)
	}
	if err != nil {
		r.Close()
		return nil, storeReadError(err)
	}
	return d, nil
}

// storeReadError is the error a failed read of a stored output is answered with: an object
// whose digest does not match is an internal error (logged), anything else the store's.
func storeReadError(err error) error {
	if errors.Is(err, jetstream.ErrDigestMismatch) || errors.Is(err, errObjectSize) {
		return fmt.Errorf("outputs store: %w", err)
	}
	return unavailable("outputs store", err)
}

var errObjectSize = errors.New("the object's bytes are not as many as its info says")

// checkSize fails when the bytes read so far (sent, and those held) are more than size, or
// fewer once the reader has said io.EOF.
func (d *download) checkSize(sent int64) error {
	if got := sent + int64(d.held); got > d.size || d.eof && got != d.size {
		return fmt.Errorf("%w (%d of %d)", errObjectSize, got, d.size)
	}
	return nil
}

// send writes the rest of the download to w, the last byte only once the reader has said
// io.EOF, and closes the reader. An error (the reader's or w's) means w has fewer than size
// bytes.
func (d *download) send(w io.Writer) error {
	defer d.r.Close()
	var sent int64
	for !d.eof {
		if d.held > 1 {
			n, err := w.Write(d.buf[:d.held-1])
			sent += int64(n)
			if err != nil {
				return err
			}
			d.buf[0], d.held = d.buf[d.held-1], 1
		}
		n, err := d.r.Read(d.buf[d.held:])
		d.held += n
		if err == io.EOF {
			d.eof = true
		} else if err != nil {
			return err
		}
		if err := d.checkSize(sent); err != nil {
			return err
		}
	}
	_, err := w.Write(d.buf[:d.held])
	return err
}

// serveDownload writes d as a 200 of application/octet-stream. A download that fails once its headers
// are sent aborts the connection (http.ErrAbortHandler): the client sees a body shorter than
// its Content-Length (or a reset HTTP/2 stream), not a complete one.
func (g *Server) serveDownload(ctx context.Context, hctx huma.Context, d *download, what string) {
	hctx.SetHeader("Content-Type", "application/octet-stream")
	hctx.SetHeader("Content-Length", strconv.FormatInt(d.size, 10))
	hctx.SetStatus(http.StatusOK)
	if err := d.send(hctx.BodyWriter()); err != nil {
		g.log.WarnContext(ctx, "download cut short", "request_id", requestIDFrom(ctx), "what", what, "err", err)
		panic(http.ErrAbortHandler)
	}
}

type outputInput struct {
	ID string `path:"id" doc:"execution id"`
}

// restOutput is GET /v1/executions/{id}/stdout (or stderr): the whole output, streamed.
func (g *Server) restOutput(stream string) func(ctx context.Context, p *Principal, in *outputInput) (*huma.StreamResponse, error) {
	return func(ctx context.Context, p *Principal, in *outputInput) (*huma.StreamResponse, error) {
		rc, size, err := g.output(ctx, p, in.ID, stream)
		if err != nil {
			return nil, err
		}
		d, err := startDownload(rc, size)
		if err != nil {
			return nil, err
		}
		return &huma.StreamResponse{Body: func(hctx huma.Context) {
			g.serveDownload(ctx, hctx, d, "the "+stream+" of execution "+in.ID)
		}}, nil
	}
}

// maxOutputChunk is the most one executions.output reply carries (base64 in JSON: 4/3 of it),
// well inside the 8 MiB NATS messages of the shipped configurations.
const maxOutputChunk = 4 << 20

// outputChunk is executions.output over NATS: length bytes (at most maxOutputChunk) of an
// execution's stdout or stderr from offset.
func (g *Server) outputChunk(ctx context.Context, p *Principal, req *schemas.OutputRequest) (*schemas.OutputChunk, error) {
	if req.Stream != schemas.StreamStdout && req.Stream != schemas.StreamStderr {
		return nil, schemas.Errorf(schemas.CodeInvalid, "stream must be stdout or stderr")
	}
	if req.Offset < 0 || req.Length < 0 {
		return nil, schemas.Errorf(schemas.CodeInvalid, "offset and length must not be negative")
	}
	length := req.Length
	if length == 0 || length > maxOutputChunk {
		length = maxOutputChunk
	}
	rc, size, err := g.output(ctx, p, req.ID, req.Stream)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	out := &schemas.OutputChunk{Offset: req.Offset, Size: size}
	if req.Offset >= size {
		out.EOF = true
		return out, nil
	}
	if _, err := io.CopyN(io.Discard, rc, req.Offset); err != nil {
		return nil, storeReadError(err)
	}
	out.Data = make([]byte, min(length, size-req.Offset))
	if _, err := io.ReadFull(rc, out.Data); err != nil {
		return nil, storeReadError(err)
	}
	out.EOF = req.Offset+int64(len(out.Data)) >= size
	if out.EOF { // the last piece only once the store has checked the object's digest
		if err := atEOF(rc); err != nil {
			return nil, storeReadError(err)
		}
	}
	return out, nil
}

// atEOF reads r expecting nothing more: nil when it says io.EOF (for an object of the store,
// after checking its digest).
func atEOF(r io.Reader) error {
	var b [1]byte
	for {
		n, err := r.Read(b[:])
		switch {
		case n > 0:
			return errObjectSize
		case err == io.EOF:
			return nil
		case err != nil:
			return err
		}
	}
}
