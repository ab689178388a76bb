package storetest

import (
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
)

// NewProxiedSchema is NewSchema reached through a Proxy: the URL to open and the proxy that
// can take the database "down". It skips the test when the URL has no host to proxy.
func NewProxiedSchema(tb testing.TB) (string, *Proxy) {
	tb.Helper()
	dbURL := NewSchema(tb)
	u, err := url.Parse(dbURL)
	if err != nil || u.Host == "" {
		tb.Skipf("cannot proxy database url %q", dbURL)
	}
	p := newProxy(tb, u.Host)
	u.Host = p.ln.Addr().String()
	return u.String(), p
}

// Proxy is a TCP proxy that can cut every connection and refuse new ones, which to a client
// looks like a database server going down and coming back.
type Proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]bool
}

func newProxy(t testing.TB, target string) *Proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { ln.Close(); p.SetDown(true) })
	go p.serve()
	return p
}

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[u] = true, true
		p.mu.Unlock()
		go func() { io.Copy(u, c); u.Close(); c.Close() }()
		go func() { io.Copy(c, u); u.Close(); c.Close() }()
	}
}

// SetDown cuts every connection and refuses new ones (true), or lets them through again.
func (p *Proxy) SetDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		for c := range p.conns {
			c.Close()
		}
		clear(p.conns)
	}
}
