package gateway

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/danielgtaylor/huma/v2"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// Problem is an RFC 9457 problem+json body with WasmWiz's stable error code.
type Problem struct {
	Type   string              `json:"type,omitempty"`
	Title  string              `json:"title"`
	Status int                 `json:"status"`
	Code   schemas.Code        `json:"code" doc:"stable machine-readable error code"`
	Detail string              `json:"detail,omitempty"`
	Errors []*huma.ErrorDetail `json:"errors,omitempty"`
	// ExecutionID is set on a 503 whose execution may still run (see schemas.Error.ExecutionID).
	ExecutionID string `json:"execution_id,omitempty" doc:"on a 503 whose execution may still run: the execution to look up (GET /v1/executions/{id}) or to ask about again with the same Idempotency-Key"`
	headers     http.Header
}

func (p *Problem) Error() string             { return p.Detail }
func (p *Problem) GetStatus() int            { return p.Status }
func (p *Problem) ContentType(string) string { return "application/problem+json" }
func (p *Problem) GetHeaders() http.Header   { return p.headers }

func newProblem(status int, msg string, errs ...error) *Problem {
	if e, ok := asBodyLimit(errs); ok { // a body read stopped at the caller's tier limit
		return problemFrom(e)
	}
	p := &Problem{Title: http.StatusText(status), Status: status, Code: schemas.CodeForStatus(status), Detail: msg}
	for _, err := range errs {
		var d *huma.ErrorDetail
		if errors.As(err, &d) {
			p.Errors = append(p.Errors, d)
		} else if err != nil {
			p.Errors = append(p.Errors, &huma.ErrorDetail{Message: err.Error()})
		}
	}
	return p
}

func init() {
	huma.NewError = func(status int, msg string, errs ...error) huma.StatusError {
		return newProblem(status, msg, errs...)
	}
}

// problemFrom turns a schemas.Error into a Problem.
func problemFrom(e *schemas.Error) *Problem {
	p := &Problem{Title: http.StatusText(e.Code.Status()), Status: e.Code.Status(), Code: e.Code, Detail: e.Message, ExecutionID: e.ExecutionID}
	if e.RetryAfter > 0 {
		p.headers = http.Header{"Retry-After": []string{strconv.Itoa(e.RetryAfter)}}
	}
	return p
}

// limitHeaders are the headers that go with an error: Retry-After when the error says when to
// try again (429, some 503s), and the RateLimit-* figures of a rate-limit refusal. REST, the
// compat endpoint and the direct NATS API send the same ones.
func limitHeaders(se *schemas.Error, err error) http.Header {
	h := http.Header{}
	if se.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(se.RetryAfter))
	}
	var le *limitedError
	if errors.As(err, &le) && le.d != nil {
		if limit, remaining, reset := le.d.headers(); limit != "" {
			h.Set("RateLimit-Limit", limit)
			h.Set("RateLimit-Remaining", remaining)
			h.Set("RateLimit-Reset", reset)
		}
	}
	return h
}
