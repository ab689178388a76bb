package gateway

import (
	"context"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
)

// waiters routes executor replies to the requests waiting for them. One wildcard subscription
// per gateway (<prefix>.*) serves every execution and every request to executors (request); the
// last token is the execution id, or the request's own.
type waiters struct {
	nc     *nats.Conn
	prefix string
	sub    *nats.Subscription

	mu sync.Mutex
	m  map[string][]chan *nats.Msg // several callers may wait for one id (same idempotency key)
}

func newWaiters(nc *nats.Conn, prefix string) *waiters {
	return &waiters{nc: nc, prefix: prefix, m: map[string][]chan *nats.Msg{}}
}

func (w *waiters) start() error {
	sub, err := w.nc.Subscribe(w.prefix+".*", func(msg *nats.Msg) {
		id := msg.Subject[len(w.prefix)+1:]
		w.mu.Lock()
		for _, ch := range w.m[id] {
			select {
			case ch <- msg:
			default: // a duplicate reply; the first one is enough
			}
		}
		w.mu.Unlock()
	})
	if err != nil {
		return err
	}
	sub.SetPendingLimits(-1, 256<<20)
	w.sub = sub
	return nil
}

func (w *waiters) stop() {
	if w.sub != nil {
		_ = w.sub.Unsubscribe()
	}
}

// subject is where an executor should reply for execution id.
func (w *waiters) subject(id string) string { return w.prefix + "." + id }

// add registers interest in id's reply; call the returned func when done waiting.
func (w *waiters) add(id string) (<-chan *nats.Msg, func()) {
	ch := make(chan *nats.Msg, 1)
	w.mu.Lock()
	w.m[id] = append(w.m[id], ch)
	w.mu.Unlock()
	return ch, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		list := w.m[id]
		for i, c := range list {
			if c == ch {
				list = append(list[:i], list[i+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(w.m, id)
		} else {
			w.m[id] = list
		}
	}
}

// request sends data to an executor subject and waits for the first answer, as
// nats.Conn.RequestWithContext does, but with the reply subject under the waiters' prefix
// (schemas.ExecutorReplyPrefix): the executor's NATS user may answer there and nowhere else of
// the gateway's. No subscriber is nats.ErrNoResponders.
func (w *waiters) request(ctx context.Context, subject string, data []byte) (*nats.Msg, error) {
	id := "req-" + nuid.Next()
	ch, done := w.add(id)
	defer done()
	if err := w.nc.PublishRequest(subject, w.subject(id), data); err != nil {
		return nil, err
	}
	select {
	case msg := <-ch:
		if len(msg.Data) == 0 && msg.Header.Get("Status") == "503" {
			return nil, nats.ErrNoResponders
		}
		return msg, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
