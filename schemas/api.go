package schemas

import (
	"encoding/base64"
	"net/url"
	"time"
	"unicode/utf8"
)

// API request and response bodies, shared by REST and the direct NATS API (same JSON).

// ExecutionRequest is the body of POST /v1/executions and wasmwiz.api.v1.executions.create.
type ExecutionRequest struct {
	ModuleID     string            `json:"module_id,omitempty" doc:"id of an uploaded module (sha256:<hex>); or give module_base64" example:"sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"`
	ModuleBase64 string            `json:"module_base64,omitempty" doc:"the module inline, base64; it is stored as one of your modules like an upload named \"inline\", so the key needs the modules:write scope"`
	Stdin        string            `json:"stdin,omitempty" doc:"stdin as text"`
	StdinBase64  string            `json:"stdin_base64,omitempty" doc:"stdin as base64, for binary input"`
	StdinFile    string            `json:"stdin_file,omitempty" doc:"a file of the guest's file system (in a mounted bundle, or an inline file) read as its stdin, instead of stdin or stdin_base64: the way to give a program more input than a request carries (stdin is bounded by the tier's stdin_max and by a NATS message; a bundle by the tier's bundle_bytes)" example:"/in/input.txt"`
	Argv0        string            `json:"argv0,omitempty" doc:"argv[0] (default: the module's name), for multi-call programs that act by the name they run under, such as LLVM's (clang, wasm-ld) or busybox; counted with args in args_env_bytes" example:"wasm-ld"`
	Args         []string          `json:"args,omitempty" doc:"argv[1:]; argv[0] is the module's name, or argv0. The tier bounds how many (args_max) and, with env, how many bytes (args_env_bytes)" maxItems:"65536"`
	Env          map[string]string `json:"env,omitempty" doc:"environment variables; the tier bounds how many (env_max) and, with args, how many bytes (args_env_bytes)"`
	TimeoutMS    int64             `json:"timeout_ms,omitempty" doc:"wall-time limit; default and maximum: the tier's" minimum:"0"`
	MemoryMB     int               `json:"memory_mb,omitempty" doc:"linear memory cap; default and maximum: the tier's" minimum:"0"`
	Async        bool              `json:"async,omitempty" doc:"answer 202 at once and run in the background; poll GET /v1/executions/{id}"`
	Seed         *int64            `json:"seed,omitempty" doc:"makes the guest's random bytes (WASI random_get) a function of this number, for a reproducible run; without it they are drawn from the host's random source for every execution"`
	Clock        string            `json:"clock,omitempty" enum:"fixed,real" doc:"the guest's clocks: fixed (default) starts at 2022-01-01T00:00:00Z and advances 1 ms per reading, sleeps return at once; real is the host's wall and monotonic clocks, and sleeps wait (within the wall-time limit, and billed)"`

	Files   map[string]FileContent `json:"files,omitempty" doc:"small input files by absolute path, written into the guest's scratch space before it starts; together at most the tier's inline_files_bytes"`
	Mounts  []Mount                `json:"mounts,omitempty" doc:"uploaded bundles (POST /v1/bundles) mounted read-only" maxItems:"16"`
	Workdir string                 `json:"workdir,omitempty" doc:"the guest's working directory (made if missing; $PWD is set to it, where Go's wasip1 runtime starts; it is preopened as \".\" after \"/\" and the top-level directories, so wasi-libc programs, which start at /, open relative paths in it, as under wasmtime --dir .)" example:"/work"`
	Outputs []string               `json:"outputs,omitempty" doc:"files to return after the run: absolute paths, each component may use * ? [ ] wildcards; at most the tier's outputs_bytes in all" maxItems:"64" example:"[\"/out/*.wav\", \"/tmp/result.json\"]"`
}

// FileContent is a file's content in a request or a result: text (UTF-8) or base64.
type FileContent struct {
	Text   string `json:"text,omitempty" doc:"the content as text"`
	Base64 string `json:"base64,omitempty" doc:"the content as base64, for binary data"`
}

// Mount mounts a bundle into an execution.
type Mount struct {
	Bundle   string `json:"bundle" doc:"id of an uploaded bundle (sha256:<hex>)"`
	Path     string `json:"path" doc:"where the bundle's root appears: an absolute path, or a relative one (\"fs-tests.dir\"), which mounts it at /<path> and also preopens it under that very name, as wasmtime --dir and wazero -mount do" example:"/share"`
	ReadOnly *bool  `json:"read_only,omitempty" doc:"true (the default): the bundle's files are shared read-only; false: the guest gets a writable copy, counted in its scratch space"`
}

