package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// publicError turns any error from the service layer into a caller-safe *schemas.Error. Internal
// details are logged here, once, and never sent to the caller.
func (g *Server) publicError(ctx context.Context, op string, err error) *schemas.Error {
	var se *schemas.Error
	if errors.As(err, &se) {
		return se
	}
	var ue *unconfirmedError
	if errors.As(err, &ue) {
		g.log.ErrorContext(ctx, "execution not confirmed", "op", op, "request_id", requestIDFrom(ctx), "execution_id", ue.id, "queued", ue.queued, "err", ue.err)
		what := fmt.Sprintf("the execution queue did not confirm execution %s in time: it may still run", ue.id)
		if ue.queued {
			what = fmt.Sprintf("execution %s is queued, but the results store could not record it, so it cannot be looked up yet: it will run", ue.id)
		}
		return &schemas.Error{Code: schemas.CodeUnavailable, RetryAfter: unavailableRetryAfter, ExecutionID: ue.id,
			Message: what + fmt.Sprintf(". Send the request again with the same Idempotency-Key to learn what became of it (it will not run twice), or look it up later with GET /v1/executions/%s", ue.id)}
	}
	var de *dependencyError
	if errors.As(err, &de) {
		g.log.ErrorContext(ctx, "dependency failed", "op", op, "request_id", requestIDFrom(ctx), "dependency", de.what, "err", de.err)
		e := schemas.Errorf(schemas.CodeUnavailable, "%s is unavailable; try again shortly", de.what)
		e.RetryAfter = unavailableRetryAfter
		return e
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return schemas.Errorf(schemas.CodeTimeout, "the request was cancelled or timed out")
	}
	g.log.ErrorContext(ctx, "internal error", "op", op, "request_id", requestIDFrom(ctx), "err", err)
	return &schemas.Error{Code: schemas.CodeInternal, Message: "internal error"}
}

// truncateID bounds an id or path quoted back in an error message to 80 bytes of valid UTF-8.
func truncateID(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}

// unavailableRetryAfter is the Retry-After (seconds) of a 503 for a dependency that could not
// answer: by then the gateway has ridden out a leader election (storeRetryFor, publishRetryFor),
// so what is wrong lasts longer: a NATS cluster without quorum (two servers of three down),
// a partition, PostgreSQL unreachable. Without it, clients of a cluster that had lost its quorum
// were refused 503 with no Retry-After (55 of 55 refusals in the fault suite's "quorum" fault),
// and the API promises one with every 503 that means "try again".
const unavailableRetryAfter = 5

// unavailable wraps the failure of a dependency (a store, accounting): publicError logs it
// once and answers a caller-safe 503 naming only what was unavailable.
func unavailable(what string, err error) error {
	return &dependencyError{what: what, err: err}
}

type dependencyError struct {
	what string
	err  error
}

func (e *dependencyError) Error() string { return e.what + ": " + e.err.Error() }
func (e *dependencyError) Unwrap() error { return e.err }
