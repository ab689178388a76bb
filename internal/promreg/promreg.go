// Package promreg is how every WasmWiz role registers its Prometheus collectors: one call per
// collector, errors gathered, and a collector already registered under the same name (a second
// Consumer or Node in one process, as tests and `wasmwiz dev` restarts make) reused instead of
// failing.
package promreg

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Set registers collectors on R and gathers what went wrong in Err. A nil R registers nothing.
type Set struct {
	R   prometheus.Registerer
	Err error
}

// Add registers c and returns it, or the collector of the same type already registered under
// its name; any other error is joined into s.Err and c is returned unregistered.
func Add[C prometheus.Collector](s *Set, c C) C {
	if s.R == nil {
		return c
	}
	if err := s.R.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		s.Err = errors.Join(s.Err, err)
	}
	return c
}
