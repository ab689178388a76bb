package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmwiz/wasmwiz/schemas"
)

const eventsUsage = "usage: wasmwiz events tail [--type T]... [--tenant ID]... [--since-seq N | --since TIME] [--follow=false] [--context NAME | --nats-url URL]"

// listFlag is a repeatable, comma-separated string flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error {
	for v := range strings.SplitSeq(s, ",") {
		if v = strings.TrimSpace(v); v != "" && !slices.Contains(*l, v) {
			*l = append(*l, v)
		}
	}
	return nil
}

// runEvents is the audit subscriber, straight on the events stream (an operator command: it
// reads every tenant's events, as far as its NATS credentials allow).
//
//	wasmwiz events tail [--type execution.completed] [--tenant acme] [--since-seq N | --since 1h]
//
// prints one JSON object per line: the event with its stream sequence added as "stream_seq"
// (resume with --since-seq <stream_seq + 1>).
func runEvents(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "tail" {
		return usageError{eventsUsage}
	}
	fs := newFlagSet("events tail", getenv, stderr)
	conn := opsNATSFlags(fs)
	var types, tenants listFlag
	fs.Var(&types, "type", "only events of this type, e.g. execution.completed or execution.* (repeatable, comma separated)")
	fs.Var(&tenants, "tenant", "only this tenant's events (repeatable, comma separated)")
	sinceSeq := fs.Uint64("since-seq", 0, "start at this stream sequence")
	since := fs.String("since", "", "start at this time: RFC 3339, or a duration ago such as 1h")
	follow := fs.Bool("follow", true, "keep printing new events; with --follow=false stop at the end of the stream")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{eventsUsage}
	}
	filters, err := eventFilters(types, tenants)
	if err != nil {
		return err
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: filters, DeliverPolicy: jetstream.DeliverNewPolicy}
	switch {
	case *sinceSeq > 0 && *since != "":
		return usageError{"give --since-seq or --since, not both"}
	case *sinceSeq > 0:
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, *sinceSeq
	case *since != "":
		t, err := parseSince(*since, time.Now())
		if err != nil {
			return err
		}
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
	case !*follow:
		cfg.DeliverPolicy = jetstream.DeliverAllPolicy // nothing new would ever end the command
	}
	nc, js, err := connectJetStream(conn, "wasmwiz-events-tail")
	if err != nil {
		return err
	}
	defer nc.Close()
	var line bytes.Buffer
	var last uint64 // the last stream sequence printed
	print := func(m jetstream.Msg) error {
		md, err := m.Metadata()
		if err != nil {
			return nil
		}
		last = md.Sequence.Stream
		line.Reset()
		if err := eventLine(&line, md.Sequence.Stream, m.Data()); err != nil {
			fmt.Fprintf(stderr, "wasmwiz events tail: skipping stream sequence %d on %s: %v\n", md.Sequence.Stream, m.Subject(), err)
			return nil
		}
		_, err = stdout.Write(line.Bytes())
		return err
	}
	if !*follow {
		return readEvents(ctx, js, cfg, print)
	}
	// Following: a consumer lost to a leader change or a server leaving is made again after
	// the last event printed, so nothing is skipped or printed twice.
	delay := 100 * time.Millisecond
	for {
		before := last
		c := cfg
		if last > 0 {
			c.DeliverPolicy, c.OptStartSeq, c.OptStartTime = jetstream.DeliverByStartSequencePolicy, last+1, nil
		}
		err := followEvents(ctx, js, c, print)
		if ctx.Err() != nil {
			return nil
		}
		var fe fnError
		if errors.As(err, &fe) {
			return fe.err
		}
		if nc.IsClosed() { // refused (opsNATS.connect): nothing to read on with
			return err
		}
		if last != before {
			delay = 100 * time.Millisecond
		}
		fmt.Fprintf(stderr, "wasmwiz events tail: %v; reading on after stream sequence %d in %v\n", err, last, delay)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
			delay = min(2*delay, 5*time.Second)
		}
	}
}

