package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// Tier is what a tenant's plan allows. Zero rate limits mean unlimited.
type Tier struct {
	Name          string        `json:"name"`
	ExecPerMinute int           `json:"exec_per_minute"` // 0 = unlimited
	ExecPerDay    int           `json:"exec_per_day"`    // 0 = unlimited
	MemoryMB      int           `json:"memory_mb"`       // linear memory cap
	WallTime      time.Duration `json:"wall_time"`
	ModuleSize    int64         `json:"module_size"` // bytes
	InFlight      int           `json:"in_flight"`   // queued + running per tenant
	StdinMax      int           `json:"stdin_max"`   // bytes
	StdoutMax     int           `json:"stdout_max"`  // bytes; stderr has the same cap
	Priority      int           `json:"priority"`    // higher is served first
	// ArgsMax and EnvMax bound how many args and env entries an execution may carry, and
	// ArgsEnvBytes their total size (each arg and each NAME=value with its NUL): a worker pays
	// for every entry before the guest starts.
	ArgsMax      int `json:"args_max"`
	EnvMax       int `json:"env_max"`
	ArgsEnvBytes int `json:"args_env_bytes"`
	// ConcurrentRequests bounds the API requests (REST and direct NATS together) one tenant may
	// have open at once on one gateway, so that one tenant cannot hold every connection or
	// request slot (for example with replays of one long execution).
	ConcurrentRequests int `json:"concurrent_requests"`
	// MaxKeys bounds a tenant's live API keys (keys in a rotation grace count); 0 = DefaultMaxKeys.
	MaxKeys int `json:"max_keys"`

	Files FileLimits `json:"files"` // guest file limits; zero fields: see Tier.FileLimits

	// Uploads (POST /v1/modules and inline module_base64): each one that compiles counts.
	UploadsPerMinute int   `json:"uploads_per_minute"` // 0 = unlimited
	CompilesInFlight int   `json:"compiles_in_flight"` // compiles at once per tenant, all gateways; 0 = 1
	ModuleBytes      int64 `json:"module_bytes"`       // storage quota: bytes of stored modules; 0 = unlimited

	// Storage quotas of what else a tenant stores in the shared JetStream store (0 = unlimited):
	// ResultBytes bounds the bytes of its results (stdout, stderr and output files, as stored)
	// written within the results TTL (ResultUsage); StoredBundleBytes the archives of its bundles.
	ResultBytes       int64 `json:"result_bytes"`
	StoredBundleBytes int64 `json:"stored_bundle_bytes"`

	// MaxFunctions bounds the functions a module may define (0 = DefaultMaxFunctions): compile
	// time and the compiled code grow with them.
	MaxFunctions int `json:"max_functions"`
	// A module's compile budget is CompileBase plus CompilePerMiB for each MiB of the module, at
	// most CompileMax (see CompileBudget), in CPU time: a compile past it is stopped (its worker
	// killed), the module refused and the time billed. Zero fields take the Default* values below.
	CompileBase   time.Duration `json:"compile_base"`
	CompilePerMiB time.Duration `json:"compile_per_mib"`
	CompileMax    time.Duration `json:"compile_max"`
}

// Defaults of the compile budget and function count of a tier that sets none.
const (
	DefaultMaxFunctions  = 100_000
	DefaultCompileBase   = 10 * time.Second
	DefaultCompilePerMiB = time.Second
	DefaultCompileMax    = time.Minute
)

// FunctionCap is the most functions a module of t may define.
func (t Tier) FunctionCap() int {
	if t.MaxFunctions > 0 {
		return t.MaxFunctions
	}
	return DefaultMaxFunctions
}

// CompileBudget is how long a module of size bytes may take to compile on t: CompileBase plus
// CompilePerMiB per started MiB, at most CompileMax.
func (t Tier) CompileBudget(size int64) time.Duration {
	base, per, most := t.CompileBase, t.CompilePerMiB, t.CompileMax
	if base <= 0 {
		base = DefaultCompileBase
	}
	if per <= 0 {
		per = DefaultCompilePerMiB
	}
	if most <= 0 {
		most = DefaultCompileMax
	}
	mib := (max(size, 0) + MiB - 1) / MiB
	return min(most, base+time.Duration(mib)*per)
}

