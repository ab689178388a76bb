package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"

	wasmwiz "github.com/wasmwiz/wasmwiz/clients/go"
)

// runExecutionsList prints the caller's executions (GET /v1/executions), newest first: a page
// (--limit) with the cursor of the next one, or every page with --all; a table, or --json.
func runExecutionsList(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("executions list", getenv, stderr)
	mk, _ := newClient(fs)
	status := fs.String("status", "", "only these states, comma-separated (queued,running,succeeded,failed,timed_out,killed)")
	module := fs.String("module", "", "only executions of this module id (sha256:<hex>)")
	from := fs.String("from", "", "only executions created at or after this time (RFC 3339)")
	to := fs.String("to", "", "only executions created before this time (RFC 3339)")
	limit := fs.Int("limit", 20, "executions per page (1-100)")
	cursor := fs.String("cursor", "", "go on from a page's next cursor")
	all := fs.Bool("all", false, "every page, not just the first")
	asJSON := fs.Bool("json", false, "JSON: the page as the API answers it (with --all, one execution per line)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: wasmwiz executions list [flags]")
		fs.PrintDefaults()
	}
	pos, err := fs.parseInterspersed(args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageError{"usage: wasmwiz executions list [flags]"}
	}
	c, err := mk()
	if err != nil {
		return err
	}
	lim := int64(*limit)
	params := &wasmwiz.ListExecutionsParams{Status: optional(*status), ModuleID: optional(*module),
		From: optional(*from), To: optional(*to), Limit: &lim, Cursor: optional(*cursor)}
	var t *table
	if !*asJSON {
		t = newTable(stdout, "ID", "STATUS", "EXIT", "DURATION", "MEMORY", "MODULE", "CREATED")
	}
	enc := json.NewEncoder(stdout)
	for {
		r, err := c.api.ListExecutionsWithResponse(ctx, params)
		if err != nil {
			return err
		}
		page, err := answer(r.JSON200, r.StatusCode())
		if err != nil {
			return err
		}
		switch {
		case *asJSON && !*all:
			return writeJSON(stdout, page)
		case *asJSON:
			for _, e := range page.Executions {
				if err := enc.Encode(e); err != nil {
					return err
				}
			}
		default:
			for _, e := range page.Executions {
				exit := "-"
				if e.ExitCode != nil {
					exit = strconv.FormatInt(*e.ExitCode, 10)
				}
				mod := str(e.ModuleName)
				if mod == "" {
					mod = shortModuleID(e.ModuleID)
				}
				t.row(e.ID, string(e.Status), exit, fmt.Sprintf("%.1f ms", e.DurationMs), memory(e.MemoryPeakBytes), mod,
					e.CreatedAt.Local().Format("2006-01-02 15:04:05"))
			}
		}
		next := str(page.NextCursor)
		if next == "" || !*all {
			if t != nil {
				if err := t.flush(); err != nil {
					return err
				}
				if next != "" {
					fmt.Fprintf(stderr, "more: wasmwiz executions list --cursor %s (or --all)\n", next)
				}
			}
			return nil
		}
		params.Cursor = &next
	}
}

// shortModuleID is a module id cut for a table: sha256: and its first 12 hex digits.
func shortModuleID(id string) string {
	if len(id) > 19 {
		return id[:19]
	}
	return id
}

// memory is n bytes in B, KiB, MiB or GiB with one decimal.
func memory(n int64) string {
	f, unit := float64(n), "B"
	for _, u := range []string{"KiB", "MiB", "GiB"} {
		if f < 1024 {
			break
		}
		f, unit = f/1024, u
	}
	if unit == "B" {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("%.1f %s", f, unit)
}
