package schemas

import "time"

// Status is the state of an execution.
type Status string

const (
	StatusQueued    Status = "queued"
	StatusRunning   Status = "running"
	StatusSucceeded Status = "succeeded" // exit code 0
	StatusFailed    Status = "failed"    // non-zero exit code, trap, or a module that cannot run
	StatusTimedOut  Status = "timed_out" // stopped at its deadline
	StatusKilled    Status = "killed"    // its worker process was killed (deadline ignored, memory backstop)
)

// Final reports whether no further change of status can happen.
func (s Status) Final() bool {
	return s == StatusSucceeded || s == StatusFailed || s == StatusTimedOut || s == StatusKilled
}

// ExecRequest is published by a gateway on ExecSubject and consumed by executors. It is also
// the body an executor receives on redelivery, so it holds everything needed to run.
type ExecRequest struct {
	ExecutionID string            `json:"execution_id"`
	TenantID    string            `json:"tenant_id"`
	KeyID       string            `json:"key_id"`
	Tier        string            `json:"tier"`
	ModuleID    string            `json:"module_id"`       // sha256:<hex>
	ModuleName  string            `json:"module_name"`     // argv[0] unless Argv0 is set
	Argv0       string            `json:"argv0,omitempty"` // argv[0] the request asked for
	Stdin       []byte            `json:"stdin,omitempty"`
	Args        []string          `json:"args,omitempty"`
	Env         map[string]string `json:"env,omitempty"`
	TimeoutMS   int64             `json:"timeout_ms"`
	MemoryMB    int               `json:"memory_mb"`
	StdoutMax   int               `json:"stdout_max"`
	StderrMax   int               `json:"stderr_max"`
	Async       bool              `json:"async,omitempty"`
	Seed        *int64            `json:"seed,omitempty"`  // fixes the guest's random bytes; absent: random per execution
	Clock       string            `json:"clock,omitempty"` // ClockFixed (or empty) or ClockReal
	CreatedAt   time.Time         `json:"created_at"`

	// The guest's files (files.go): inline files by absolute path, read-only bundles, the
	// working directory, output patterns, and the outputs cap the gateway applied.
	Files      map[string][]byte `json:"files,omitempty"`
	Mounts     []MountSpec       `json:"mounts,omitempty"`
	Workdir    string            `json:"workdir,omitempty"`
	StdinFile  string            `json:"stdin_file,omitempty"` // a file of the guest's file system read as its stdin
	Outputs    []string          `json:"outputs,omitempty"`
	OutputsMax int64             `json:"outputs_max,omitempty"`

	// CompileDeadline is set when the module's upload was still compiling it as the execution
	// was published (its record said "compiling"): when that compile must have answered. The
	// executor waits for the compile's shared artifact until then rather than compiling the
	// module a second time.
	CompileDeadline *time.Time `json:"compile_deadline,omitempty"`
}

// The guest's clocks (ExecutionRequest.Clock). Fixed, the default, starts at
// 2022-01-01T00:00:00Z and advances 1 ms at every reading, and sleeps return at once: runs are
// reproducible and a guest cannot time the host. Real gives the host's clocks and real sleeps.
const (
	ClockFixed = "fixed"
	ClockReal  = "real"
)

// ValidClock reports whether c is a clock an execution may ask for ("" is the default, fixed).
func ValidClock(c string) bool { return c == "" || c == ClockFixed || c == ClockReal }

// Result is what an execution produced. Stored in KV BucketResults under the execution id and
// sent to the requester's reply subject. Gateways turn it into the API's Execution view.
type Result struct {
	ID              string     `json:"id"`
	TenantID        string     `json:"tenant_id"`
	KeyID           string     `json:"key_id,omitempty"`
	Tier            string     `json:"tier,omitempty"`
	ModuleID        string     `json:"module_id"`
	Status          Status     `json:"status"`
	ExitCode        int        `json:"exit_code"`
	Error           string     `json:"error,omitempty"` // trap or kill reason, for the caller
	Stdout          []byte     `json:"stdout,omitempty"`
	Stderr          []byte     `json:"stderr,omitempty"`
	StdoutTruncated bool       `json:"stdout_truncated,omitempty"`
	StderrTruncated bool       `json:"stderr_truncated,omitempty"`
	StdinBytes      int64      `json:"stdin_bytes,omitempty"`
	StdoutBytes     int64      `json:"stdout_bytes,omitempty"` // written by the guest, kept or not
	StderrBytes     int64      `json:"stderr_bytes,omitempty"`
	DurationMS      float64    `json:"duration_ms"`
	CPUMS           float64    `json:"cpu_ms,omitempty"`
	MemoryPeakBytes int64      `json:"memory_peak_bytes"`
	CreatedAt       time.Time  `json:"created_at"`
	StartedAt       *time.Time `json:"started_at,omitempty"`
	FinishedAt      *time.Time `json:"finished_at,omitempty"`
	NodeID          string     `json:"node_id,omitempty"`

	// Output files; whether more matched than were returned; the most the guest's files held
	// (bytes, included in MemoryPeakBytes).
	Files            []OutputFile `json:"files,omitempty"`
	FilesTruncated   bool         `json:"files_truncated,omitempty"`
	ScratchPeakBytes int64        `json:"scratch_peak_bytes,omitempty"`

	// StdoutStored: Stdout is only the first InlineOutputMax bytes of what was kept; all of it
	// (StdoutBytes, or the tier's stdout_max when StdoutTruncated) is the object
	// OutputObjectName(ID, "stdout") in ObjectOutputs. StderrStored likewise.
	StdoutStored bool `json:"stdout_stored,omitempty"`
	StderrStored bool `json:"stderr_stored,omitempty"`

	// StorageQuotaExceeded: the tenant's stored results (ResultUsage) would have gone past its
	// tier's result_bytes with this one, so its outputs were cut to what fitted (the *Truncated
	// flags say which); the execution itself is recorded as it ran.
	StorageQuotaExceeded bool `json:"storage_quota_exceeded,omitempty"`
}

