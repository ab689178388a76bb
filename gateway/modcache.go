package gateway

import (
	"sync"
	"time"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// moduleRefCache remembers, for a few seconds, that a tenant owns a module, so that executing
// an uploaded module does not cost a KV read per request. Only positive answers are kept; a
// delete through this gateway drops the entry at once, and a delete through another gateway is
// seen here within refTTL (until then an execution may still be accepted and fail at the
// executor with "module not found").
type moduleRefCache struct {
	mu sync.Mutex
	m  map[string]cachedRef
}

type cachedRef struct {
	mod     schemas.Module
	expires time.Time
}

const (
	refTTL        = 5 * time.Second
	maxCachedRefs = 50_000
)

func (c *moduleRefCache) get(key string) (*schemas.Module, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok || time.Now().After(e.expires) {
		return nil, false
	}
	m := e.mod
	return &m, true
}

func (c *moduleRefCache) put(key string, m *schemas.Module) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxCachedRefs {
		c.m = map[string]cachedRef{} // start over rather than track ages
	}
	c.m[key] = cachedRef{mod: *m, expires: time.Now().Add(refTTL)}
}

func (c *moduleRefCache) drop(key string) {
	c.mu.Lock()
	delete(c.m, key)
	c.mu.Unlock()
}
