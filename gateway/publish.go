package gateway

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// publishRetryFor bounds how long an execution request's publish is tried again while
// JetStream cannot take it: a stream whose leader died elects another within a few seconds, and
// a client whose request waits that long gets its answer rather than a 503. Half of the
// request's own wait bounds it too, so that the execution keeps time to run.
const publishRetryFor = 10 * time.Second

// publishExecMsg publishes an execution request, trying again with backoff while JetStream
// answers "no responders", "temporarily unavailable" or nothing at all (a stream electing a
// leader), until until. A try that timed out may have been stored, so the tries after it carry
// the execution id as Nats-Msg-Id (the stream's duplicate window keeps one copy) and no
// "new execution" mark (an executor given a copy anyway looks for the result first).
//
// When it gives up and a try timed out, the message may yet be stored: a stream leader that lost
// its quorum keeps the proposal and commits it once its peers are back (the fault suite's
// "quorum" fault ran 9 executions whose requests had been refused). The error is then an
// *unconfirmedError: not a refusal, but an answer that says the execution may still run.
func (g *Server) publishExecMsg(ctx context.Context, msg *nats.Msg, id string, until time.Time) error {
	if u := time.Now().Add(publishRetryFor); u.Before(until) {
		until = u
	}
	until = rideOutUntil(ctx, until)
	delay := 50 * time.Millisecond
	maybeStored := false
	for try := 1; ; try++ {
		actx, cancel := context.WithTimeout(ctx, min(2*time.Second, max(time.Until(until), 100*time.Millisecond)))
		// One request per try (the client library would try again on "no responders" itself,
		// and a try cut short in its wait would look like one that went unanswered).
		_, err := g.js.PublishMsg(actx, msg, jetstream.WithRetryAttempts(0))
		cancel()
		if err != nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || inProcess(err)) {
			maybeStored = true
		}
		if err == nil || !retryablePublish(err) || ctx.Err() != nil || time.Now().Add(delay).After(until) {
			if err != nil && try > 1 {
				g.log.Warn("execution queue: publish failed after retries", "execution_id", id, "tries", try, "maybe_stored", maybeStored, "err", err)
			}
			if err != nil && maybeStored {
				return &unconfirmedError{id: id, err: err}
			}
			return err
		}
		if !errors.Is(err, jetstream.ErrNoStreamResponse) && msg.Header.Get(schemas.HeaderMsgID) == "" {
			msg.Header.Set(schemas.HeaderMsgID, id)
			msg.Header.Del(schemas.HeaderNewExecution)
		}
		if try == 1 {
			g.log.Info("execution queue unavailable; retrying the publish", "execution_id", id, "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, time.Second)
	}
}

// unconfirmedError is a publish of execution id that JetStream neither took nor refused in time:
// it may have been stored, and then runs. With queued, the queue took it (it runs) but its
// queued record could not be stored, so it could not be looked up: a 202 would be followed by
// 404s (the quorum fault's load saw one).
type unconfirmedError struct {
	id     string
	err    error
	queued bool
}

func (e *unconfirmedError) Error() string {
	if e.queued {
		return "execution " + e.id + " queued but not recorded: " + e.err.Error()
	}
	return "execution " + e.id + " not confirmed by the queue: " + e.err.Error()
}
func (e *unconfirmedError) Unwrap() error { return e.err }

// retryablePublish reports whether a publish failed because JetStream could not take it for
// the moment, rather than because it refused the message.
func retryablePublish(err error) bool {
	var apiErr *jetstream.APIError
	if isInFlightRefusal(err) { // a 503 from the server, but the in-flight cap's refusal: final
		return false
	}
	return errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		(errors.As(err, &apiErr) && apiErr.Code == 503) || inProcess(err)
}

// errCodeDuplicateInProcess is JetStream's "duplicate message id is in process" (409): a message
// with this Nats-Msg-Id was proposed and not yet committed, as when a try timed out at a leader
// that lost its quorum. It is not a refusal: the message is committed (and the next try answered
// as a duplicate) or dropped with that leader (and the next try stores it).
const errCodeDuplicateInProcess = 10158

func inProcess(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeDuplicateInProcess
}

// isInFlightRefusal reports whether the execution stream refused a publish because the tenant
// has its tier's in-flight cap of requests queued or running (DiscardNewPerSubject).
func isInFlightRefusal(err error) bool {
	return err != nil && strings.Contains(err.Error(), "maximum messages per subject exceeded")
}

// storeRetryFor bounds how long a read or write of a bucket (idempotency records, results) is
// tried again while its stream has no leader, as publishRetryFor does for the queue.
const storeRetryFor = 10 * time.Second

// rideOut runs op until it succeeds, fails for a reason other than JetStream being unable to
// answer for the moment (retryablePublish: no responders, a timeout, 503 "temporarily
// unavailable" while a stream elects a leader), or until passes; each try gets at most 2 s.
// A bucket's leader dying made the gateway answer 503 for the 5–6 s of the election (159
// retried answers in a fault run) although the queue itself rode it out.
//
// An execution request's steps share one budget (withRideOutBudget): each step had a bound of its
// own, and a request whose steps waited in turn (idempotency record, rate limiter, module, queue,
// queued record) went unanswered for more than 15 s while two NATS servers of three were down.
func (g *Server) rideOut(ctx context.Context, what string, until time.Time, op func(context.Context) error) error {
	until = rideOutUntil(ctx, until)
	delay := 50 * time.Millisecond
	for try := 1; ; try++ {
		actx, cancel := context.WithTimeout(ctx, min(2*time.Second, max(time.Until(until), 100*time.Millisecond)))
		err := op(actx)
		cancel()
		if err == nil || !retryablePublish(err) || ctx.Err() != nil || time.Now().Add(delay).After(until) {
			if err != nil && try > 1 && retryablePublish(err) {
				g.log.Warn(what+": still unavailable after retries", "tries", try, "err", err)
			}
			return err
		}
		if try == 1 {
			g.log.Info(what+" unavailable; retrying", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, time.Second)
	}
}

type rideOutBudgetKey struct{}

// withRideOutBudget bounds every ride-out under ctx at until: the steps of one request share it.
func withRideOutBudget(ctx context.Context, until time.Time) context.Context {
	return context.WithValue(ctx, rideOutBudgetKey{}, until)
}

// rideOutUntil is until, or ctx's budget if that ends first. A step that starts after the
// budget still makes one short try.
func rideOutUntil(ctx context.Context, until time.Time) time.Time {
	if b, ok := ctx.Value(rideOutBudgetKey{}).(time.Time); ok && b.Before(until) {
		return b
	}
	return until
}