// CompileWallFactor is how many times its budget (CPU time) a compile may take on the wall
// clock: on a busy executor a compile gets less than a core. One that has not had its budget of
// CPU by then is stopped as the executor's load (unavailable, sent again), not the module's cost.
const CompileWallFactor = 3

// CompileWall is how long a compile of size bytes on t may take on the wall clock.
func (t Tier) CompileWall(size int64) time.Duration {
	return CompileWallFactor * t.CompileBudget(size)
}

// DefaultMaxKeys is a tier's cap on live API keys per tenant when it sets none.
const DefaultMaxKeys = 200

// KeyCap is the tier's cap on a tenant's live API keys.
func (t Tier) KeyCap() int {
	if t.MaxKeys > 0 {
		return t.MaxKeys
	}
	return DefaultMaxKeys
}

// Defaults of the fields a tiers file may leave out of a new tier (they are basic's).
const (
	DefaultArgsMax            = 256
	DefaultEnvMax             = 256
	DefaultArgsEnvBytes       = 32 << 10
	DefaultConcurrentRequests = 32

	// Ceilings that no tier may exceed.
	MaxModuleSize   = 1 << 30
	maxArgsMax      = 65536
	maxArgsEnvBytes = 16 * MiB
)

const (
	MiB = 1 << 20

	TierFree      = "free"
	TierBasic     = "basic"
	TierPro       = "pro"
	TierUnlimited = "unlimited"
)

// DefaultTiers is the tier table of DESIGN.md plus the operators' "unlimited" tier.
func DefaultTiers() map[string]Tier {
	return map[string]Tier{
		TierFree: {Name: TierFree, ExecPerMinute: 10, ExecPerDay: 500, MemoryMB: 128, WallTime: 5 * time.Second, ModuleSize: 10 * MiB, InFlight: 1, StdinMax: MiB, StdoutMax: MiB, Priority: 1,
			ArgsMax: 64, EnvMax: 64, ArgsEnvBytes: 16 << 10, ConcurrentRequests: 16,
			UploadsPerMinute: 10, CompilesInFlight: 1, ModuleBytes: 64 * MiB, ResultBytes: 32 * MiB, StoredBundleBytes: 32 * MiB,
			MaxFunctions: 100_000, CompileBase: 10 * time.Second, CompilePerMiB: time.Second, CompileMax: 20 * time.Second},
		TierBasic: {Name: TierBasic, ExecPerMinute: 100, ExecPerDay: 10_000, MemoryMB: 256, WallTime: 10 * time.Second, ModuleSize: 25 * MiB, InFlight: 5, StdinMax: MiB, StdoutMax: MiB, Priority: 2,
			ArgsMax: DefaultArgsMax, EnvMax: DefaultEnvMax, ArgsEnvBytes: DefaultArgsEnvBytes, ConcurrentRequests: DefaultConcurrentRequests,
			UploadsPerMinute: 30, CompilesInFlight: 2, ModuleBytes: 512 * MiB, ResultBytes: 256 * MiB, StoredBundleBytes: 256 * MiB,
			MaxFunctions: 100_000, CompileBase: 10 * time.Second, CompilePerMiB: time.Second, CompileMax: time.Minute},
		TierPro: {Name: TierPro, ExecPerMinute: 500, ExecPerDay: 50_000, MemoryMB: 512, WallTime: 30 * time.Second, ModuleSize: 50 * MiB, InFlight: 20, StdinMax: MiB, StdoutMax: MiB, Priority: 3,
			ArgsMax: 1024, EnvMax: 1024, ArgsEnvBytes: 64 << 10, ConcurrentRequests: 128,
			UploadsPerMinute: 100, CompilesInFlight: 4, ModuleBytes: 1024 * MiB, ResultBytes: 1024 * MiB, StoredBundleBytes: 512 * MiB,
			MaxFunctions: 250_000, CompileBase: 10 * time.Second, CompilePerMiB: 2 * time.Second, CompileMax: 2 * time.Minute},
		TierUnlimited: {Name: TierUnlimited, MemoryMB: 512, WallTime: 30 * time.Second, ModuleSize: 256 * MiB, InFlight: 1000, StdinMax: MiB, StdoutMax: 64 * MiB, Priority: 3,
			ArgsMax: 1024, EnvMax: 1024, ArgsEnvBytes: 64 << 10, ConcurrentRequests: 1024,
			CompilesInFlight: 8, MaxFunctions: 1_000_000, CompileBase: 10 * time.Second, CompilePerMiB: 2 * time.Second, CompileMax: 10 * time.Minute},
	}
}

