package schemas

import (
	"fmt"
	"strings"
)

// Streams, consumers and buckets.
const (
	StreamEvents = "WASMWIZ_EVENTS"
	StreamDLQ    = "WASMWIZ_DLQ"

	// ConsumerAccounting is the durable consumer on StreamEvents that writes usage.
	ConsumerAccounting = "accounting"

	BucketResults     = "wasmwiz_results"     // KV: execution id -> Result
	BucketKeys        = "wasmwiz_keys"        // KV: sha256(api key) hex -> Key
	BucketTenants     = "wasmwiz_tenants"     // KV: tenant id -> Tenant
	BucketModuleOwner = "wasmwiz_module_refs" // KV: <tenant>.<hex> -> Module (ownership metadata)
	BucketIdempotency = "wasmwiz_idempotency" // KV: <tenant>.<sha256(idempotency key)> -> IdempotencyRecord
	BucketKeyUsage    = "wasmwiz_key_usage"   // KV: key id -> last use (RFC 3339), flushed by gateways
	ObjectModules     = "wasmwiz_modules"     // object store: sha256-<hex> -> module bytes
	ObjectCompiled    = "wasmwiz_compiled"    // object store: <wazero version, platform, CPU>/<hex> -> compiled artifact (executors only)

	SubjectDLQ = "wasmwiz.dlq.exec"

	// SubjectCompile is served by executors in queue group QueueExecutors: compile a stored
	// module under supervision (upload check, cache warm-up).
	SubjectCompile = "wasmwiz.executor.v1.compile"
	// SubjectExecutorPing is answered by every executor; gateways use it for readiness.
	SubjectExecutorPing = "wasmwiz.executor.v1.ping"
	// SubjectExecutorRunning asks every executor whether it is running an execution (body: its
	// id); only one that is answers. A node given a redelivery of an execution that is still
	// running elsewhere waits for that run instead of starting a second one.
	SubjectExecutorRunning = "wasmwiz.executor.v1.running"
	QueueExecutors         = "wasmwiz-executors"

	// ExecutorReplyPrefix begins every subject an executor answers a gateway on: an execution's
	// reply (HeaderReply) and the answers to compile and ping requests, all on
	// <ExecutorReplyPrefix>.<gateway id>.<id>. The executor's NATS user may publish replies there
	// and nowhere else of the gateway's (internal/natsroles), so a request to an executor must
	// carry a reply subject under it.
	ExecutorReplyPrefix = "_INBOX.wasmwiz"
)

// NATS headers carried by execution requests and API calls.
const (
	HeaderMsgID         = "Nats-Msg-Id"
	HeaderExecutionID   = "Wasmwiz-Execution-Id"
	HeaderReply         = "Wasmwiz-Reply"    // core NATS subject the executor answers on
	HeaderDeadline      = "Wasmwiz-Deadline" // unix milliseconds after which nobody waits for the reply
	HeaderAuthorization = "Authorization"
	HeaderRequestID     = "Wasmwiz-Request-Id"
	// HeaderNewExecution is "true" on the publish of an execution id the gateway has just drawn
	// at random: no delivery of it can have stored a result yet, so its first delivery need not
	// look one up. Absent (an idempotency key's id, a message republished by hand), executors look.
	HeaderNewExecution = "Wasmwiz-New-Execution"

	// HeaderIdempotencyKey makes a create-execution call idempotent (REST and NATS alike).
	HeaderIdempotencyKey = "Idempotency-Key"
	// HeaderModuleName and HeaderBundleName carry an upload's name on the direct NATS API
	// (REST: ?name=).
	HeaderModuleName = "Wasmwiz-Module-Name"
	HeaderBundleName = "Wasmwiz-Bundle-Name"

	// HeaderDLQReason is set on a request moved to the dead letters: why it could not be
	// handled. HeaderDLQSubject is the subject it was published on (wasmwiz dlq replay
	// publishes it there again).
	HeaderDLQReason  = "Wasmwiz-Dlq-Reason"
	HeaderDLQSubject = "Wasmwiz-Dlq-Subject"
)

// The direct NATS API is one NATS micro service of this name, served by every gateway in one
// queue group; its endpoints listen on APISubject(operation).
const (
	APIService    = "wasmwiz-api"
	QueueGateways = "wasmwiz-gateways"
)

