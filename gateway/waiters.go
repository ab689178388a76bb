package gateway

import (
	"sync"

	"github.com/nats-io/nats.go"
)

// waiters routes executor replies to the requests waiting for them. One wildcard subscription
// per gateway (<prefix>.*) serves every execution; the last token is the execution id.
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
