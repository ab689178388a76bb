// Package ledger is the dialect-free part of accounting's stores: it turns events (checked by
// accounting.ValidateEvent) into the rows both stores write, computes the daily rollup deltas of the rows a transaction
// really inserted, and normalises usage requests. Both accounting/postgres and
// accounting/sqlite use it, so the two stores agree on every number by construction.
package ledger

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/wasmwiz/wasmwiz/accounting"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// DayFormat is the format of a day key.
const DayFormat = "2006-01-02"

// Execution is the row stored for one execution event.
type Execution struct {
	ExecutionID     string
	TenantID        string
	KeyID           string
	Tier            string
	ModuleID        string
	Status          string
	ExitCode        int
	WallMS          float64 // as measured
	CPUMS           float64
	MemoryPeakBytes int64
	StdinBytes      int64
	StdoutBytes     int64
	StderrBytes     int64
	QueuedAt        time.Time // zero when unknown
	StartedAt       time.Time // zero when unknown
	FinishedAt      time.Time // never zero; the time usage is accounted at
	Day             string    // FinishedAt's UTC day
	NodeID          string
	EventID         string
	EventSeq        uint64
	BilledWallMS    int64 // ceil(WallMS)
	MemoryMBMS      int64 // ceil(MemoryPeakBytes / MiB) * BilledWallMS
}

// Totals is the usage one execution adds.
func (e *Execution) Totals() schemas.UsageTotals {
	t := schemas.UsageTotals{
		Executions: 1,
		WallMS:     e.BilledWallMS,
		MemoryMBMS: e.MemoryMBMS,
		BytesIn:    e.StdinBytes,
		BytesOut:   e.StdoutBytes + e.StderrBytes,
	}
	switch schemas.Status(e.Status) {
	case schemas.StatusSucceeded:
		t.Succeeded = 1
	case schemas.StatusTimedOut:
		t.TimedOut = 1
	default: // failed, killed
		t.Failed = 1
	}
	return t
}

// Audit is the row stored for a non-execution event.
type Audit struct {
	ID       string
	Type     string
	TenantID string
	Time     time.Time
	Data     []byte // the event as JSON
	EventSeq uint64
}

// IsExecution reports whether an event type is an execution event.
func IsExecution(eventType string) bool { return strings.HasPrefix(eventType, "execution.") }

