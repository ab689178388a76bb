package schemas

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// StreamHistory holds the execution history: one small record per execution and state, on a
// subject per tenant and minute of creation (HistorySubject). Its MaxAge is the results TTL, so
// the history lists what GET /v1/executions/{id} can still answer (RATIONALE.md, "Why is the
// execution history a stream of minute subjects?").
const StreamHistory = "WASMWIZ_HISTORY"

// OpExecutionsList is the direct NATS twin of GET /v1/executions.
const OpExecutionsList = "executions.list"

// HistorySubject is where an execution's history records go: its tenant and the minute (Unix
// minutes, UTC) it was created in.
//
//	wasmwiz.history.<tenant>.<minute>   e.g. wasmwiz.history.acme.29410560
func HistorySubject(tenant string, created time.Time) string {
	return "wasmwiz.history." + tenant + "." + strconv.FormatInt(HistoryMinute(created), 10)
}

// HistoryMinute is the minute bucket of a creation time: Unix seconds / 60.
func HistoryMinute(t time.Time) int64 { return t.Unix() / 60 }

// HistorySubjectAll matches every tenant's history: wasmwiz.history.*.*
const HistorySubjectAll = "wasmwiz.history.*.*"

// HistorySubjectTenant matches one tenant's history: wasmwiz.history.<tenant>.*
func HistorySubjectTenant(tenant string) string { return "wasmwiz.history." + tenant + ".*" }

// ParseHistorySubject is the inverse of HistorySubject: the tenant and the minute.
func ParseHistorySubject(subject string) (tenant string, minute int64, err error) {
	parts := strings.Split(subject, ".")
	if len(parts) != 4 || parts[0] != "wasmwiz" || parts[1] != "history" || !ValidToken(parts[2]) {
		return "", 0, fmt.Errorf("not a history subject: %q", subject)
	}
	m, err := strconv.ParseInt(parts[3], 10, 64)
	if err != nil || m < 0 || m > 1<<40 || strconv.FormatInt(m, 10) != parts[3] {
		return "", 0, fmt.Errorf("not a history subject: %q", subject)
	}
	return parts[2], m, nil
}

// ExecutionSummary is one execution in a listing: what it ran and how it ended, without its
// output (GET /v1/executions/{id} has that). It is also the history record stored for it.
type ExecutionSummary struct {
	ID              string     `json:"id"`
	Status          Status     `json:"status" enum:"queued,running,succeeded,failed,timed_out,killed"`
	ModuleID        string     `json:"module_id"`
	ModuleName      string     `json:"module_name,omitempty"`
	KeyID           string     `json:"key_id,omitempty" doc:"the API key that started it"`
	ExitCode        *int       `json:"exit_code,omitempty" doc:"the guest's exit code once it ended; -1 after a trap, timeout or kill"`
	Error           string     `json:"error,omitempty"`
	DurationMS      float64    `json:"duration_ms"`
	MemoryPeakBytes int64      `json:"memory_peak_bytes"`
	CreatedAt       time.Time  `json:"created_at"`
	StartedAt       *time.Time `json:"started_at,omitempty"`
	FinishedAt      *time.Time `json:"finished_at,omitempty"`
}

// SummaryOf is a result's summary.
func SummaryOf(r *Result, moduleName string) *ExecutionSummary {
	s := &ExecutionSummary{
		ID: r.ID, Status: r.Status, ModuleID: r.ModuleID, ModuleName: moduleName, KeyID: r.KeyID, Error: r.Error,
		DurationMS: r.DurationMS, MemoryPeakBytes: r.MemoryPeakBytes,
		CreatedAt: r.CreatedAt, StartedAt: r.StartedAt, FinishedAt: r.FinishedAt,
	}
	if r.Status.Final() {
		code := r.ExitCode
		s.ExitCode = &code
	}
	return s
}

// ExecutionListRequest is the body of wasmwiz.api.v1.executions.list; GET /v1/executions takes
// the same fields as query parameters.
type ExecutionListRequest struct {
	Status   string `json:"status,omitempty" doc:"only executions in these states, comma-separated (queued,running,succeeded,failed,timed_out,killed)" example:"failed,timed_out"`
	ModuleID string `json:"module_id,omitempty" doc:"only executions of this module (sha256:<hex>)"`
	From     string `json:"from,omitempty" doc:"only executions created at or after this time (RFC 3339)" example:"2026-12-01T00:00:00Z"`
	To       string `json:"to,omitempty" doc:"only executions created before this time (RFC 3339)"`
	Limit    int    `json:"limit,omitempty" doc:"at most this many (1-100; default 20)"`
	Cursor   string `json:"cursor,omitempty" doc:"next_cursor of the previous page"`
}

// ExecutionList is a page of GET /v1/executions, newest first.
type ExecutionList struct {
	Executions []ExecutionSummary `json:"executions"`
	NextCursor string             `json:"next_cursor,omitempty" doc:"pass it as cursor for the next (older) page; absent on the last page"`
}

// HistoryCursor is a position in a tenant's history, newest first: the next page holds the
// executions created before CreatedAt, and those created at CreatedAt with an id below ID.
type HistoryCursor struct {
	CreatedAt time.Time
	ID        string
}

// Encode is the cursor as an opaque URL-safe string.
func (c HistoryCursor) Encode() string {
	b := binary.BigEndian.AppendUint64(nil, uint64(c.CreatedAt.UnixNano()))
	return base64.RawURLEncoding.EncodeToString(append(b, c.ID...))
}

// ParseHistoryCursor is the inverse of HistoryCursor.Encode.
func ParseHistoryCursor(s string) (HistoryCursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < 8 || len(b) > 8+64 {
		return HistoryCursor{}, fmt.Errorf("not a cursor")
	}
	id := string(b[8:])
	if id != "" && !ValidExecutionID(id) {
		return HistoryCursor{}, fmt.Errorf("not a cursor")
	}
	ns := int64(binary.BigEndian.Uint64(b[:8]))
	if ns < 0 {
		return HistoryCursor{}, fmt.Errorf("not a cursor")
	}
	return HistoryCursor{CreatedAt: time.Unix(0, ns).UTC(), ID: id}, nil
}

// Before reports whether an execution created at t with id sorts after the cursor (it belongs
// to a later page: older, or as old with a lower id).
func (c HistoryCursor) Before(t time.Time, id string) bool {
	return t.Before(c.CreatedAt) || (t.Equal(c.CreatedAt) && id < c.ID)
}