// ExecutionFile is an output file of an execution.
type ExecutionFile struct {
	Path      string `json:"path"`
	Text      string `json:"text,omitempty" doc:"the content, when it is UTF-8"`
	Base64    string `json:"base64,omitempty" doc:"the content as base64, when it is not UTF-8"`
	Size      int64  `json:"size" doc:"the file's whole size in bytes"`
	Truncated bool   `json:"truncated,omitempty" doc:"only the first bytes are returned: the outputs reached the tier's outputs_bytes"`
	URL       string `json:"url,omitempty" doc:"set for a file over 1 MiB, which the result does not carry: GET it (relative to the API's base URL) for its bytes"`
}

// Execution is an execution as callers see it.
type Execution struct {
	ID              string     `json:"id"`
	Status          Status     `json:"status" enum:"queued,running,succeeded,failed,timed_out,killed"`
	ExitCode        *int       `json:"exit_code,omitempty" doc:"the guest's exit code; -1 after a trap, timeout or kill"`
	Error           string     `json:"error,omitempty" doc:"why the execution failed, when it did not exit by itself"`
	Stdout          string     `json:"stdout"`
	StdoutEncoding  string     `json:"stdout_encoding,omitempty" enum:"utf-8,base64" doc:"base64 when stdout is not valid UTF-8"`
	Stderr          string     `json:"stderr"`
	StderrEncoding  string     `json:"stderr_encoding,omitempty" enum:"utf-8,base64"`
	StdoutTruncated bool       `json:"stdout_truncated"`
	StderrTruncated bool       `json:"stderr_truncated"`
	DurationMS      float64    `json:"duration_ms"`
	MemoryPeakBytes int64      `json:"memory_peak_bytes"`
	ModuleID        string     `json:"module_id"`
	CreatedAt       time.Time  `json:"created_at"`
	StartedAt       *time.Time `json:"started_at,omitempty"`
	FinishedAt      *time.Time `json:"finished_at,omitempty"`

	StdoutURL string `json:"stdout_url,omitempty" doc:"set when stdout was longer than 1 MiB: stdout holds its first MiB, and this path (GET, relative to the API's base URL) returns all of it; over NATS, executions.output"`
	StderrURL string `json:"stderr_url,omitempty" doc:"as stdout_url, for stderr"`

	Files          []ExecutionFile `json:"files,omitempty" doc:"the output files asked for (outputs), sorted by path"`
	FilesTruncated bool            `json:"files_truncated,omitempty" doc:"more files matched the outputs than are returned (at most 1000)"`
	// StorageQuotaExceeded: see Result.
	StorageQuotaExceeded bool `json:"storage_quota_exceeded,omitempty" doc:"the tenant's stored results filled its tier's result_bytes: stdout, stderr and files were cut (their *_truncated flags say which) so that the result could be stored; status and exit code are the guest's"`
}

// ExecutionView turns a stored result into what callers see.
func ExecutionView(r *Result) *Execution {
	e := &Execution{
		ID: r.ID, Status: r.Status, Error: r.Error,
		StdoutTruncated: r.StdoutTruncated, StderrTruncated: r.StderrTruncated,
		DurationMS: r.DurationMS, MemoryPeakBytes: r.MemoryPeakBytes, ModuleID: r.ModuleID,
		CreatedAt: r.CreatedAt, StartedAt: r.StartedAt, FinishedAt: r.FinishedAt,
	}
	if r.Status.Final() {
		code := r.ExitCode
		e.ExitCode = &code
	}
	e.Stdout, e.StdoutEncoding = encodeOutput(r.Stdout)
	e.Stderr, e.StderrEncoding = encodeOutput(r.Stderr)
	if r.StdoutStored {
		e.StdoutURL = "/v1/executions/" + r.ID + "/stdout"
	}
	if r.StderrStored {
		e.StderrURL = "/v1/executions/" + r.ID + "/stderr"
	}
	e.FilesTruncated = r.FilesTruncated
	e.StorageQuotaExceeded = r.StorageQuotaExceeded
	for _, f := range r.Files {
		ef := ExecutionFile{Path: f.Path, Size: f.Size, Truncated: f.Truncated}
		if f.Stored {
			ef.URL = "/v1/executions/" + r.ID + "/files/" + url.PathEscape(f.Path)
		} else if utf8.Valid(f.Data) {
			ef.Text = string(f.Data)
		} else {
			ef.Base64 = base64.StdEncoding.EncodeToString(f.Data)
		}
		e.Files = append(e.Files, ef)
	}
	return e
}

