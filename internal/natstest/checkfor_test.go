package natstest

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// recorder is a testing.TB that records a Fatalf instead of ending the test.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
	panic(r)
}

func TestCheckFor_FailsWithTheLastError(t *testing.T) {
	r := &recorder{TB: t}
	n := 0
	func() {
		defer func() {
			if p := recover(); p != nil && p != r {
				panic(p)
			}
		}()
		CheckFor(r, 50*time.Millisecond, time.Millisecond, func() error {
			n++
			return fmt.Errorf("attempt %d", n)
		})
	}()
	if r.failed == "" || !strings.HasSuffix(r.failed, fmt.Sprintf("attempt %d", n)) || n < 2 {
		t.Fatalf("after %d attempts: failure %q; want the last attempt's error", n, r.failed)
	}
}

func TestCheckFor_ReturnsOnSuccess(t *testing.T) {
	n := 0
	CheckFor(t, 10*time.Second, time.Millisecond, func() error {
		if n++; n < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if n != 3 {
		t.Fatalf("%d calls, want 3", n)
	}
}
