package gateway

import (
	"bytes"
	"context"
	"errors"
	"io"
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

// openOutput opens the object name of the outputs store; what names it in a 404.
func (g *Server) openOutput(ctx context.Context, name, what string) (io.ReadCloser, int64, error) {
	var (
		obj jetstream.ObjectResult
		err error
	)
	for attempt := range 5 { // a follower may not have the object the leader acknowledged yet
		obj, err = g.outputs.Get(ctx, name)
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
	info, err := obj.Info()
	if err != nil {
		obj.Close()
		return nil, 0, unavailable("outputs store", err)
	}
	return obj, int64(info.Size), nil
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
		return &huma.StreamResponse{Body: func(hctx huma.Context) {
			defer rc.Close()
			hctx.SetHeader("Content-Type", "application/octet-stream")
			hctx.SetHeader("Content-Length", strconv.FormatInt(size, 10))
			hctx.SetStatus(200)
			if _, err := io.Copy(hctx.BodyWriter(), rc); err != nil {
				g.log.WarnContext(ctx, "output download cut short", "execution_id", in.ID, "stream", stream, "err", err)
			}
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
		return nil, unavailable("outputs store", err)
	}
	out.Data = make([]byte, min(length, size-req.Offset))
	if _, err := io.ReadFull(rc, out.Data); err != nil {
		return nil, unavailable("outputs store", err)
	}
	out.EOF = req.Offset+int64(len(out.Data)) >= size
	return out, nil
}
