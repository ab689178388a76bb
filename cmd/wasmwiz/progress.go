package main

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// progress is the one line a long upload shows on a terminal: bytes sent, then the time the
// server has been compiling. It shows only after progressDelay (quick uploads print nothing)
// and erases itself at the end. A nil *progress does nothing: off a terminal there is none.
type progress struct {
	w     io.Writer
	label string
	after string // what the server does once it has the bytes ("compiling")
	total int64
	sent  atomic.Int64
	start time.Time
	stop  chan struct{}
	done  sync.WaitGroup
}

const progressDelay = 500 * time.Millisecond

// startProgress starts the line on w, if w is a terminal.
func startProgress(w io.Writer, label string, total int64, after string) *progress {
	if w == nil || !isTerminal(w) {
		return nil
	}
	p := &progress{w: w, label: label, after: after, total: total, start: time.Now(), stop: make(chan struct{})}
	p.done.Add(1)
	go p.loop()
	return p
}

func (p *progress) loop() {
	defer p.done.Done()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	shown, last := false, ""
	for {
		select {
		case <-p.stop:
			if shown {
				fmt.Fprint(p.w, "\r\033[K")
			}
			return
		case <-t.C:
		}
		if time.Since(p.start) < progressDelay {
			continue
		}
		if l := p.line(); l != last { // redrawn only when it says something new
			shown, last = true, l
			fmt.Fprintf(p.w, "\r\033[K%s", l)
		}
	}
}

// line is what the progress line says now.
func (p *progress) line() string {
	sent := p.sent.Load()
	if sent < p.total {
		return fmt.Sprintf("%s: uploading %s / %s (%d%%)", p.label, mib(sent), mib(p.total), sent*100/max(p.total, 1))
	}
	return fmt.Sprintf("%s: uploaded %s; %s… %ds", p.label, mib(p.total), p.after, int(time.Since(p.start).Seconds()))
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// reader counts what is read from r as sent.
func (p *progress) reader(r io.Reader) io.Reader {
	if p == nil {
		return r
	}
	return &countingReader{r: r, n: &p.sent}
}

// end erases the line.
func (p *progress) end() {
	if p == nil {
		return
	}
	close(p.stop)
	p.done.Wait()
}

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n.Add(int64(n))
	return n, err
}
