package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/wasmwiz/wasmwiz/schemas"
)

const reconcileUsage = "usage: wasmwiz accounting reconcile [--from TIME] [--to TIME] [--tenant ID] [--results=false] [--json] [--context NAME | --nats-url URL]"

// Reconcile's exit codes: 0 all matched, 1 something is missing, duplicated or inconsistent,
// 2 it could not tell (the events stream, the results or accounting could not be read; or a
// usage error).
const (
	reconcileGap        = 1
	reconcileCannotRead = 2
)

// ReconcileReport is what `wasmwiz accounting reconcile` finds.
type ReconcileReport struct {
	From     time.Time `json:"from"`
	To       time.Time `json:"to"`
	TenantID string    `json:"tenant_id,omitempty"`
	// Events counts the execution events in the stream that finished in the range;
	// EventExecutions the distinct executions among them (an execution published twice is
	// one execution, billed once).
	Events          int `json:"events"`
	EventExecutions int `json:"event_executions"`
	// Stored is the number of usage rows accounting holds for the range.
	Stored int64 `json:"stored"`
	// Missing are executions with an event but no usage row; Duplicates are usage rows beyond
	// one per execution; Unexpected are usage rows without an event in the stream.
	Missing          []string                 `json:"missing"`
	Duplicates       []string                 `json:"duplicates"`
	Unexpected       []string                 `json:"unexpected"`
	RollupMismatches []schemas.RollupMismatch `json:"rollup_mismatches"`
	// StreamCovers is false when the events stream no longer holds the start of the range
	// (its limits removed older events): rows without events are then not counted as errors.
	StreamCovers bool `json:"stream_covers"`

	eventIDs map[string]bool // the executions with an event in the range
	// Backlog is what the accounting consumer had not yet stored when the check began (pending
	// plus delivered but unacked events): missing rows may be only late.
	Backlog uint64 `json:"backlog"`
	// Results counts the final results (KV wasmwiz_results) of executions that finished in the
	// range, up to Settle before the check; Unpublished are those among them without an event:
	// executions that ran and will never be billed unless their event is published (wasmwiz dlq
	// replay does it for a request in the dead letters). Results live for the bucket's TTL
	// (24 h by default), so older ranges are not checked this way; ResultsChecked says whether
	// they were.
	ResultsChecked bool      `json:"results_checked"`
	Results        int       `json:"results"`
	Unpublished    []string  `json:"unpublished"`
	Settle         time.Time `json:"settled_before"`
	// GivenUp are final results of executions that never started: their requests exhausted
	// their deliveries and wait in the dead letters (wasmwiz dlq). Nothing ran, nothing is owed.
	GivenUp []string `json:"given_up"`
}

// Failed reports whether the report shows anything wrong.
func (r *ReconcileReport) Failed() bool {
	return len(r.Missing) > 0 || len(r.Duplicates) > 0 || len(r.RollupMismatches) > 0 ||
		(r.StreamCovers && len(r.Unexpected) > 0) || len(r.Unpublished) > 0
}

