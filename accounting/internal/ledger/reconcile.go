package ledger

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// Reconcile page sizes.
const (
	DefaultReconcileLimit = 10_000
	MaxReconcileLimit     = 100_000
)

// NormalizeReconcile checks a reconcile request and fills in its defaults, like NormalizeUsage.
func NormalizeReconcile(req schemas.ReconcileRequest, now time.Time) (schemas.ReconcileRequest, error) {
	if req.TenantID != "" && !schemas.ValidToken(req.TenantID) {
		return req, schemas.Errorf(schemas.CodeInvalid, "tenant_id must be a valid tenant id")
	}
	if !validText(req.After, 64) {
		return req, schemas.Errorf(schemas.CodeInvalid, "after must be an execution id")
	}
	switch {
	case req.Limit == 0:
		req.Limit = DefaultReconcileLimit
	case req.Limit < 0 || req.Limit > MaxReconcileLimit:
		return req, schemas.Errorf(schemas.CodeInvalid, "limit must be in 1..%d", MaxReconcileLimit)
	}
	u, err := NormalizeUsage(schemas.UsageRequest{TenantID: "x", From: req.From, To: req.To}, now)
	if err != nil {
		return req, err
	}
	req.From, req.To = u.From, u.To
	return req, nil
}

// DayRange is the range of UTC days that overlap [from, to): [from's day, to rounded up to a day).
func DayRange(from, to time.Time) (string, string) {
	first := from.UTC().Truncate(24 * time.Hour)
	end := to.UTC().Truncate(24 * time.Hour)
	if end.Before(to) {
		end = end.Add(24 * time.Hour)
	}
	return first.Format(DayFormat), end.Format(DayFormat)
}

// CompareRollup returns the (tenant, day) pairs where rollup and raw differ, sorted.
func CompareRollup(rollup, raw []DailyDelta) []schemas.RollupMismatch {
	type k struct{ tenant, day string }
	both := map[k]*schemas.RollupMismatch{}
	get := func(d DailyDelta) *schemas.RollupMismatch {
		m := both[k{d.TenantID, d.Day}]
		if m == nil {
			m = &schemas.RollupMismatch{TenantID: d.TenantID, Day: d.Day}
			both[k{d.TenantID, d.Day}] = m
		}
		return m
	}
	for _, d := range rollup {
		get(d).Rollup.Add(d.UsageTotals)
	}
	for _, d := range raw {
		get(d).Raw.Add(d.UsageTotals)
	}
	out := []schemas.RollupMismatch{}
	for _, m := range both {
		if m.Rollup != m.Raw {
			out = append(out, *m)
		}
	}
	slices.SortFunc(out, func(a, b schemas.RollupMismatch) int {
		return cmp.Or(strings.Compare(a.TenantID, b.TenantID), strings.Compare(a.Day, b.Day))
	})
	return out
}