// validText reports whether s can be stored as text by both databases: valid UTF-8, no NUL,
// at most max bytes.
func validText(s string, max int) bool {
	return len(s) <= max && utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// Rows turns a batch of entries, valid per accounting.ValidateEvent, into execution and audit rows, each sorted by its key
// (so that concurrent transactions lock rows in the same order), keeping only the first of
// entries that share an execution id (or an event id, for audit events). It returns how many
// entries it dropped as duplicates.
func Rows(entries []accounting.Entry) (execs []Execution, audits []Audit, dups int, err error) {
	seenExec := make(map[string]bool)
	seenEvent := make(map[string]bool)
	for i := range entries {
		ev := &entries[i].Event
		if IsExecution(ev.Type) {
			if ev.Execution == nil {
				return nil, nil, 0, fmt.Errorf("event %s: execution event without execution", ev.ID)
			}
			if seenExec[ev.Execution.ExecutionID] {
				dups++
				continue
			}
			seenExec[ev.Execution.ExecutionID] = true
			execs = append(execs, ExecutionRow(ev, entries[i].Seq))
			continue
		}
		if seenEvent[ev.ID] {
			dups++
			continue
		}
		seenEvent[ev.ID] = true
		data, err := json.Marshal(ev)
		if err != nil {
			return nil, nil, 0, fmt.Errorf("event %s: %w", ev.ID, err)
		}
		audits = append(audits, Audit{ID: ev.ID, Type: ev.Type, TenantID: ev.TenantID, Time: ev.Time.UTC(), Data: data, EventSeq: entries[i].Seq})
	}
	slices.SortFunc(execs, func(a, b Execution) int { return strings.Compare(a.ExecutionID, b.ExecutionID) })
	slices.SortFunc(audits, func(a, b Audit) int { return strings.Compare(a.ID, b.ID) })
	return execs, audits, dups, nil
}

// ExecutionRow makes the row of an execution event.
func ExecutionRow(ev *schemas.Event, seq uint64) Execution {
	x := ev.Execution
	finished := x.FinishedAt
	if finished.IsZero() {
		finished = ev.Time
	}
	finished = finished.UTC().Truncate(time.Microsecond) // both databases keep microseconds
	wall := int64(math.Ceil(x.WallMS))
	mib := (x.MemoryPeakBytes + schemas.MiB - 1) / schemas.MiB
	return Execution{
		ExecutionID:     x.ExecutionID,
		TenantID:        ev.TenantID,
		KeyID:           x.KeyID,
		Tier:            x.Tier,
		ModuleID:        x.ModuleID,
		Status:          string(x.Status),
		ExitCode:        x.ExitCode,
		WallMS:          x.WallMS,
		CPUMS:           x.CPUMS,
		MemoryPeakBytes: x.MemoryPeakBytes,
		StdinBytes:      x.StdinBytes,
		StdoutBytes:     x.StdoutBytes,
		StderrBytes:     x.StderrBytes,
		QueuedAt:        utcMicro(x.QueuedAt),
		StartedAt:       utcMicro(x.StartedAt),
		FinishedAt:      finished,
		Day:             finished.Format(DayFormat),
		NodeID:          x.NodeID,
		EventID:         ev.ID,
		EventSeq:        seq,
		BilledWallMS:    wall,
		MemoryMBMS:      mib * wall,
	}
}

func utcMicro(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC().Truncate(time.Microsecond)
}

// DailyDelta is what a transaction adds to one row of usage_daily.
type DailyDelta struct {
	TenantID string
	Day      string
	schemas.UsageTotals
}

// Rollup sums the rows a transaction really inserted into per tenant and day deltas, sorted by
// (tenant, day) so that concurrent transactions update usage_daily rows in the same order.
func Rollup(inserted []Execution) []DailyDelta {
	type k struct{ tenant, day string }
	m := make(map[k]*DailyDelta)
	for i := range inserted {
		e := &inserted[i]
		key := k{e.TenantID, e.Day}
		d := m[key]
		if d == nil {
			d = &DailyDelta{TenantID: e.TenantID, Day: e.Day}
			m[key] = d
		}
		d.Add(e.Totals())
	}
	out := make([]DailyDelta, 0, len(m))
	for _, d := range m {
		out = append(out, *d)
	}
	slices.SortFunc(out, func(a, b DailyDelta) int {
		return cmp.Or(strings.Compare(a.TenantID, b.TenantID), strings.Compare(a.Day, b.Day))
	})
	return out
}

// MaxUsageRange is the longest time range a usage query may cover.
const MaxUsageRange = 400 * 24 * time.Hour

// NormalizeUsage checks a usage request and fills in its defaults: To defaults to now, From to
// the start of the UTC day 30 days before To, GroupBy to day. Times become UTC, truncated to
// microseconds (rounded up, which selects the same rows). Errors are *schemas.Error with CodeInvalid.
func NormalizeUsage(req schemas.UsageRequest, now time.Time) (schemas.UsageRequest, error) {
	if !schemas.ValidToken(req.TenantID) {
		return req, schemas.Errorf(schemas.CodeInvalid, "tenant_id must be a valid tenant id")
	}
	switch req.GroupBy {
	case "":
		req.GroupBy = schemas.UsageByDay
	case schemas.UsageByDay, schemas.UsageByModule, schemas.UsageByKey:
	default:
		return req, schemas.Errorf(schemas.CodeInvalid, "group_by must be day, module or key")
	}
	if req.To.IsZero() {
		req.To = now
	}
	req.To = ceilMicro(req.To)
	if req.From.IsZero() {
		req.From = req.To.AddDate(0, 0, -30).Truncate(24 * time.Hour)
	}
	req.From = ceilMicro(req.From)
	if !req.From.Before(req.To) {
		return req, schemas.Errorf(schemas.CodeInvalid, "from must be before to")
	}
	if req.To.Sub(req.From) > MaxUsageRange {
		return req, schemas.Errorf(schemas.CodeInvalid, "the range from..to must not exceed %d days", int(MaxUsageRange/(24*time.Hour)))
	}
	return req, nil
}

// ceilMicro rounds t up to a microsecond, in UTC: rows keep microseconds, so for a row time r,
// r >= t exactly when r >= ceilMicro(t), and likewise for <.
func ceilMicro(t time.Time) time.Time {
	t = t.UTC()
	if u := t.Truncate(time.Microsecond); !u.Equal(t) {
		return u.Add(time.Microsecond)
	}
	return t
}

// DayAligned reports whether t is a UTC midnight, so that usage from t can be read from the
// daily rollup.
func DayAligned(t time.Time) bool { return t.Equal(t.UTC().Truncate(24 * time.Hour)) }

// UseRollup reports whether a normalised request can be answered from usage_daily alone.
func UseRollup(req schemas.UsageRequest) bool {
	return req.GroupBy == schemas.UsageByDay && DayAligned(req.From) && DayAligned(req.To)
}

// Response assembles the answer to a normalised request from its rows, computing the total.
func Response(req schemas.UsageRequest, rows []schemas.UsageRow) schemas.UsageResponse {
	if rows == nil {
		rows = []schemas.UsageRow{}
	}
	resp := schemas.UsageResponse{From: req.From, To: req.To, GroupBy: req.GroupBy, Rows: rows}
	for _, r := range rows {
		resp.Total.Add(r.UsageTotals)
	}
	return resp
}