// runReconcile compares the execution events in WASMWIZ_EVENTS (read straight from JetStream)
// with the usage rows accounting stored (wasmwiz.accounting.v1.reconcile), for the executions
// that finished in [from, to), checks accounting's daily rollup against its raw rows, and checks
// that every final result in the results KV has its event. It exits 1 when anything is missing,
// duplicated or inconsistent, 2 when it could not read what it compares.
func runReconcile(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("accounting reconcile", getenv, stderr)
	conn := opsNATSFlags(fs)
	fromArg := fs.String("from", "", "start of the range, by finish time (RFC 3339 or YYYY-MM-DD); default: UTC midnight 30 days before --to")
	toArg := fs.String("to", "", "end of the range, exclusive (RFC 3339 or YYYY-MM-DD); default: now")
	tenant := fs.String("tenant", "", "only this tenant (default: all)")
	slack := fs.Duration("slack", time.Hour, "read events published up to this long before --from (events are published after their execution finishes)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	results := fs.Bool("results", true, "also check that every final result in the results KV has its event (reads the whole bucket)")
	settle := fs.Duration("settle", time.Minute, "results that finished this recently are not checked (their events may still be on the way)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{reconcileUsage}
	}
	if *tenant != "" && !schemas.ValidToken(*tenant) {
		return usageError{fmt.Sprintf("--tenant %q is not a tenant id", *tenant)}
	}
	now := time.Now()
	to, from := now, time.Time{}
	var err error
	if *toArg != "" {
		if to, err = parseTime(*toArg); err != nil {
			return usageError{"--to: want an RFC 3339 time or a date"}
		}
	}
	if *fromArg != "" {
		if from, err = parseTime(*fromArg); err != nil {
			return usageError{"--from: want an RFC 3339 time or a date"}
		}
	} else {
		from = to.UTC().AddDate(0, 0, -30).Truncate(24 * time.Hour)
	}
	from, to = ceilMicro(from), ceilMicro(to)
	if !from.Before(to) {
		return usageError{"--from must be before --to"}
	}
	nc, js, err := connectJetStream(conn, "wasmwiz-reconcile")
	if err != nil {
		return exitError{err.Error(), reconcileCannotRead}
	}
	defer nc.Close()
	rep, err := reconcile(ctx, nc, js, *tenant, from, to, *slack)
	if err == nil && *results {
		err = reconcileResults(ctx, js, rep, now.Add(-*settle))
	}
	if err != nil {
		return exitError{"could not reconcile: " + err.Error(), reconcileCannotRead}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printReport(stdout, rep)
	}
	if rep.Failed() {
		return exitError{"accounting does not match the events", reconcileGap}
	}
	return nil
}

// reconcileResults checks that every final result in the results KV of an execution that
// finished in the report's range (and before settled) has an event in the stream. The bucket
// is read from its stream, the latest revision of each key counting.
func reconcileResults(ctx context.Context, js jetstream.JetStream, rep *ReconcileReport, settled time.Time) error {
	rep.Unpublished, rep.GivenUp = []string{}, []string{}
	to := rep.To
	if settled.Before(to) {
		to = settled
	}
	rep.Settle = to
	finished := map[string]bool{} // execution id -> final, finished in range, of the tenant
	givenUp := map[string]bool{}  // the same, never started
	prefix := "$KV." + schemas.BucketResults + "."
	err := readStream(ctx, js, "KV_"+schemas.BucketResults, []string{prefix + ">"},
		streamStart{policy: jetstream.DeliverLastPerSubjectPolicy}, func(m jetstream.Msg) error {
			id := strings.TrimPrefix(m.Subject(), prefix)
			if op := m.Headers().Get("KV-Operation"); op == "DEL" || op == "PURGE" {
				delete(finished, id)
				delete(givenUp, id)
				return nil
			}
			var res schemas.Result
			if json.Unmarshal(m.Data(), &res) != nil {
				delete(finished, id)
				delete(givenUp, id)
				return nil
			}
			f := res.FinishedAt
			in := res.Status.Final() && f != nil && (rep.TenantID == "" || res.TenantID == rep.TenantID)
			if in {
				t := f.UTC().Truncate(time.Microsecond)
				in = !t.Before(rep.From) && t.Before(to)
			}
			if in && res.StartedAt == nil {
				givenUp[id] = true
				delete(finished, id)
			} else if in {
				finished[id] = true
				delete(givenUp, id)
			} else {
				delete(givenUp, id)
				delete(finished, id) // a later revision decides
			}
			return nil
		})
	if err != nil {
		return err
	}
	rep.ResultsChecked = true
	rep.Results = len(finished)
	for id := range finished {
		if !rep.eventIDs[id] {
			rep.Unpublished = append(rep.Unpublished, id)
		}
	}
	slices.Sort(rep.Unpublished)
	rep.GivenUp = append(rep.GivenUp, slices.Sorted(maps.Keys(givenUp))...)
	return nil
}

func reconcile(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, tenant string, from, to time.Time, slack time.Duration) (*ReconcileReport, error) {
	rep := &ReconcileReport{From: from, To: to, TenantID: tenant, Missing: []string{}, Duplicates: []string{}, Unexpected: []string{}, Unpublished: []string{}}
	// The events first: what accounting should hold. Anything published later is not counted.
	tenantTok := "*"
	if tenant != "" {
		tenantTok = tenant
	}
	start := from.Add(-slack)
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"wasmwiz.events.execution.*." + tenantTok},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy, OptStartTime: &start,
	}
	info, err := js.Stream(ctx, schemas.StreamEvents)
	if err != nil {
		return nil, fmt.Errorf("events stream: %w", err)
	}
	// The stream covers the range when it never dropped a message or still holds the start.
	st := info.CachedInfo().State
	rep.StreamCovers = st.FirstSeq <= 1 || !st.FirstTime.After(start)
	if c, err := js.Consumer(ctx, schemas.StreamEvents, schemas.ConsumerAccounting); err == nil {
		if ci, err := c.Info(ctx); err == nil {
			rep.Backlog = ci.NumPending + uint64(ci.NumAckPending)
		}
	}
	events := map[string]int{}
	err = readEvents(ctx, js, cfg, func(m jetstream.Msg) error {
		var ev schemas.Event
		if json.Unmarshal(m.Data(), &ev) != nil || ev.Execution == nil || ev.Execution.ExecutionID == "" {
			return nil // accounting cannot store it either; it terminates such events
		}
		finished := ev.Execution.FinishedAt
		if finished.IsZero() {
			finished = ev.Time
		}
		finished = finished.UTC().Truncate(time.Microsecond) // as stored
		if finished.Before(from) || !finished.Before(to) {
			return nil
		}
		rep.Events++
		events[ev.Execution.ExecutionID]++
		return nil
	})
	if err != nil {
		return nil, err
	}
	rep.EventExecutions = len(events)
	rep.eventIDs = map[string]bool{}
	for id := range events {
		rep.eventIDs[id] = true
	}

	// Then what accounting stored, page by page. Each page is a snapshot of its own, so rows
	// stored between pages (accounting goes on under load) make the count disagree with the
	// ids listed: then the listing is read again.
	var stored map[string]int
	var listed int64
	for try := 1; ; try++ {
		if stored, err = storedExecutions(ctx, nc, rep, schemas.ReconcileRequest{TenantID: tenant, From: from, To: to}); err != nil {
			return nil, err
		}
		listed = 0
		for _, n := range stored {
			listed += int64(n)
		}
		if listed == rep.Stored || try == 5 {
			break
		}
	}
	if rep.RollupMismatches == nil {
		rep.RollupMismatches = []schemas.RollupMismatch{}
	}
	for id := range events {
		if stored[id] == 0 {
			rep.Missing = append(rep.Missing, id)
		}
	}
	for id, n := range stored {
		if n > 1 {
			rep.Duplicates = append(rep.Duplicates, id)
		}
		if events[id] == 0 {
			rep.Unexpected = append(rep.Unexpected, id)
		}
	}
	if listed != rep.Stored {
		// The count and the listed ids disagree: rows were added during the run, or the count
		// holds rows that the listing does not.
		return nil, fmt.Errorf("accounting counted %d rows but listed %d; run again when no executions finish in the range", rep.Stored, listed)
	}
	slices.Sort(rep.Missing)
	slices.Sort(rep.Duplicates)
	slices.Sort(rep.Unexpected)
	return rep, nil
}

