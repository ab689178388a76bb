package executor

import (
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/schemas"
)

func TestConfig_Validate(t *testing.T) {
	given := Config{CacheDir: t.TempDir()}
	if err := given.Validate(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(given, Config{CacheDir: given.CacheDir}) {
		t.Errorf("Validate changed the config: %+v", given)
	}
	c, err := given.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.Workers != max(4, 3*runtime.NumCPU()) || c.LongRunning != runtime.NumCPU() || c.CompileTimeout != 0 ||
		len(c.WorkerCommand) != 2 || c.WorkerCommand[1] != "worker" || c.NodeID == "" || len(c.Tiers) != len(schemas.DefaultTiers()) ||
		c.WorkerMemoryLimit != 512*schemas.MiB+256*schemas.MiB+compiledCodeFactor*256*schemas.MiB+1<<30 || c.Logger == nil || c.Replicas != 1 || c.SpareWorkers != 1 {
		t.Errorf("defaults: %+v", c)
	}
	// Compile budgets come from the tier table (base + per MiB, at most the tier's max);
	// CompileTimeout only caps them.
	free, unlimited := c.Tiers[schemas.TierFree], c.Tiers[schemas.TierUnlimited]
	if got, want := c.compileBudget(free, 5*schemas.MiB-1), free.CompileBase+5*free.CompilePerMiB; got != want {
		t.Errorf("free budget for 5 MiB: %v, want %v", got, want)
	}
	if got := c.compileBudget(free, free.ModuleSize*4); got != free.CompileMax {
		t.Errorf("free budget past its max: %v, want %v", got, free.CompileMax)
	}
	if got, want := c.warmTimeout(), c.compileBudget(unlimited, unlimited.ModuleSize); got != want || got < 5*time.Minute {
		t.Errorf("warm-up timeout %v, want the largest budget %v", got, want)
	}
	c.CompileTimeout = time.Second
	if got := c.compileBudget(unlimited, unlimited.ModuleSize); got != time.Second {
		t.Errorf("CompileTimeout does not cap the budget: %v", got)
	}

	bad := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no cache dir", Config{}, "cache dir"},
		{"bad tier", Config{CacheDir: "x", Tiers: map[string]schemas.Tier{"free": {Name: "free"}}}, "memory_mb"},
		{"misnamed tier", Config{CacheDir: "x", Tiers: map[string]schemas.Tier{"a": schemas.DefaultTiers()[schemas.TierFree]}}, "is named"},
	}
	for _, tt := range bad {
		if err := tt.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error about %q", tt.name, err, tt.want)
		}
	}
}
