package gateway

import (
	"errors"
	"time"
)

// poll is how often these tests' natstest.CheckFor looks again.
const poll = 10 * time.Millisecond

// state makes a natstest.CheckFor check of a condition: describe says, when ok does not hold,
// what was still missing (evaluated then, not before the wait).
func state(ok func() bool, describe func() string) func() error {
	return func() error {
		if ok() {
			return nil
		}
		return errors.New(describe())
	}
}
