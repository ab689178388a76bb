package schemas

import "time"

// Event types, past tense. Each is published on EventSubject(type, tenant).
const (
	EventExecutionCompleted = "execution.completed" // the guest ran to an exit code (zero or not)
	EventExecutionFailed    = "execution.failed"    // trap, timeout, kill, or the module could not run
	EventModuleUploaded     = "module.uploaded"
	EventModuleDeleted      = "module.deleted"
	EventModuleRejected     = "module.rejected" // compiled, then refused (invalid, or too expensive to compile): billed compile time
	EventKeyCreated         = "key.created"
	EventKeyRevoked         = "key.revoked"
	EventTenantCreated      = "tenant.created"
	EventTenantUpdated      = "tenant.updated" // an admin changed its tier or suspended it or lifted a suspension
	EventRateLimitRejected  = "ratelimit.rejected"
)

// EventVersion is the version of the event schemas in this package.
const EventVersion = 1

// KnownEventType reports whether t is one of the event types above.
func KnownEventType(t string) bool {
	switch t {
	case EventExecutionCompleted, EventExecutionFailed, EventModuleUploaded, EventModuleDeleted, EventModuleRejected,
		EventKeyCreated, EventKeyRevoked, EventTenantCreated, EventTenantUpdated, EventRateLimitRejected:
		return true
	}
	return false
}

// Event is the envelope of everything on StreamEvents. Exactly one of the typed parts is set,
// the one matching Type (Tenant for tenant.*). ID is unique per fact and is published as Nats-Msg-Id, so a fact
// published twice (a redelivered execution) is stored once.
type Event struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	Version   int             `json:"version"`
	Time      time.Time       `json:"time"`
	TenantID  string          `json:"tenant_id"`
	Execution *ExecutionEvent `json:"execution,omitempty"`
	Module    *ModuleEvent    `json:"module,omitempty"`
	Key       *KeyEvent       `json:"key,omitempty"`
	Tenant    *TenantEvent    `json:"tenant,omitempty"`
	RateLimit *RateLimitEvent `json:"rate_limit,omitempty"`
}

// ExecutionEvent is the billable fact of one execution.
type ExecutionEvent struct {
	ExecutionID     string    `json:"execution_id"`
	KeyID           string    `json:"key_id"`
	Tier            string    `json:"tier"`
	ModuleID        string    `json:"module_id"`
	Status          Status    `json:"status"`
	ExitCode        int       `json:"exit_code"`
	WallMS          float64   `json:"wall_ms"`
	CPUMS           float64   `json:"cpu_ms"`
	MemoryPeakBytes int64     `json:"memory_peak_bytes"`
	StdinBytes      int64     `json:"stdin_bytes"`
	StdoutBytes     int64     `json:"stdout_bytes"`
	StderrBytes     int64     `json:"stderr_bytes"`
	QueuedAt        time.Time `json:"queued_at"`
	StartedAt       time.Time `json:"started_at"`
	FinishedAt      time.Time `json:"finished_at"`
	NodeID          string    `json:"node_id"`
}

// ModuleEvent records an upload, a rejected upload or a delete. CompileMS is the time an
// executor's worker spent compiling the module for this upload (0 on a delete, and small when
// the node had it compiled already): the upload's billable compile time.
type ModuleEvent struct {
	ModuleID  string  `json:"module_id"`
	Name      string  `json:"name"`
	Size      int64   `json:"size"`
	KeyID     string  `json:"key_id"`
	CompileMS float64 `json:"compile_ms,omitempty"`
	Error     string  `json:"error,omitempty"` // module.rejected: why
}

// KeyEvent records a key being created or revoked (never the secret).
type KeyEvent struct {
	KeyID string `json:"key_id"`
	Tier  string `json:"tier"`
	Admin bool   `json:"admin,omitempty"`
}

// TenantEvent records a tenant being created or changed: its tier and suspension after the
// fact and, on tenant.updated, before it, with the admin key that made the change.
type TenantEvent struct {
	Tier              string `json:"tier"`
	Suspended         bool   `json:"suspended"`
	PreviousTier      string `json:"previous_tier,omitempty"`
	PreviousSuspended bool   `json:"previous_suspended,omitempty"`
	KeyID             string `json:"key_id,omitempty"`
}

// RateLimitEvent records a rejected request.
type RateLimitEvent struct {
	KeyID  string `json:"key_id"`
	Limit  string `json:"limit"` // per_minute, per_day, in_flight, concurrent_requests
	Reason string `json:"reason"`
}
