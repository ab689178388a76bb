// Package history records and lists executions per tenant, newest first, in the JetStream
// stream schemas.StreamHistory: one small record (schemas.ExecutionSummary) per execution and
// state, on a subject per tenant and minute of creation (a message holds one record, or several
// recorded at once: Batches). The gateway records an execution when
// it is queued, the executor when it ends; a listing reads the tenant's minute subjects from the
// newest down and merges the records of each execution (RATIONALE.md, "Why is the execution
// history a stream of minute subjects?").
package history

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// Msg is the history record of s, an execution of tenant. Its Nats-Msg-Id (id and status) lets
// the stream drop a copy published again by a redelivery within its duplicate window.
func Msg(tenant string, s *schemas.ExecutionSummary) (*nats.Msg, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	m := nats.NewMsg(schemas.HistorySubject(tenant, s.CreatedAt))
	m.Data = b
	m.Header.Set(schemas.HeaderMsgID, s.ID+":"+string(s.Status))
	return m, nil
}

// maxRecordsBytes bounds one message of records (~300 bytes each, more with a long error or
// module name): the records past it go in the next message, one message after another, so a
// batch never nears the server's max_payload.
const maxRecordsBytes = 128 << 10

// BatchMsgs is the records recs, all on subject (one tenant's minute: schemas.HistorySubject),
// in messages each holding a JSON array of at most maxRecordsBytes (a record larger than that
// alone), so that none nears the server's max_payload. A process that ends several executions
// of a tenant at once records them together (Batches). They carry no Nats-Msg-Id: a record
// stored again by a redelivery is merged with its copy when listed.
func BatchMsgs(subject string, recs []*schemas.ExecutionSummary) ([]*nats.Msg, error) {
	var msgs []*nats.Msg
	data := []byte{'['}
	flush := func() {
		m := nats.NewMsg(subject)
		m.Data = append(data, ']')
		msgs = append(msgs, m)
		data = []byte{'['}
	}
	for _, s := range recs {
		b, err := json.Marshal(s)
		if err != nil {
			return nil, err
		}
		if len(data) > 1 && len(data)+len(b)+2 > maxRecordsBytes {
			flush()
		}
		if len(data) > 1 {
			data = append(data, ',')
		}
		data = append(data, b...)
	}
	flush()
	return msgs, nil
}

// decode appends the records of one stored message, a record (Msg) or an array of them
// (BatchMsgs), to recs; what this version does not understand is skipped.
func decode(recs []*schemas.ExecutionSummary, data []byte) []*schemas.ExecutionSummary {
	if len(data) > 0 && data[0] == '[' {
		var batch []*schemas.ExecutionSummary
		if json.Unmarshal(data, &batch) != nil {
			return recs
		}
		for _, s := range batch {
			if s != nil && schemas.ValidExecutionID(s.ID) {
				recs = append(recs, s)
			}
		}
		return recs
	}
	var s schemas.ExecutionSummary
	if json.Unmarshal(data, &s) != nil || !schemas.ValidExecutionID(s.ID) {
		return recs
	}
	return append(recs, &s)
}

// Publish records s and waits for the stream to store it.
func Publish(ctx context.Context, js jetstream.JetStream, tenant string, s *schemas.ExecutionSummary) error {
	m, err := Msg(tenant, s)
	if err != nil {
		return err
	}
	if _, err := js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("record history: %w", err)
	}
	return nil
}

// Query selects a page of a tenant's executions.
type Query struct {
	Statuses []schemas.Status // empty: any
	ModuleID string           // empty: any
	From, To time.Time        // created in [From, To); zero: unbounded
	Limit    int              // page size
	Cursor   *schemas.HistoryCursor
	// ScanBudget bounds the records one page reads (a filter that matches little makes a page
	// read many). When it is spent the page ends early, short or even empty, with a cursor that
	// goes on from there.
	ScanBudget int
}

// DefaultScanBudget is Query.ScanBudget when it is zero.
const DefaultScanBudget = 20_000

// Lister lists executions from the history stream. Results, when set, is read for the
// executions whose history says they have not ended, so a listing shows what they are doing now
// (and an execution whose end was not recorded is still shown as it ended).
type Lister struct {
	NC      *nats.Conn
	Stream  jetstream.Stream // schemas.StreamHistory
	Results jetstream.KeyValue
}

