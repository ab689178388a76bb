package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	wasmwiz "github.com/wasmwiz/wasmwiz/clients/go"
)

// runClientUsage prints the caller's usage from GET /v1/usage.
//
//	wasmwiz usage [--from 2026-11-01] [--to 2026-12-01] [--group-by day|module|key] [--tenant ID] [--json]
func runClientUsage(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("usage", getenv, stderr)
	mk, _ := newClient(fs)
	from := fs.String("from", "", "start, inclusive: RFC 3339 or YYYY-MM-DD (default: 30 days ago, at UTC midnight)")
	to := fs.String("to", "", "end, exclusive: RFC 3339 or YYYY-MM-DD (default: now)")
	groupBy := fs.String("group-by", "day", "day, module or key")
	tenant := fs.String("tenant", "", "another tenant's usage (admin keys only)")
	asJSON := fs.Bool("json", false, "print the answer as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"usage: wasmwiz usage [--from T] [--to T] [--group-by day|module|key] [--tenant ID] [--json]"}
	}
	c, err := mk()
	if err != nil {
		return err
	}
	r, err := c.api.GetUsageWithResponse(ctx, &wasmwiz.GetUsageParams{From: optional(*from), To: optional(*to),
		GroupBy: optional(wasmwiz.GetUsageParamsGroupBy(*groupBy)), Tenant: optional(*tenant)})
	if err != nil {
		return err
	}
	u, err := answer(r.JSON200, r.StatusCode())
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(u)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%s\texecutions\tsucceeded\tfailed\ttimed_out\twall_ms\tmemory_mb_ms\tbytes_in\tbytes_out\t\n", u.GroupBy)
	row := func(key string, t wasmwiz.UsageTotals) {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", key, t.Executions, t.Succeeded, t.Failed, t.TimedOut, t.WallMs, t.MemoryMbMs, t.BytesIn, t.BytesOut)
	}
	for _, r := range u.Rows {
		row(r.Key, wasmwiz.UsageTotals{Executions: r.Executions, Succeeded: r.Succeeded, Failed: r.Failed, TimedOut: r.TimedOut,
			WallMs: r.WallMs, MemoryMbMs: r.MemoryMbMs, BytesIn: r.BytesIn, BytesOut: r.BytesOut})
	}
	row("total", u.Total)
	return tw.Flush()
}
