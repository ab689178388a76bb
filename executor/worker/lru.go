package worker

import (
	"container/list"
	"context"

	"github.com/tetratelabs/wazero"
)

// compiledKey names a compiled module: its hash and the memory limit it was decoded under.
type compiledKey struct {
	hash  string
	pages uint32
}

type compiledEntry struct {
	key compiledKey
	cm  wazero.CompiledModule
}

// compiledLRU keeps the most recently used compiled modules, so a warm execution neither reads
// nor compiles its module. Evicted modules are closed, which frees their machine code once no
// other runtime refers to it. Not safe for concurrent use: a worker runs one job at a time.
type compiledLRU struct {
	max   int
	items map[compiledKey]*list.Element
	order *list.List // front = most recent
}

func newCompiledLRU(max int) *compiledLRU {
	return &compiledLRU{max: max, items: map[compiledKey]*list.Element{}, order: list.New()}
}

func (c *compiledLRU) get(k compiledKey) (wazero.CompiledModule, bool) {
	e, ok := c.items[k]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*compiledEntry).cm, true
}

func (c *compiledLRU) put(ctx context.Context, k compiledKey, cm wazero.CompiledModule) {
	if e, ok := c.items[k]; ok {
		old := e.Value.(*compiledEntry)
		if old.cm != cm {
			_ = old.cm.Close(ctx)
		}
		old.cm = cm
		c.order.MoveToFront(e)
		return
	}
	c.items[k] = c.order.PushFront(&compiledEntry{key: k, cm: cm})
	for c.order.Len() > c.max {
		c.remove(ctx, c.order.Back())
	}
}

func (c *compiledLRU) remove(ctx context.Context, e *list.Element) {
	ent := e.Value.(*compiledEntry)
	c.order.Remove(e)
	delete(c.items, ent.key)
	_ = ent.cm.Close(ctx)
}

// removePages drops every module compiled under a memory limit (its runtime is going away).
func (c *compiledLRU) removePages(ctx context.Context, pages uint32) {
	for e := c.order.Front(); e != nil; {
		next := e.Next()
		if e.Value.(*compiledEntry).key.pages == pages {
			c.remove(ctx, e)
		}
		e = next
	}
}

func (c *compiledLRU) closeAll(ctx context.Context) {
	for c.order.Len() > 0 {
		c.remove(ctx, c.order.Back())
	}
}

func (c *compiledLRU) len() int { return c.order.Len() }
