package schemas

import (
	"strconv"
	"time"
)

// BucketStorage holds each tenant's stored-result bytes (ResultUsageKey → ResultUsage). Executors
// add to it, compare-and-set, before they store a result; gateways read it to refuse executions
// of a tenant whose results already fill its tier's result_bytes.
const BucketStorage = "wasmwiz_storage"

// ResultUsageKey is a tenant's ResultUsage record in BucketStorage: <tenant>.results.
func ResultUsageKey(tenant string) string { return tenant + ".results" }

// ResultUsageWindow is the width of one window of a ResultUsage.
const ResultUsageWindow = time.Hour

// ResultUsage counts the bytes of the results a tenant stored, per window of ResultUsageWindow.
// A result lives for the results bucket's TTL, so the bytes written in a window count until the
// window's end plus the TTL: at most one window longer than the results themselves, never
// shorter. Stored bytes are what the results bucket holds: the result's JSON, with its stdout,
// stderr and output files.
type ResultUsage struct {
	Windows map[string]int64 `json:"windows"` // window start (unix seconds) → bytes written in it
}

// Live is the bytes of u's windows whose results may still be stored at now, and when the
// first of them expires (zero when none counts).
func (u *ResultUsage) Live(now time.Time, ttl time.Duration) (bytes int64, freesAt time.Time) {
	for k, n := range u.Windows {
		start, err := strconv.ParseInt(k, 10, 64)
		if err != nil {
			continue
		}
		end := time.Unix(start, 0).Add(ResultUsageWindow + ttl)
		if !end.After(now) {
			continue
		}
		bytes += n
		if freesAt.IsZero() || end.Before(freesAt) {
			freesAt = end
		}
	}
	return bytes, freesAt
}

// Add counts n bytes written at now and forgets the windows that no longer count.
func (u *ResultUsage) Add(now time.Time, ttl time.Duration, n int64) {
	live := make(map[string]int64, len(u.Windows)+1)
	for k, b := range u.Windows {
		if start, err := strconv.ParseInt(k, 10, 64); err == nil && time.Unix(start, 0).Add(ResultUsageWindow+ttl).After(now) {
			live[k] = b
		}
	}
	live[strconv.FormatInt(now.Truncate(ResultUsageWindow).Unix(), 10)] += n
	u.Windows = live
}
