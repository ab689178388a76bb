package schemas

import (
	"errors"
	"fmt"
	"net/http"
)

// Code is a stable, machine-readable error code, part of the API contract.
type Code string

const (
	CodeInvalid              Code = "invalid"                // 422 the request is well-formed but not acceptable
	CodeBadRequest           Code = "bad_request"            // 400 the request cannot be parsed
	CodeInvalidModule        Code = "invalid_module"         // 422 not a usable WASI preview 1 command module
	CodeUnauthorized         Code = "unauthorized"           // 401 no or unknown credentials
	CodeForbidden            Code = "forbidden"              // 403 known caller, not allowed
	CodeNotFound             Code = "not_found"              // 404
	CodeConflict             Code = "conflict"               // 409 e.g. idempotency key reused with another body
	CodeTooLarge             Code = "too_large"              // 413
	CodeStorageQuotaExceeded Code = "storage_quota_exceeded" // 413 a storage quota of the tenant (modules, bundles, results) is used up; Retry-After when room frees by itself
	CodeUnsupported          Code = "unsupported_media_type" // 415 send Content-Type: application/json (or application/wasm)
	CodeRateLimited          Code = "rate_limited"           // 429
	CodeUnavailable          Code = "unavailable"            // 503 a dependency (NATS, executors) is not reachable
	CodeTimeout              Code = "timeout"                // 504
	CodeInternal             Code = "internal"               // 500
	CodeEmptyScopes          Code = "empty_scopes"           // 422 a key asked for with "scopes": [] (omit the field for the default)
	CodeKeyLimit             Code = "key_limit"              // 409 the tenant holds its tier's maximum of live keys
)

// Status maps a code to its HTTP status. This is the one place where that mapping lives.
func (c Code) Status() int {
	switch c {
	case CodeInvalid, CodeInvalidModule, CodeEmptyScopes:
		return http.StatusUnprocessableEntity
	case CodeBadRequest:
		return http.StatusBadRequest
	case CodeUnauthorized:
		return http.StatusUnauthorized
	case CodeForbidden:
		return http.StatusForbidden
	case CodeNotFound:
		return http.StatusNotFound
	case CodeConflict, CodeKeyLimit:
		return http.StatusConflict
	case CodeTooLarge, CodeStorageQuotaExceeded:
		return http.StatusRequestEntityTooLarge
	case CodeUnsupported:
		return http.StatusUnsupportedMediaType
	case CodeRateLimited:
		return http.StatusTooManyRequests
	case CodeUnavailable:
		return http.StatusServiceUnavailable
	case CodeTimeout:
		return http.StatusGatewayTimeout
	default:
		return http.StatusInternalServerError
	}
}

// codes lists every code; where several share a status, the first is the generic one.
var codes = []Code{CodeInvalid, CodeInvalidModule, CodeBadRequest, CodeUnauthorized, CodeForbidden,
	CodeNotFound, CodeConflict, CodeTooLarge, CodeUnsupported, CodeRateLimited, CodeUnavailable,
	CodeTimeout, CodeInternal, CodeEmptyScopes, CodeKeyLimit, CodeStorageQuotaExceeded}

// CodeForStatus is the generic code of an HTTP status, for errors made by HTTP machinery (body
// too large, validation) rather than by WasmWiz; the inverse of Status.
func CodeForStatus(status int) Code {
	for _, c := range codes {
		if c.Status() == status {
			return c
		}
	}
	return CodeInternal
}

// Error is the one error type that crosses role boundaries and reaches users. Message is safe to
// show to the caller; internal details are logged where they happen and never put here.
type Error struct {
	Code       Code   `json:"code"`
	Message    string `json:"message"`
	RetryAfter int    `json:"retry_after,omitempty"` // seconds, with rate_limited / unavailable
	// ExecutionID names the execution an unavailable answer is about when it may still run (the
	// queue did not confirm it in time, or it is queued but not yet recorded): the caller can
	// look it up, or send the request again with its Idempotency-Key, without parsing Message.
	ExecutionID string `json:"execution_id,omitempty"`
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Errorf makes an *Error with a formatted, lower-case message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// AsError returns err as an *Error; anything else becomes an internal error with a generic message.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: CodeInternal, Message: "internal error"}
}