// storedExecutions lists the executions accounting stored for req's range, counting each id's
// rows, and sets rep's Stored and RollupMismatches from the first page.
func storedExecutions(ctx context.Context, nc *nats.Conn, rep *ReconcileReport, req schemas.ReconcileRequest) (map[string]int, error) {
	stored := map[string]int{}
	for page := 0; ; page++ {
		var resp schemas.ReconcileResponse
		if err := accountingCall(ctx, nc, schemas.OpReconcile, req, &resp); err != nil {
			return nil, err
		}
		if page == 0 {
			rep.Stored = resp.Count
			rep.RollupMismatches = resp.RollupMismatches
		}
		for _, id := range resp.ExecutionIDs {
			stored[id]++
		}
		if resp.Next == "" {
			return stored, nil
		}
		req.After = resp.Next
	}
}

// accountingCall sends a request to an accounting micro endpoint and decodes the answer.
func accountingCall(ctx context.Context, nc *nats.Conn, op string, req, resp any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	msg, err := nc.RequestWithContext(rctx, schemas.AccountingSubject(op), body)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return fmt.Errorf("no accounting replica answers on %s: is accounting running?", schemas.AccountingSubject(op))
		}
		return fmt.Errorf("accounting %s: %w", op, err)
	}
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		return fmt.Errorf("accounting %s: %s %s", op, code, msg.Header.Get(micro.ErrorHeader))
	}
	return json.Unmarshal(msg.Data, resp)
}