// followEvents prints events as they come until an error (or ctx ends).
func followEvents(ctx context.Context, js jetstream.JetStream, cfg jetstream.OrderedConsumerConfig, print func(jetstream.Msg) error) error {
	cons, err := js.OrderedConsumer(ctx, schemas.StreamEvents, cfg)
	if err != nil {
		return fmt.Errorf("events stream: %w", err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("events stream: %w", err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	for {
		m, err := it.Next()
		if err != nil {
			return fmt.Errorf("events stream: %w", err)
		}
		if err := print(m); err != nil {
			return fnError{err}
		}
	}
}

var typePatternRE = regexp.MustCompile(`^[a-z]+\.\*$`)

// eventFilters turns --type and --tenant into the consumer's filter subjects (types × tenants).
func eventFilters(types, tenants []string) ([]string, error) {
	if len(types) == 0 {
		types = []string{"*.*"}
	}
	if len(tenants) == 0 {
		tenants = []string{"*"}
	} else {
		for _, t := range tenants {
			if !schemas.ValidToken(t) {
				return nil, usageError{fmt.Sprintf("--tenant %q is not a tenant id", t)}
			}
		}
	}
	for _, t := range types {
		if t != "*.*" && !schemas.KnownEventType(t) && !typePatternRE.MatchString(t) {
			return nil, usageError{fmt.Sprintf("--type %q is not an event type (execution.completed, execution.failed, module.uploaded, module.deleted, key.created, key.revoked, tenant.created, tenant.updated, ratelimit.rejected) or a pattern such as execution.*", t)}
		}
	}
	var out []string
	for _, typ := range types {
		for _, tenant := range tenants {
			out = append(out, schemas.EventSubject(typ, tenant))
		}
	}
	return out, nil
}

// eventLine writes an event as one JSON line with "stream_seq" first.
func eventLine(w *bytes.Buffer, seq uint64, data []byte) error {
	var compact bytes.Buffer
	if err := json.Compact(&compact, data); err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	b := compact.Bytes()
	if len(b) < 2 || b[0] != '{' {
		return errors.New("not a JSON object")
	}
	fmt.Fprintf(w, `{"stream_seq":%d`, seq)
	if len(b) > 2 {
		w.WriteByte(',')
	}
	w.Write(b[1:])
	w.WriteByte('\n')
	return nil
}

// parseSince reads an RFC 3339 time, a date (its UTC midnight) or a duration before now.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	if t, err := parseTime(s); err == nil {
		return t, nil
	}
	return time.Time{}, usageError{fmt.Sprintf("--since %q: want an RFC 3339 time, a date or a duration such as 1h", s)}
}

// parseTime reads an RFC 3339 time or a date YYYY-MM-DD (its UTC midnight).
func parseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Parse(time.DateOnly, s)
}

func connectJetStream(conn *opsNATS, name string) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := conn.connect(name)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// readEvents reads the matching events from cfg's start up to the end of the events stream as
// it was when the read began, then returns (see readStream).
func readEvents(ctx context.Context, js jetstream.JetStream, cfg jetstream.OrderedConsumerConfig, fn func(jetstream.Msg) error) error {
	start := streamStart{policy: cfg.DeliverPolicy, seq: cfg.OptStartSeq, time: cfg.OptStartTime}
	return readStream(ctx, js, schemas.StreamEvents, cfg.FilterSubjects, start, fn)
}

// streamStart is where a read begins: a deliver policy and its sequence or time.
type streamStart struct {
	policy jetstream.DeliverPolicy
	seq    uint64
	time   *time.Time
}

// readPatience is how long readStream keeps trying without reading anything before it gives up.
const readPatience = time.Minute