// CompileRequest asks an executor to compile a stored module under supervision.
type CompileRequest struct {
	ModuleID string `json:"module_id"`
	Tier     string `json:"tier"`
}

// HeaderWait on a direct NATS modules.upload asks it to wait for the compile, as ?wait=true
// does over REST.
const HeaderWait = "Wasmwiz-Wait"

// CompileReply answers a CompileRequest; Error is nil when the module compiled.
type CompileReply struct {
	Error     *Error  `json:"error,omitempty"`
	CompileMS float64 `json:"compile_ms"`
	NodeID    string  `json:"node_id"`
}

// Tenant is stored in KV BucketTenants under its id.
type Tenant struct {
	ID        string    `json:"id"`
	Tier      string    `json:"tier"`
	Suspended bool      `json:"suspended,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// Key is an API key's record, stored in KV BucketKeys under the SHA-256 (hex) of the secret.
// The secret itself is never stored.
type Key struct {
	ID        string     `json:"id"`
	TenantID  string     `json:"tenant_id"`
	Tier      string     `json:"tier"`
	Name      string     `json:"name,omitempty"`
	Prefix    string     `json:"prefix"` // first characters of the secret, to recognise it
	Admin     bool       `json:"admin,omitempty"`
	Scopes    []string   `json:"scopes,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// ReplacedBy is the key that replaced this one when it was rotated. A replaced key is in its
	// grace until ExpiresAt: it still authenticates, for in-flight work, but manages no keys.
	ReplacedBy string `json:"replaced_by,omitempty"`
	// LastUsedAt is filled in when keys are listed (from BucketKeyUsage), never stored here.
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
}

// Scopes a key may hold. A key may do only what its scopes allow; admin keys may do everything.
const (
	ScopeExecute      = "execute"       // run modules, read executions
	ScopeModulesWrite = "modules:write" // upload and delete modules
	ScopeModulesRead  = "modules:read"  // list and get modules
	ScopeKeysManage   = "keys:manage"   // list, create, revoke and rotate the tenant's own keys
	ScopeUsageRead    = "usage:read"    // usage and the event stream
)

// AllScopes are the scopes a key gets when none are asked for.
var AllScopes = []string{ScopeExecute, ScopeModulesWrite, ScopeModulesRead, ScopeKeysManage, ScopeUsageRead}

// Module is a tenant's reference to stored module bytes, in KV BucketModuleOwner.
type Module struct {
	ID        string    `json:"id"` // sha256:<hex>
	Name      string    `json:"name"`
	Size      int64     `json:"size"`
	Imports   []string  `json:"imports"`
	Exports   []string  `json:"exports"`
	CreatedAt time.Time `json:"created_at"`
	TenantID  string    `json:"tenant_id"`

	// Status is where the module's compile is: an upload whose compile takes longer than the
	// request waits is answered 202 with "compiling", and its record says how it ended.
	// Records written before statuses existed have none: they are ready.
	Status          ModuleStatus `json:"status,omitempty" enum:"compiling,ready,failed" doc:"compiling: accepted, its compile goes on (executions of it wait or queue); ready: compiled; failed: refused by the compile (error says why; delete it or upload it again)"`
	Error           string       `json:"error,omitempty" doc:"why the compile failed"`
	CompileMS       float64      `json:"compile_ms,omitempty" doc:"the executor time its compile took"`
	CompileDeadline *time.Time   `json:"compile_deadline,omitempty" doc:"while compiling: when its compile budget ends"`
}

// ModuleStatus is the state of a module's compile.
type ModuleStatus string

const (
	ModuleCompiling ModuleStatus = "compiling"
	ModuleReady     ModuleStatus = "ready"
	ModuleFailed    ModuleStatus = "failed"
)

// Ready reports whether the module compiled (a record without a status did).
func (m *Module) Ready() bool { return m.Status == ModuleReady || m.Status == "" }

// IdempotencyRecord binds a tenant's Idempotency-Key to one execution and one request body.
type IdempotencyRecord struct {
	ExecutionID string    `json:"execution_id"`
	BodySHA256  string    `json:"body_sha256"`
	CreatedAt   time.Time `json:"created_at"`
}