func printReport(w io.Writer, r *ReconcileReport) {
	scope := "all tenants"
	if r.TenantID != "" {
		scope = "tenant " + r.TenantID
	}
	fmt.Fprintf(w, "range        %s .. %s (%s, by finish time)\n", r.From.Format(time.RFC3339Nano), r.To.Format(time.RFC3339Nano), scope)
	fmt.Fprintf(w, "events       %d execution events, %d distinct executions\n", r.Events, r.EventExecutions)
	fmt.Fprintf(w, "stored       %d usage rows\n", r.Stored)
	late := ""
	if len(r.Missing) > 0 && r.Backlog > 0 {
		late = fmt.Sprintf(" (accounting had %d events not yet stored: run again once it has caught up)", r.Backlog)
	}
	fmt.Fprintf(w, "missing      %d%s\n", len(r.Missing), late)
	fmt.Fprintf(w, "duplicates   %d\n", len(r.Duplicates))
	note := ""
	if !r.StreamCovers {
		note = " (the events stream no longer holds the start of the range; not an error)"
	}
	fmt.Fprintf(w, "unexpected   %d%s\n", len(r.Unexpected), note)
	fmt.Fprintf(w, "rollup       %d mismatches\n", len(r.RollupMismatches))
	if r.ResultsChecked {
		fmt.Fprintf(w, "results      %d final results finished before %s, %d without an event (run, never billed)\n",
			r.Results, r.Settle.Format(time.RFC3339), len(r.Unpublished))
		if len(r.GivenUp) > 0 {
			fmt.Fprintf(w, "given up     %d executions never started (their requests are in the dead letters: wasmwiz dlq list)\n", len(r.GivenUp))
		}
	}
	list := func(what string, ids []string) {
		for i, id := range ids {
			if i == 20 {
				fmt.Fprintf(w, "  … %d more\n", len(ids)-20)
				return
			}
			fmt.Fprintf(w, "  %s %s\n", what, id)
		}
	}
	list("missing", r.Missing)
	list("duplicate", r.Duplicates)
	list("unexpected", r.Unexpected)
	list("unpublished", r.Unpublished)
	for _, m := range r.RollupMismatches {
		fmt.Fprintf(w, "  rollup %s %s: rollup %+v, raw %+v\n", m.TenantID, m.Day, m.Rollup, m.Raw)
	}
	if r.Failed() {
		fmt.Fprintln(w, "result       MISMATCH")
	} else {
		fmt.Fprintln(w, "result       ok")
	}
}

// ceilMicro rounds t up to a microsecond, in UTC, as accounting does with a range's ends.
func ceilMicro(t time.Time) time.Time {
	t = t.UTC()
	if u := t.Truncate(time.Microsecond); !u.Equal(t) {
		return u.Add(time.Microsecond)
	}
	return t
}