// List answers one page of q for tenant.
func (l *Lister) List(ctx context.Context, tenant string, q Query) (*schemas.ExecutionList, error) {
	if q.ScanBudget <= 0 {
		q.ScanBudget = DefaultScanBudget
	}
	info, err := l.Stream.Info(ctx, jetstream.WithSubjectFilter(schemas.HistorySubjectTenant(tenant)))
	if err != nil {
		return nil, fmt.Errorf("history stream info: %w", err)
	}
	type bucket struct {
		subject string
		minute  int64
		count   uint64
	}
	var buckets []bucket
	lo, hi := int64(0), int64(1<<62)
	if !q.From.IsZero() {
		lo = schemas.HistoryMinute(q.From)
	}
	if !q.To.IsZero() {
		hi = schemas.HistoryMinute(q.To)
	}
	if c := q.Cursor; c != nil {
		last := c.CreatedAt
		if c.ID == "" { // a minute's start: nothing of that minute is left
			last = last.Add(-time.Nanosecond)
		}
		hi = min(hi, schemas.HistoryMinute(last))
	}
	for subj, n := range info.State.Subjects {
		t, m, err := schemas.ParseHistorySubject(subj)
		if err != nil || t != tenant || m < lo || m > hi {
			continue
		}
		buckets = append(buckets, bucket{subj, m, n})
	}
	slices.SortFunc(buckets, func(a, b bucket) int { return cmp.Compare(b.minute, a.minute) })

	out := &schemas.ExecutionList{Executions: []schemas.ExecutionSummary{}}
	scanned := 0
	for i, b := range buckets {
		recs, err := l.readBucket(ctx, b.subject, b.count)
		if err != nil {
			return nil, err
		}
		scanned += len(recs)
		for _, s := range l.select_(ctx, merge(recs), q) {
			out.Executions = append(out.Executions, s)
			if len(out.Executions) > q.Limit {
				out.Executions = out.Executions[:q.Limit]
				last := out.Executions[q.Limit-1]
				out.NextCursor = schemas.HistoryCursor{CreatedAt: last.CreatedAt, ID: last.ID}.Encode()
				return out, nil
			}
		}
		if scanned >= q.ScanBudget && i < len(buckets)-1 {
			// Everything from this minute on has been looked at: go on from its start.
			out.NextCursor = schemas.HistoryCursor{CreatedAt: time.Unix(b.minute*60, 0).UTC()}.Encode()
			return out, nil
		}
	}
	return out, nil
}

// select_ keeps the executions of one minute that q asks for, newest first, with the ones
// whose history has not recorded an end brought up to date from the results.
func (l *Lister) select_(ctx context.Context, all []*schemas.ExecutionSummary, q Query) []schemas.ExecutionSummary {
	var out []schemas.ExecutionSummary
	for _, s := range all {
		switch {
		case q.Cursor != nil && !q.Cursor.Before(s.CreatedAt, s.ID):
			continue
		case !q.From.IsZero() && s.CreatedAt.Before(q.From):
			continue
		case !q.To.IsZero() && !s.CreatedAt.Before(q.To):
			continue
		case q.ModuleID != "" && s.ModuleID != q.ModuleID:
			continue
		}
		if !s.Status.Final() && l.Results != nil {
			l.refresh(ctx, s)
		}
		if len(q.Statuses) > 0 && !slices.Contains(q.Statuses, s.Status) {
			continue
		}
		out = append(out, *s)
	}
	return out
}

// refresh replaces s with what its result says, when the results bucket has one.
func (l *Lister) refresh(ctx context.Context, s *schemas.ExecutionSummary) {
	e, err := l.Results.Get(ctx, s.ID)
	if err != nil {
		return // expired, or not written yet (still queued): the history's record stands
	}
	var r schemas.Result
	if json.Unmarshal(e.Value(), &r) != nil || r.ID != s.ID {
		return
	}
	name := s.ModuleName
	*s = *schemas.SummaryOf(&r, name)
}

// rank orders the records of one execution: a final one beats running beats queued.
func rank(s schemas.Status) int {
	switch {
	case s.Final():
		return 2
	case s == schemas.StatusRunning:
		return 1
	}
	return 0
}

// merge folds the records of each execution into one (the most advanced; the module name from
// whichever has it) and sorts them newest first.
func merge(recs []*schemas.ExecutionSummary) []*schemas.ExecutionSummary {
	byID := make(map[string]*schemas.ExecutionSummary, len(recs))
	for _, r := range recs {
		prev, ok := byID[r.ID]
		if !ok {
			byID[r.ID] = r
			continue
		}
		if rank(r.Status) > rank(prev.Status) {
			if r.ModuleName == "" {
				r.ModuleName = prev.ModuleName
			}
			if r.KeyID == "" {
				r.KeyID = prev.KeyID
			}
			byID[r.ID] = r
		} else if prev.ModuleName == "" {
			prev.ModuleName = r.ModuleName
		}
	}
	out := make([]*schemas.ExecutionSummary, 0, len(byID))
	for _, s := range byID {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b *schemas.ExecutionSummary) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return cmp.Compare(b.ID, a.ID)
	})
	return out
}

