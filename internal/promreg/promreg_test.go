package promreg

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestAdd_ReusesWhatIsRegisteredAndGathersErrors(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := Set{R: reg}
	a := Add(&s, prometheus.NewCounter(prometheus.CounterOpts{Name: "x_total", Help: "x"}))
	b := Add(&s, prometheus.NewCounter(prometheus.CounterOpts{Name: "x_total", Help: "x"}))
	if s.Err != nil || a != b {
		t.Fatalf("second registration: err %v, same collector %v", s.Err, a == b)
	}
	// The same name with other help is a conflict, not a reuse.
	Add(&s, prometheus.NewCounter(prometheus.CounterOpts{Name: "x_total", Help: "other"}))
	if s.Err == nil {
		t.Fatal("a conflicting registration was not reported")
	}
	var none Set
	if c := Add(&none, prometheus.NewGauge(prometheus.GaugeOpts{Name: "g", Help: "g"})); c == nil || none.Err != nil {
		t.Fatal("a nil registerer must register nothing and fail nothing")
	}
}
