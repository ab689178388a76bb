package gateway

import (
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// Body limits come from the caller's tier and are enforced while the body is read, after
// authentication (Huma runs middleware before it reads a body): a free tenant cannot make the
// gateway read more than the free tier's largest request. The per-operation MaxBodyBytes Huma
// applies stays the largest tier's, as a backstop and for the OpenAPI document.

// bodyLimit is the most bytes operation op may read for a caller of tier t; 0 leaves Huma's.
func bodyLimit(op string, t schemas.Tier) int64 {
	switch op {
	case "upload-module":
		return t.ModuleSize
	case "create-execution":
		return executionBodyLimit(t.ModuleSize)
	}
	return 0
}

// executionBodyLimit is the largest execution request for modules of moduleSize bytes: the
// module in base64 plus room for stdin (1 MiB, up to 4 MiB as JSON) and args and env.
func executionBodyLimit(moduleSize int64) int64 { return moduleSize*4/3 + 4<<20 }

// limitBody is the middleware that applies bodyLimit to the authenticated caller's request.
func (g *Gateway) limitBody(api huma.API) func(huma.Context, func(huma.Context)) {
	return func(ctx huma.Context, next func(huma.Context)) {
		p := principalFrom(ctx.Context())
		if p == nil {
			next(ctx)
			return
		}
		limit := bodyLimit(ctx.Operation().OperationID, p.Tier)
		if limit <= 0 {
			next(ctx)
			return
		}
		tooLarge := bodyTooLarge(limit, p.Tier.Name)
		if n, err := strconv.ParseInt(ctx.Header("Content-Length"), 10, 64); err == nil && n > limit {
			ctx.SetHeader("Connection", "close") // the body is not read
			_ = huma.WriteErr(api, ctx, tooLarge.Code.Status(), tooLarge.Message)
			return
		}
		r, _ := humago.Unwrap(ctx)
		if r != nil && r.Body != nil {
			r.Body = &limitedBody{rc: r.Body, left: limit, err: tooLarge}
		}
		next(ctx)
	}
}

// bodyTooLarge is the 413 of a request over its tier's limit.
func bodyTooLarge(limit int64, tier string) *schemas.Error {
	return schemas.Errorf(schemas.CodeTooLarge, "request body is over the %s tier's limit of %d bytes for this operation", tier, limit)
}

// limitedBody reads at most left bytes of rc; one more is an error carrying the 413. Huma turns
// a read error into a 500 whose errors include it; newProblem finds it there (bodyError).
type limitedBody struct {
	rc   io.ReadCloser
	left int64
	err  *schemas.Error
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, &bodyLimitError{b.err}
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return n - 1, &bodyLimitError{b.err} // the byte past the limit is not handed on
	}
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }

// bodyLimitError is a read past a tier's body limit.
type bodyLimitError struct{ err *schemas.Error }

func (e *bodyLimitError) Error() string { return fmt.Sprint(e.err) }
func (e *bodyLimitError) Unwrap() error { return e.err }

// asBodyLimit finds a body-limit refusal among the errors Huma reports for a failed body read.
func asBodyLimit(errs []error) (*schemas.Error, bool) {
	for _, err := range errs {
		var le *bodyLimitError
		if errors.As(err, &le) {
			return le.err, true
		}
	}
	return nil, false
}