// readBucket reads every record of one minute subject with batched direct gets. want is the
// count of messages the stream leader reported (a message holds one record or a batch); a
// replica that answers with fewer (it has not applied the latest writes yet) is asked again a
// few times before its answer is taken.
func (l *Lister) readBucket(ctx context.Context, subject string, want uint64) ([]*schemas.ExecutionSummary, error) {
	var recs []*schemas.ExecutionSummary
	var msgs uint64
	var err error
	for attempt := 0; attempt < 4; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Duration(attempt) * 20 * time.Millisecond):
			}
		}
		if recs, msgs, err = l.directBatch(ctx, subject, want); err != nil || msgs >= want {
			break
		}
	}
	return recs, err
}

// maxBatch is the most records one direct get asks for; maxBatchBytes the most bytes.
const (
	maxBatch      = 1000
	maxBatchBytes = 1 << 20
)

// directBatch reads the records on subject with the direct get API's batches (nats-server 2.11
// and later): each request answers up to maxBatch messages and an end-of-batch message that
// says how many more there are. msgs is how many messages held them.
func (l *Lister) directBatch(ctx context.Context, subject string, want uint64) (recs []*schemas.ExecutionSummary, msgs uint64, err error) {
	inbox := l.NC.NewRespInbox()
	sub, err := l.NC.SubscribeSync(inbox)
	if err != nil {
		return nil, 0, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	seq := uint64(0)
	for {
		req, _ := json.Marshal(map[string]any{
			"seq": seq, "next_by_subj": subject, "batch": min(max(want, 1)+8, maxBatch), "max_bytes": maxBatchBytes,
		})
		if err := l.NC.PublishRequest("$JS.API.DIRECT.GET."+schemas.StreamHistory, inbox, req); err != nil {
			return nil, 0, err
		}
		pending := uint64(0)
		for {
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			m, err := sub.NextMsgWithContext(rctx)
			cancel()
			if err != nil {
				return nil, 0, fmt.Errorf("history direct get: %w", err)
			}
			switch m.Header.Get("Status") {
			case "":
			case "404": // nothing (more) on the subject
				return recs, msgs, nil
			case "204": // end of batch
				pending, _ = strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64)
				if last, err := strconv.ParseUint(m.Header.Get("Nats-Last-Sequence"), 10, 64); err == nil && last > 0 {
					seq = last + 1
				}
			default:
				return nil, 0, fmt.Errorf("history direct get: status %s %s", m.Header.Get("Status"), m.Header.Get("Description"))
			}
			if m.Header.Get("Status") == "204" {
				break
			}
			msgs++
			recs = decode(recs, m.Data)
		}
		if pending == 0 || seq == 0 {
			return recs, msgs, nil
		}
	}
}

// QueryError is a list request ParseQuery refuses; its message is for the caller.
type QueryError struct{ Msg string }

func (e *QueryError) Error() string { return e.Msg }

func badQuery(format string, args ...any) error {
	return &QueryError{Msg: fmt.Sprintf(format, args...)}
}

// ParseQuery checks a list request (REST query or NATS body) and makes its Query.
func ParseQuery(r *schemas.ExecutionListRequest) (Query, error) {
	q := Query{ModuleID: r.ModuleID, Limit: r.Limit}
	switch {
	case q.Limit == 0:
		q.Limit = 20
	case q.Limit < 1 || q.Limit > 100:
		return q, badQuery("limit must be between 1 and 100")
	}
	if r.Status != "" {
		for _, s := range strings.FieldsFunc(r.Status, func(c rune) bool { return c == ',' }) {
			st := schemas.Status(s)
			if st != schemas.StatusQueued && st != schemas.StatusRunning && !st.Final() {
				return q, badQuery("unknown status %q (queued, running, succeeded, failed, timed_out, killed)", truncate(s, 32))
			}
			q.Statuses = append(q.Statuses, st)
		}
	}
	if r.ModuleID != "" {
		if _, err := schemas.ParseModuleID(r.ModuleID); err != nil {
			return q, badQuery("module_id is not a module id (sha256:<hex>)")
		}
	}
	var err error
	if q.From, err = parseTime("from", r.From); err != nil {
		return q, err
	}
	if q.To, err = parseTime("to", r.To); err != nil {
		return q, err
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.From.Before(q.To) {
		return q, badQuery("from must be before to")
	}
	if r.Cursor != "" {
		c, err := schemas.ParseHistoryCursor(r.Cursor)
		if err != nil {
			return q, badQuery("cursor is not one this API gave")
		}
		q.Cursor = &c
	}
	return q, nil
}

func parseTime(name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, badQuery("%s must be an RFC 3339 time such as 2026-12-01T00:00:00Z", name)
	}
	return t.UTC(), nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
