package schemas

import (
	"fmt"
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
}

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
		TierFree:      {Name: TierFree, ExecPerMinute: 10, ExecPerDay: 500, MemoryMB: 128, WallTime: 5 * time.Second, ModuleSize: 10 * MiB, InFlight: 1, StdinMax: MiB, StdoutMax: MiB, Priority: 1},
		TierBasic:     {Name: TierBasic, ExecPerMinute: 100, ExecPerDay: 10_000, MemoryMB: 256, WallTime: 10 * time.Second, ModuleSize: 25 * MiB, InFlight: 5, StdinMax: MiB, StdoutMax: MiB, Priority: 2},
		TierPro:       {Name: TierPro, ExecPerMinute: 500, ExecPerDay: 50_000, MemoryMB: 512, WallTime: 30 * time.Second, ModuleSize: 50 * MiB, InFlight: 20, StdinMax: MiB, StdoutMax: MiB, Priority: 3},
		TierUnlimited: {Name: TierUnlimited, MemoryMB: 512, WallTime: 30 * time.Second, ModuleSize: 50 * MiB, InFlight: 1000, StdinMax: MiB, StdoutMax: MiB, Priority: 3},
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
	case t.ExecPerMinute < 0 || t.ExecPerDay < 0:
		return fmt.Errorf("tier %s: rate limits must not be negative", t.Name)
	}
	return nil
}