// TierOrder lists the tiers executors serve, highest priority first.
var TierOrder = []string{TierPro, TierUnlimited, TierBasic, TierFree}

// Validate checks a tier's figures.
func (t Tier) Validate() error {
	switch {
	case !ValidToken(t.Name):
		return fmt.Errorf("tier name %q is not a valid token", t.Name)
	case t.MemoryMB <= 0 || t.MemoryMB > 4096:
		return fmt.Errorf("tier %s: memory_mb must be in 1..4096", t.Name)
	case t.WallTime <= 0:
		return fmt.Errorf("tier %s: wall_time must be positive", t.Name)
	case t.ModuleSize <= 0 || t.StdinMax <= 0 || t.StdoutMax <= 0 || t.InFlight <= 0:
		return fmt.Errorf("tier %s: sizes and in_flight must be positive", t.Name)
	case t.ExecPerMinute < 0 || t.ExecPerDay < 0 || t.UploadsPerMinute < 0:
		return fmt.Errorf("tier %s: rate limits must not be negative", t.Name)
	case t.ArgsMax <= 0 || t.ArgsMax > maxArgsMax || t.EnvMax <= 0 || t.EnvMax > maxArgsMax:
		return fmt.Errorf("tier %s: args_max and env_max must be in 1..%d", t.Name, maxArgsMax)
	case t.ArgsEnvBytes <= 0 || t.ArgsEnvBytes > maxArgsEnvBytes:
		return fmt.Errorf("tier %s: args_env_bytes must be in 1..%d", t.Name, maxArgsEnvBytes)
	case t.ConcurrentRequests <= 0:
		return fmt.Errorf("tier %s: concurrent_requests must be positive", t.Name)
	case t.MaxKeys < 0:
		return fmt.Errorf("tier %s: max_keys must not be negative", t.Name)
	case t.CompilesInFlight < 0:
		return fmt.Errorf("tier %s: compiles_in_flight must not be negative", t.Name)
	case t.ModuleBytes < 0 || (t.ModuleBytes > 0 && t.ModuleBytes < t.ModuleSize):
		return fmt.Errorf("tier %s: module_bytes must be 0 (unlimited) or at least module_size", t.Name)
	case t.ModuleSize > MaxModuleSize:
		return fmt.Errorf("tier %s: module_size must be at most %d (1 GiB)", t.Name, int64(MaxModuleSize))
	case t.MaxFunctions < 0:
		return fmt.Errorf("tier %s: max_functions must not be negative", t.Name)
	case t.CompileBase < 0 || t.CompilePerMiB < 0 || t.CompileMax < 0:
		return fmt.Errorf("tier %s: compile budgets must not be negative", t.Name)
	case t.ResultBytes < 0:
		return fmt.Errorf("tier %s: result_bytes must not be negative", t.Name)
	case t.StoredBundleBytes < 0 || (t.StoredBundleBytes > 0 && t.StoredBundleBytes < t.FileLimits().MaxArchiveBytes()):
		return fmt.Errorf("tier %s: stored_bundle_bytes must be 0 (unlimited) or at least the largest bundle archive (%d)", t.Name, t.FileLimits().MaxArchiveBytes())
	}
	return nil
}

