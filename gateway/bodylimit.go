package gateway

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// Body limits come from the caller's tier and are enforced while the body is read, after
// authentication (Huma runs middleware before it reads a body): a free tenant cannot make the
// gateway read more than the free tier's largest request. The per-operation MaxBodyBytes Huma
// applies stays the largest tier's, as a backstop and for the OpenAPI document.

// executionBodyLimit is the largest execution request of tier t: its largest module in base64
// plus room for its stdin (as JSON, up to 4 bytes a byte; at least 4 MiB) and args and env.
func executionBodyLimit(t schemas.Tier) int64 {
	return t.ModuleSize*4/3 + max(4<<20, 4*int64(t.StdinMax))
}

// maxExecutionBody is the largest executionBodyLimit of any tier.
func maxExecutionBody(tiers map[string]schemas.Tier) int64 {
	var m int64
	for _, t := range tiers {
		m = max(m, executionBodyLimit(t))
	}
	return m
}

// limitBody is the middleware that applies bodyLimit to the authenticated caller's request. It
// uses http.MaxBytesReader, so that the server, having answered 413, closes the connection
// gracefully (it stops reading, half-closes and waits for the client to read the answer)
// instead of resetting it under the client's feet.
func (g *Server) limitBody(api huma.API) func(huma.Context, func(huma.Context)) {
	return func(ctx huma.Context, next func(huma.Context)) {
		p := principalFrom(ctx.Context())
		r, w := humago.Unwrap(ctx)
		if p == nil || r == nil || r.Body == nil {
			next(ctx)
			return
		}
		var limit int64
		o := g.opByID[ctx.Operation().OperationID]
		if o != nil && o.BodyLimit != nil {
			limit = o.BodyLimit(p.Tier)
		}
		if limit <= 0 {
			next(ctx)
			return
		}
		if r.ContentLength > limit {
			// Refused unread. Reading one byte through a limit of 0 tells the server the body
			// was too large, so it closes the connection gracefully after the answer.
			_, _ = http.MaxBytesReader(w, r.Body, 0).Read(make([]byte, 1))
			e := bodyTooLarge(limit, p.Tier.Name)
			if o.BodyLimitSetting != "" {
				e = settingTooLarge(g.cfg.Tiers, o, p.Tier, r.ContentLength)
			}
			_ = huma.WriteErr(api, ctx, e.Code.Status(), e.Message)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		next(ctx)
	}
}

// bodyTooLarge is the 413 of a request over its tier's limit.
func bodyTooLarge(limit int64, tier string) *schemas.Error {
	return schemas.Errorf(schemas.CodeTooLarge, "request body is over the %s tier's limit of %d bytes for this operation", tier, limit)
}

// settingTooLarge is the 413 of a body of size bytes over a tier setting (op.BodyLimitSetting),
// naming the tiers that allow it: "a body of 75532134 bytes is over the pro tier's module_size
// of 52428800 bytes; unlimited allows 268435456".
func settingTooLarge(tiers map[string]schemas.Tier, op *operation, t schemas.Tier, size int64) *schemas.Error {
	var others []schemas.Tier // the tiers that allow it, smallest limit first
	for name, other := range tiers {
		if name != t.Name && op.BodyLimit(other) >= size {
			others = append(others, other)
		}
	}
	slices.SortFunc(others, func(a, b schemas.Tier) int {
		return cmp.Or(cmp.Compare(op.BodyLimit(a), op.BodyLimit(b)), cmp.Compare(a.Name, b.Name))
	})
	var allow []string
	for _, other := range others {
		allow = append(allow, fmt.Sprintf("%s allows %d", other.Name, op.BodyLimit(other)))
	}
	msg := fmt.Sprintf("a body of %d bytes is over the %s tier's %s of %d bytes", size, t.Name, op.BodyLimitSetting, op.BodyLimit(t))
	if len(allow) > 0 {
		msg += "; " + strings.Join(allow, ", ")
	} else {
		msg += "; no tier allows it"
	}
	return schemas.Errorf(schemas.CodeTooLarge, "%s", msg)
}

// asBodyLimit finds a body-limit refusal among the errors Huma reports for a failed body read
// (it answers 500 "cannot read request body" with the read's error).
func asBodyLimit(errs []error) (*schemas.Error, bool) {
	for _, err := range errs {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return schemas.Errorf(schemas.CodeTooLarge, "request body is over your tier's limit of %d bytes for this operation", mbe.Limit), true
		}
	}
	return nil, false
}
