package accounting

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// ValidateEvent checks an event decoded from a message on subject (empty: not checked against it). An event that fails here can
// never be stored, so the consumer terminates it instead of retrying it.
func ValidateEvent(ev *schemas.Event, subject string) error {
	if ev.ID == "" || !validText(ev.ID, 200) {
		return errors.New("event id missing, too long or not text")
	}
	if ev.Type == "" || !validText(ev.Type, 100) {
		return errors.New("event type missing, too long or not text")
	}
	if !validTime(ev.Time) {
		return errors.New("event time out of range")
	}
	if !schemas.ValidToken(ev.TenantID) {
		return fmt.Errorf("invalid tenant id %q", trunc(ev.TenantID))
	}
	if subject != "" {
		typ, tenant, err := schemas.ParseEventSubject(subject)
		if err == nil && (typ != ev.Type || tenant != ev.TenantID) {
			return fmt.Errorf("subject %q does not match event type %q and tenant %q", subject, trunc(ev.Type), ev.TenantID)
		}
	}
	if !strings.HasPrefix(ev.Type, "execution.") {
		// Stored as JSON: PostgreSQL's jsonb refuses \u0000, so refuse it here rather than
		// fail the whole batch there.
		data, err := json.Marshal(ev)
		if err != nil {
			return fmt.Errorf("event cannot be encoded: %w", err)
		}
		if hasNULEscape(data) {
			return errors.New("event contains a NUL character")
		}
		return nil
	}
	x := ev.Execution
	switch {
	case x == nil:
		return errors.New("execution event without execution")
	case !schemas.ValidExecutionID(x.ExecutionID):
		return fmt.Errorf("invalid execution id %q", trunc(x.ExecutionID))
	case !x.Status.Final():
		return fmt.Errorf("execution status %q is not final", trunc(string(x.Status)))
	case !(x.WallMS >= 0 && x.WallMS <= MaxWallMS) || !(x.CPUMS >= 0 && x.CPUMS <= MaxWallMS): // also NaN
		return errors.New("wall or cpu time out of range")
	case !inBytes(x.MemoryPeakBytes) || !inBytes(x.StdinBytes) || !inBytes(x.StdoutBytes) || !inBytes(x.StderrBytes):
		return errors.New("byte count out of range")
	case x.FinishedAt.IsZero() && ev.Time.IsZero():
		return errors.New("execution without finish time")
	case !validTime(x.FinishedAt) || !validTime(x.StartedAt) || !validTime(x.QueuedAt):
		return errors.New("execution time out of range")
	case !validText(x.KeyID, 200) || !validText(x.Tier, 100) || !validText(x.ModuleID, 200) || !validText(x.NodeID, 200):
		return errors.New("key, tier, module or node id too long or not text")
	}
	return nil
}

// Bounds of the usage figures of one execution, far above any tier, so that products and sums
// of millions of executions stay exact in int64.
const (
	MaxWallMS = 1e9     // about 11 days
	MaxBytes  = 1 << 40 // 1 TiB
)

// hasNULEscape reports whether JSON text holds an escaped NUL: a \u0000 preceded by an even
// number of backslashes (`\\u0000` is an escaped backslash followed by "u0000").
func hasNULEscape(data []byte) bool {
	for i := 0; ; {
		j := bytes.Index(data[i:], []byte(`\u0000`))
		if j < 0 {
			return false
		}
		j += i
		k := j
		for k > 0 && data[k-1] == '\\' {
			k--
		}
		if (j-k)%2 == 0 {
			return true
		}
		i = j + 1
	}
}

// validText reports whether s can be stored as text by both databases: valid UTF-8, no NUL,
// at most max bytes.
func validText(s string, max int) bool {
	return len(s) <= max && utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// validTime reports whether t is zero or within the years both databases and the day format
// handle without surprise.
func validTime(t time.Time) bool {
	if t.IsZero() {
		return true
	}
	y := t.UTC().Year()
	return y >= 1970 && y <= 9999
}

func inBytes(n int64) bool { return n >= 0 && n <= MaxBytes }

func trunc(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