// ValidateTiers checks a deployment's tier table, the one check every role applies to its
// configuration: at least one tier, each valid (Tier.Validate), each filed under its own name.
func ValidateTiers(tiers map[string]Tier) error {
	if len(tiers) == 0 {
		return errors.New("no tiers")
	}
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(tiers)) {
		t := tiers[name]
		if name != t.Name {
			errs = append(errs, fmt.Errorf("tier %q is named %q inside", name, t.Name))
		} else if err := t.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// tierFile is one tier in a tiers file; absent fields keep the defaults (or zero for a new tier).
type tierFile struct {
	ExecPerMinute *int   `json:"exec_per_minute"`
	ExecPerDay    *int   `json:"exec_per_day"`
	MemoryMB      *int   `json:"memory_mb"`
	WallTimeMS    *int64 `json:"wall_time_ms"`
	ModuleSize    *int64 `json:"module_size"`
	InFlight      *int   `json:"in_flight"`
	StdinMax      *int   `json:"stdin_max"`
	StdoutMax     *int   `json:"stdout_max"`
	Priority      *int   `json:"priority"`
	ArgsMax       *int   `json:"args_max"`
	EnvMax        *int   `json:"env_max"`
	ArgsEnvBytes  *int   `json:"args_env_bytes"`
	Concurrent    *int   `json:"concurrent_requests"`
	MaxKeys       *int   `json:"max_keys"`

	Files            *FileLimits `json:"files"` // guest file limits; absent fields keep the defaults
	UploadsPerMinute *int        `json:"uploads_per_minute"`
	CompilesInFlight *int        `json:"compiles_in_flight"`
	ModuleBytes      *int64      `json:"module_bytes"`
	MaxFunctions     *int        `json:"max_functions"`
	CompileBaseMS    *int64      `json:"compile_base_ms"`
	CompilePerMiBMS  *int64      `json:"compile_per_mib_ms"`
	CompileMaxMS     *int64      `json:"compile_max_ms"`
	ResultBytes      *int64      `json:"result_bytes"`
	StoredBundle     *int64      `json:"stored_bundle_bytes"`
}

// ParseTiers reads a tiers file: a JSON object of tier name → fields, laid over DefaultTiers
// (so a file may change one figure of one tier, or add tiers; a new tier's absent args, env and
// concurrent_requests limits are the Default* constants above, its other absent fields zero).
// Every role of a deployment must read the same file.
//
//	{"free": {"exec_per_minute": 20, "in_flight": 2}, "team": {"memory_mb": 256, "wall_time_ms": 10000, ...}}
func ParseTiers(data []byte) (map[string]Tier, error) {
	var file map[string]tierFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&file); err != nil {
		return nil, fmt.Errorf("tiers file: %w", err)
	}
	tiers := DefaultTiers()
	for name, f := range file {
		t, ok := tiers[name]
		if !ok {
			t = Tier{ArgsMax: DefaultArgsMax, EnvMax: DefaultEnvMax, ArgsEnvBytes: DefaultArgsEnvBytes, ConcurrentRequests: DefaultConcurrentRequests}
		}
		t.Name = name
		set(&t.ExecPerMinute, f.ExecPerMinute)
		set(&t.ExecPerDay, f.ExecPerDay)
		set(&t.MemoryMB, f.MemoryMB)
		set(&t.ModuleSize, f.ModuleSize)
		set(&t.InFlight, f.InFlight)
		set(&t.StdinMax, f.StdinMax)
		set(&t.StdoutMax, f.StdoutMax)
		set(&t.Priority, f.Priority)
		set(&t.ArgsMax, f.ArgsMax)
		set(&t.EnvMax, f.EnvMax)
		set(&t.ArgsEnvBytes, f.ArgsEnvBytes)
		set(&t.ConcurrentRequests, f.Concurrent)
		set(&t.MaxKeys, f.MaxKeys)
		t.Files = t.Files.over(f.Files)
		set(&t.UploadsPerMinute, f.UploadsPerMinute)
		set(&t.CompilesInFlight, f.CompilesInFlight)
		set(&t.ModuleBytes, f.ModuleBytes)
		set(&t.ResultBytes, f.ResultBytes)
		set(&t.StoredBundleBytes, f.StoredBundle)
		set(&t.MaxFunctions, f.MaxFunctions)
		for _, d := range []struct {
			dst *time.Duration
			ms  *int64
		}{{&t.WallTime, f.WallTimeMS}, {&t.CompileBase, f.CompileBaseMS}, {&t.CompilePerMiB, f.CompilePerMiBMS}, {&t.CompileMax, f.CompileMaxMS}} {
			if d.ms != nil {
				*d.dst = time.Duration(*d.ms) * time.Millisecond
			}
		}
		tiers[name] = t
	}
	if err := ValidateTiers(tiers); err != nil {
		return nil, fmt.Errorf("tiers file: %w", err)
	}
	return tiers, nil
}

func set[T any](dst *T, src *T) {
	if src != nil {
		*dst = *src
	}
}

// CompileSlots is how many compiles a tenant of t may have in flight: CompilesInFlight, at least 1.
func (t Tier) CompileSlots() int { return max(1, t.CompilesInFlight) }