func encodeOutput(b []byte) (string, string) {
	if utf8.Valid(b) {
		return string(b), ""
	}
	return base64.StdEncoding.EncodeToString(b), "base64"
}

// OutputRequest is the body of executions.output over NATS: Length bytes (0 or more than 4 MiB:
// 4 MiB) of an execution's stdout or stderr, from Offset.
type OutputRequest struct {
	ID     string `json:"id"`
	Stream string `json:"stream" enum:"stdout,stderr"`
	Offset int64  `json:"offset,omitempty"`
	Length int64  `json:"length,omitempty"`
}

// OutputChunk answers an OutputRequest: Data from Offset, the output's whole Size, and EOF when
// Data reaches its end.
type OutputChunk struct {
	Offset int64  `json:"offset"`
	Size   int64  `json:"size"`
	Data   []byte `json:"data"`
	EOF    bool   `json:"eof"`
}

// IDRequest names one resource, for direct NATS operations that take an id.
type IDRequest struct {
	ID string `json:"id"`
}

// ModuleList is the body of GET /v1/modules.
type ModuleList struct {
	Modules []Module `json:"modules"`
}

// CreateTenantRequest is the body of POST /v1/admin/tenants.
type CreateTenantRequest struct {
	ID   string `json:"id" doc:"tenant id: lower-case letters, digits, '-' and '_'" pattern:"^[a-z0-9][a-z0-9_-]{0,62}$"`
	Tier string `json:"tier" doc:"tier name" example:"free"`
}

// CreateKeyRequest is the body of POST /v1/admin/keys.
type CreateKeyRequest struct {
	TenantID  string     `json:"tenant_id"`
	Tier      string     `json:"tier,omitempty" doc:"defaults to the tenant's tier"`
	Name      string     `json:"name,omitempty" maxLength:"128"`
	Admin     bool       `json:"admin,omitempty" doc:"an operator key for /v1/admin"`
	Scopes    []string   `json:"scopes,omitempty" doc:"absent: all (execute, modules:write, modules:read, keys:manage, usage:read); an empty list is refused (422 empty_scopes)"`
	ExpiresAt *time.Time `json:"expires_at,omitempty" doc:"at most the calling credential's expiry; absent: the caller's expiry (never, for a key without one)"`
}

// NewKeyRequest is the body of POST /v1/keys: a key for the caller's own tenant.
type NewKeyRequest struct {
	Name      string     `json:"name,omitempty" maxLength:"128"`
	Tier      string     `json:"tier,omitempty" doc:"at most the caller's own tier; default the caller's"`
	Scopes    []string   `json:"scopes,omitempty" doc:"at most the caller's own scopes; absent: the caller's; an empty list is refused (422 empty_scopes)"`
	ExpiresAt *time.Time `json:"expires_at,omitempty" doc:"at most the calling credential's expiry (a token's, or an expiring key's); absent: the caller's expiry (never, for a key without one)"`
}

// RotateKeyRequest is the body of POST /v1/keys/{id}/rotate and POST /v1/admin/keys/{id}/rotate.
type RotateKeyRequest struct {
	OldKeyExpiresIn int64 `json:"old_key_expires_in_seconds,omitempty" doc:"the old key's grace: how long it stays valid (for in-flight work only: it can manage no keys); default 3600 (an hour), at most 604800 (7 days)" minimum:"0" maximum:"604800"`
}

// KeyList is the body of GET /v1/keys and GET /v1/admin/keys.
type KeyList struct {
	Keys []Key `json:"keys"`
}

// TenantList is the body of GET /v1/admin/tenants.
type TenantList struct {
	Tenants []Tenant `json:"tenants"`
}

// UpdateTenantRequest is the body of PATCH /v1/admin/tenants/{id}.
type UpdateTenantRequest struct {
	Tier      string `json:"tier,omitempty"`
	Suspended *bool  `json:"suspended,omitempty"`
}

// TokenResponse is the body of POST /v1/auth/token.
type TokenResponse struct {
	Token     string    `json:"token" doc:"an EdDSA JWT; send it as Authorization: Bearer <token>"`
	TokenType string    `json:"token_type" example:"Bearer"`
	ExpiresAt time.Time `json:"expires_at"`
}

// CreatedKey is a new key: the only time its secret is shown.
type CreatedKey struct {
	Key    string `json:"key" doc:"the API key; shown once, store it now"`
	Record Key    `json:"record"`
}
