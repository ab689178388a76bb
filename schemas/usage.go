package schemas

import "time"

// Usage grouping, the group_by of a UsageRequest.
const (
	UsageByDay    = "day"    // Key is the UTC day, YYYY-MM-DD
	UsageByModule = "module" // Key is the module id
	UsageByKey    = "key"    // Key is the API key id
)

// UsageRequest asks accounting for one tenant's usage in [From, To), by finish time of each
// execution. It is the body of AccountingSubject(OpUsage). Zero From/To and empty GroupBy take
// the defaults (the last 30 days up to now, by day).
type UsageRequest struct {
	TenantID string    `json:"tenant_id"`
	From     time.Time `json:"from,omitzero"`
	To       time.Time `json:"to,omitzero"`
	GroupBy  string    `json:"group_by,omitempty"` // day | module | key
}

// UsageTotals are the billable sums of a set of executions, each counted once however often it
// was delivered. Killed executions count as failed. WallMS is each execution's wall time
// rounded up to a whole millisecond; MemoryMBMS is each execution's peak memory in MiB (rounded
// up) times its WallMS; BytesIn is stdin, BytesOut is stdout plus stderr as written by the guest.
type UsageTotals struct {
	Executions int64 `json:"executions"`
	Succeeded  int64 `json:"succeeded"`
	Failed     int64 `json:"failed"`
	TimedOut   int64 `json:"timed_out"`
	WallMS     int64 `json:"wall_ms"`
	MemoryMBMS int64 `json:"memory_mb_ms"`
	BytesIn    int64 `json:"bytes_in"`
	BytesOut   int64 `json:"bytes_out"`
}

// Add adds o to t.
func (t *UsageTotals) Add(o UsageTotals) {
	t.Executions += o.Executions
	t.Succeeded += o.Succeeded
	t.Failed += o.Failed
	t.TimedOut += o.TimedOut
	t.WallMS += o.WallMS
	t.MemoryMBMS += o.MemoryMBMS
	t.BytesIn += o.BytesIn
	t.BytesOut += o.BytesOut
}

// UsageRow is the usage of one group; Key is the day, module id or key id.
type UsageRow struct {
	Key string `json:"key"`
	UsageTotals
}

// UsageResponse answers a UsageRequest. Rows are sorted by Key; groups without executions are
// left out. Total is the sum of Rows.
type UsageResponse struct {
	From    time.Time   `json:"from"`
	To      time.Time   `json:"to"`
	GroupBy string      `json:"group_by"`
	Rows    []UsageRow  `json:"rows"`
	Total   UsageTotals `json:"total"`
}

// OpReconcile is the accounting operation behind `wasmwiz accounting reconcile`:
// AccountingSubject(OpReconcile) = wasmwiz.accounting.v1.reconcile.
const OpReconcile = "reconcile"

// ReconcileRequest asks accounting which executions it stored as finished in [From, To), one
// page of ids at a time, and whether its daily rollup agrees with its raw rows. Zero From/To
// take the same defaults as UsageRequest.
type ReconcileRequest struct {
	TenantID string    `json:"tenant_id,omitempty"` // empty: every tenant
	From     time.Time `json:"from,omitzero"`
	To       time.Time `json:"to,omitzero"`
	After    string    `json:"after,omitempty"` // the Next of the previous page
	Limit    int       `json:"limit,omitempty"` // ids per page; default 10000, at most 100000
}

// ReconcileResponse answers a ReconcileRequest. Count and RollupMismatches are computed on the
// first page only (After empty).
type ReconcileResponse struct {
	From         time.Time `json:"from"`
	To           time.Time `json:"to"`
	Count        int64     `json:"count"`         // executions stored in the range, all pages
	ExecutionIDs []string  `json:"execution_ids"` // sorted
	Next         string    `json:"next,omitempty"`
	// RollupMismatches lists the (tenant, day) pairs, for the UTC days overlapping the range,
	// where the daily rollup differs from the sums of the raw rows. Empty when consistent.
	RollupMismatches []RollupMismatch `json:"rollup_mismatches"`
}

// RollupMismatch is one day of one tenant whose rollup disagrees with its raw rows.
type RollupMismatch struct {
	TenantID string      `json:"tenant_id"`
	Day      string      `json:"day"`
	Rollup   UsageTotals `json:"rollup"`
	Raw      UsageTotals `json:"raw"`
}
