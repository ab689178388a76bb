package history

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// Batches stores the history records a process publishes, those of one tenant and minute (one
// history subject) together: the records that come while a message of their subject is on its
// way wait for it and then go in one message (BatchMsgs). A node ending many executions of a
// tenant at once, or a gateway recording many queued ones, stores a record each with fewer
// publishes and stream writes; one recording one at a time publishes each at once (Msg), as
// before. A record's Pending says when its message is stored, so that a caller that must not go
// on before (the executor acks a request only once its history is stored: a crash before the
// ack is repaired by a redelivery, which records it again, and the copy is merged when listed)
// still knows. The zero value is ready to use.
type Batches struct {
	mu       sync.Mutex
	subjects map[string]*queue
}

// queue is one subject's records waiting for the message on its way.
type queue struct {
	tenant string
	next   *Pending // the records to go with the next message; nil when none wait
}

// Pending is the records that go in one message, and once it is stored (or refused), err.
type Pending struct {
	recs []*schemas.ExecutionSummary
	done chan struct{}
	err  error
}

// publishTimeout bounds one message's publish.
const publishTimeout = 10 * time.Second

// Record queues s, an execution of tenant, for its subject's next message, and publishes it
// through js at once when no message of the subject is on its way.
func (h *Batches) Record(js jetstream.JetStream, tenant string, s *schemas.ExecutionSummary) *Pending {
	subject := schemas.HistorySubject(tenant, s.CreatedAt)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.subjects == nil {
		h.subjects = map[string]*queue{}
	}
	q, busy := h.subjects[subject]
	if !busy {
		q = &queue{tenant: tenant}
		h.subjects[subject] = q
	}
	if q.next == nil {
		q.next = &Pending{done: make(chan struct{})}
	}
	p := q.next
	p.recs = append(p.recs, s)
	if !busy {
		go h.publish(js, subject, q)
	}
	return p
}

// publish sends subject's waiting records, a message per batch, until none wait.
func (h *Batches) publish(js jetstream.JetStream, subject string, q *queue) {
	for {
		h.mu.Lock()
		p := q.next
		if p == nil {
			delete(h.subjects, subject)
			h.mu.Unlock()
			return
		}
		q.next = nil
		h.mu.Unlock()
		p.err = publishRecords(js, q.tenant, subject, p.recs)
		close(p.done)
	}
}

// publishRecords stores recs: a record alone as Msg makes it (its Nats-Msg-Id drops a copy a
// redelivery publishes within the duplicate window), several as BatchMsgs does, one message
// after another.
func publishRecords(js jetstream.JetStream, tenant, subject string, recs []*schemas.ExecutionSummary) error {
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	var msgs []*nats.Msg
	var err error
	if len(recs) == 1 {
		var m *nats.Msg
		m, err = Msg(tenant, recs[0])
		msgs = []*nats.Msg{m}
	} else {
		msgs, err = BatchMsgs(subject, recs)
	}
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if _, err := js.PublishMsg(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

// Wait waits until p's message is stored (nil) or refused, or ctx ends.
func (p *Pending) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return ctx.Err()
	}
}
