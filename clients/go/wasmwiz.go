package wasmwiz

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// WithAPIKey authenticates every request with an API key, or with a token from
// POST /v1/auth/token: both travel as Authorization: Bearer.
func WithAPIKey(key string) ClientOption {
	return WithRequestEditorFn(func(_ context.Context, req *http.Request) error {
		req.Header.Set("Authorization", "Bearer "+key)
		return nil
	})
}

// Final reports whether an execution has ended: a status it will not leave.
func (s ExecutionStatus) Final() bool {
	switch s {
	case ExecutionStatusSucceeded, ExecutionStatusFailed, ExecutionStatusTimedOut, ExecutionStatusKilled:
		return true
	}
	return false
}

// Error is an answer with a status of 400 or more: the problem+json body the server sent, with
// its stable Code (a Problem with just the status when the body was none), and for a 429 or 503
// how long to wait before trying again.
type Error struct {
	Problem
	// RetryAfter is the Retry-After header; 0 when the server did not send one.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("%d %s", e.Status, e.Code)
	if e.Detail != nil && *e.Detail != "" {
		msg += ": " + *e.Detail
	}
	return msg
}

// CheckResponse returns nil for an answer below 400 and an *Error for the others. Every
// …WithResponse method returns the response and its body, so
//
//	r, err := c.GetExecutionWithResponse(ctx, id)
//	if err == nil {
//		err = wasmwiz.CheckResponse(r.HTTPResponse, r.Body)
//	}
func CheckResponse(resp *http.Response, body []byte) error {
	if resp.StatusCode < 400 {
		return nil
	}
	e := &Error{}
	if json.Unmarshal(body, &e.Problem) != nil || e.Code == "" {
		e.Problem = Problem{Title: http.StatusText(resp.StatusCode)}
	}
	e.Status = int64(resp.StatusCode)
	if e.Code == "" {
		e.Code = "http_" + strconv.Itoa(resp.StatusCode)
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		e.RetryAfter = time.Duration(s) * time.Second
	}
	return e
}

// WithProblemErrors sends the requests through hc and makes every answer of 400 or more the
// call's error, an *Error (see CheckResponse), so that a call needs one error check:
//
//	c, _ := wasmwiz.NewClientWithResponses(url, wasmwiz.WithAPIKey(key), wasmwiz.WithProblemErrors(http.DefaultClient))
//	r, err := c.GetExecutionWithResponse(ctx, id) // err is an *Error for a 404
func WithProblemErrors(hc HttpRequestDoer) ClientOption {
	return WithHTTPClient(problemDoer{hc})
}

type problemDoer struct{ hc HttpRequestDoer }

// maxProblemBody bounds how much of an error's body is read.
const maxProblemBody = 1 << 20

func (d problemDoer) Do(req *http.Request) (*http.Response, error) {
	resp, err := d.hc.Do(req)
	if err != nil || resp.StatusCode < 400 {
		return resp, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxProblemBody))
	if err != nil {
		return nil, fmt.Errorf("%s %s: HTTP %d: %w", req.Method, req.URL.Path, resp.StatusCode, err)
	}
	return nil, CheckResponse(resp, body)
}