// readStream reads the messages of stream matching filters, from start up to the stream's last
// message when the read began, and returns. On a cluster a read meets leader elections, a
// consumer lost with its server, "no responders" for a moment: every such failure is retried
// with backoff from a fresh consumer that starts after the last message read, so nothing is
// read twice or skipped. It gives up (an error) after readPatience without progress.
func readStream(ctx context.Context, js jetstream.JetStream, stream string, filters []string, start streamStart, fn func(jetstream.Msg) error) error {
	var (
		end     uint64 // the stream's last sequence when the read began
		last    uint64 // the last sequence handed to fn
		lastErr error
		tried   = time.Now()
		delay   = 100 * time.Millisecond
	)
	for {
		done, progressed, err := readStreamOnce(ctx, js, stream, filters, start, &end, &last, fn)
		if done || (err != nil && errors.Is(err, errStop)) {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var fnErr fnError
		if errors.As(err, &fnErr) {
			return fnErr.err
		}
		if progressed {
			tried, delay = time.Now(), 100*time.Millisecond
		}
		if err != nil {
			lastErr = err
		}
		if js.Conn().IsClosed() { // refused (opsNATS.connect): no retry can read on
			return lastErr
		}
		if time.Since(tried) > readPatience {
			return fmt.Errorf("%s stream: no progress for %v (read up to sequence %d of %d): %w", stream, readPatience, last, end, lastErr)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
			delay = min(2*delay, 2*time.Second)
		}
	}
}

// errStop ends a read early without an error.
var errStop = errors.New("stop")

// fnError is an error of readStream's fn: it ends the read as it is.
type fnError struct{ err error }

func (e fnError) Error() string { return e.err.Error() }

// readStreamOnce reads with one consumer until the end (done), an error, or a pull that
// brings nothing although messages remain (a stalled consumer: err nil, done false).
func readStreamOnce(ctx context.Context, js jetstream.JetStream, stream string, filters []string, start streamStart,
	end, last *uint64, fn func(jetstream.Msg) error) (done, progressed bool, err error) {
	if *end == 0 {
		info, err := js.Stream(ctx, stream)
		if err != nil {
			return false, false, fmt.Errorf("%s stream: %w", stream, err)
		}
		if *end = info.CachedInfo().State.LastSeq; *end == 0 {
			return true, false, nil // empty
		}
	}
	cfg := jetstream.ConsumerConfig{
		AckPolicy:         jetstream.AckNonePolicy,
		FilterSubjects:    filters,
		DeliverPolicy:     start.policy,
		OptStartSeq:       start.seq,
		OptStartTime:      start.time,
		InactiveThreshold: time.Minute,
		MemoryStorage:     true,
		Replicas:          1,
	}
	if *last > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = jetstream.DeliverByStartSequencePolicy, *last+1, nil
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	cons, err := js.CreateConsumer(cctx, stream, cfg)
	cancel()
	if err != nil {
		return false, false, fmt.Errorf("%s stream: consumer: %w", stream, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_ = js.DeleteConsumer(dctx, stream, cons.CachedInfo().Name)
		cancel()
	}()
	if ci := cons.CachedInfo(); ci.NumPending == 0 || (*last >= *end) {
		return true, false, nil // nothing (more) matches
	}
	for {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return false, progressed, fmt.Errorf("%s stream: %w", stream, err)
		}
		n := 0
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			if md.Sequence.Stream <= *last {
				continue // already read (cannot happen with a fresh consumer; cheap to be sure)
			}
			if md.Sequence.Stream > *end {
				return true, progressed, nil // published after the read began
			}
			n++
			if err := fn(m); err != nil {
				if errors.Is(err, errStop) {
					return true, true, nil
				}
				return false, progressed, fnError{err}
			}
			*last, progressed = md.Sequence.Stream, true
			if md.NumPending == 0 || *last >= *end {
				return true, true, ctx.Err()
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) {
			return false, progressed, fmt.Errorf("%s stream: %w", stream, err)
		}
		if n == 0 {
			// Messages remain (NumPending said so) but none came: a stalled consumer, e.g. its
			// server left the cluster. The caller starts another after the last one read.
			return false, progressed, fmt.Errorf("%s stream: a pull brought nothing before sequence %d", stream, *end)
		}
	}
}