// ValidToken reports whether s may be used as a tier or tenant id: it becomes one NATS subject
// token and one KV key token, so it is restricted to lower-case letters, digits, '-' and '_'
// (`^[a-z0-9][a-z0-9_-]{0,62}$`; checked by hand, as the ids below: every request checks them,
// and a regular expression cost a few microseconds each).
func ValidToken(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '_' || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// ExecStream is the work-queue stream of one tier's execution requests: WASMWIZ_EXEC_<TIER>.
// One stream per tier, because its per-subject message cap is the tier's in-flight limit:
// queued + running requests of a tenant are exactly its messages not yet acked.
func ExecStream(tier string) string { return "WASMWIZ_EXEC_" + strings.ToUpper(tier) }

// ExecConsumer is the durable pull consumer serving one tier: exec-<tier>.
func ExecConsumer(tier string) string { return "exec-" + tier }

// ExecSubject is the subject of an execution request.
//
//	wasmwiz.exec.<tier>.<tenant>
func ExecSubject(tier, tenant string) string { return "wasmwiz.exec." + tier + "." + tenant }

// ExecSubjectTier is the filter of a tier's consumer: wasmwiz.exec.<tier>.*
func ExecSubjectTier(tier string) string { return "wasmwiz.exec." + tier + ".*" }

// ParseExecSubject is the inverse of ExecSubject.
func ParseExecSubject(subject string) (tier, tenant string, err error) {
	parts := strings.Split(subject, ".")
	if len(parts) != 4 || parts[0] != "wasmwiz" || parts[1] != "exec" || !ValidToken(parts[2]) || !ValidToken(parts[3]) {
		return "", "", fmt.Errorf("not an execution subject: %q", subject)
	}
	return parts[2], parts[3], nil
}

// EventSubject is the subject of an event; the type has dots of its own.
//
//	wasmwiz.events.<type>.<tenant>   e.g. wasmwiz.events.execution.completed.acme
func EventSubject(eventType, tenant string) string {
	return "wasmwiz.events." + eventType + "." + tenant
}

// EventSubjectAll matches every event: wasmwiz.events.>
const EventSubjectAll = "wasmwiz.events.>"

// EventSubjectTenant matches one tenant's events: wasmwiz.events.*.*.<tenant>
func EventSubjectTenant(tenant string) string { return "wasmwiz.events.*.*." + tenant }

// ParseEventSubject is the inverse of EventSubject.
func ParseEventSubject(subject string) (eventType, tenant string, err error) {
	parts := strings.Split(subject, ".")
	if len(parts) != 5 || parts[0] != "wasmwiz" || parts[1] != "events" {
		return "", "", fmt.Errorf("not an event subject: %q", subject)
	}
	eventType = parts[2] + "." + parts[3]
	if !KnownEventType(eventType) || !ValidToken(parts[4]) {
		return "", "", fmt.Errorf("not an event subject: %q", subject)
	}
	return eventType, parts[4], nil
}

// Rate-limit windows. Each (tier, window) has a stream whose per-subject message cap is the
// tier's limit and whose MaxAge is the window: the messages in a tenant's subject are exactly the
// executions admitted in the last window, counted by the server.
const (
	WindowMinute = "minute"
	WindowDay    = "day"
	// WindowUpload counts a tenant's uploads (compiles) in the last minute; WindowCompiling
	// holds one message per compile in flight (deleted when it ends; MaxAge covers a lost gateway).
	WindowUpload    = "upload"
	WindowCompiling = "compiling"
)

// RateLimitStream names the counter stream of a tier's window: WASMWIZ_RL_<TIER>_<WINDOW>.
func RateLimitStream(tier, window string) string {
	return "WASMWIZ_RL_" + strings.ToUpper(tier) + "_" + strings.ToUpper(window)
}

// RateLimitSubject is one tenant's counter in a tier's window.
//
//	wasmwiz.rl.<tier>.<window>.<tenant>
func RateLimitSubject(tier, window, tenant string) string {
	return "wasmwiz.rl." + tier + "." + window + "." + tenant
}

// APISubject is a direct NATS API operation (a NATS micro endpoint).
//
//	wasmwiz.api.v1.<operation>   e.g. wasmwiz.api.v1.executions.create
func APISubject(operation string) string { return "wasmwiz.api.v1." + operation }

// ParseAPISubject is the inverse of APISubject.
func ParseAPISubject(subject string) (operation string, err error) {
	op, ok := strings.CutPrefix(subject, "wasmwiz.api.v1.")
	if !ok || op == "" || strings.ContainsAny(op, "*> \t") || strings.HasPrefix(op, ".") || strings.HasSuffix(op, ".") || strings.Contains(op, "..") {
		return "", fmt.Errorf("not an API subject: %q", subject)
	}
	return op, nil
}

// AccountingSubject is a usage query served by accounting.
//
//	wasmwiz.accounting.v1.<operation>   e.g. wasmwiz.accounting.v1.usage
func AccountingSubject(operation string) string { return "wasmwiz.accounting.v1." + operation }

// API operations over direct NATS; each has the same JSON body as its REST twin.
const (
	OpExecutionsCreate = "executions.create"
	OpExecutionsGet    = "executions.get"
	OpExecutionsOutput = "executions.output" // OutputRequest -> OutputChunk
	OpModulesUpload    = "modules.upload"
	OpModulesList      = "modules.list"
	OpModulesGet       = "modules.get"
	OpModulesDelete    = "modules.delete"
	OpUsage            = "usage"
)

// ModuleObjectName is the object store name of a module: sha256-<hex>.
func ModuleObjectName(hexDigest string) string { return "sha256-" + hexDigest }

// ParseModuleID checks a module id "sha256:<64 hex>" (lower case) and returns the hex digest.
func ParseModuleID(id string) (hexDigest string, err error) {
	hexDigest, ok := strings.CutPrefix(id, "sha256:")
	for i := 0; ok && i < len(hexDigest); i++ {
		c := hexDigest[i]
		ok = c >= '0' && c <= '9' || c >= 'a' && c <= 'f'
	}
	if !ok || len(hexDigest) != 64 {
		return "", fmt.Errorf("module id must be sha256:<64 lower-case hex digits>, got %q", truncate(id, 80))
	}
	return id[len("sha256:"):], nil
}

// ModuleID makes a module id from a hex digest.
func ModuleID(hexDigest string) string { return "sha256:" + hexDigest }

// ModuleRefKey is the ownership key of a module: <tenant>.<hex>.
func ModuleRefKey(tenant, hexDigest string) string { return tenant + "." + hexDigest }

// ValidExecutionID reports whether id has the shape of an execution id (it is also a KV key):
// `^[0-9a-zA-Z_-]{16,64}$`.
func ValidExecutionID(id string) bool {
	if len(id) < 16 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
