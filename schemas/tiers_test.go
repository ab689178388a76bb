package schemas

import (
	"testing"
	"time"
)

func TestParseTiers(t *testing.T) {
	tiers, err := ParseTiers([]byte(`{"free": {"exec_per_minute": 20, "in_flight": 3}, "team": {"memory_mb": 64, "wall_time_ms": 2000, "module_size": 1000, "in_flight": 2, "stdin_max": 10, "stdout_max": 10, "priority": 2}}`))
	if err != nil {
		t.Fatal(err)
	}
	free := tiers[TierFree]
	if free.ExecPerMinute != 20 || free.InFlight != 3 || free.ExecPerDay != 500 || free.MemoryMB != 128 {
		t.Errorf("free: %+v", free)
	}
	if team := tiers["team"]; team.Name != "team" || team.WallTime != 2*time.Second || team.ExecPerMinute != 0 {
		t.Errorf("team: %+v", team)
	}
	if _, ok := tiers[TierPro]; !ok {
		t.Error("defaults lost")
	}
	for _, bad := range []string{`{"free": {"exec_per_minut": 1}}`, `{"Bad Name": {}}`, `{"free": {"memory_mb": -1}}`, `[]`, `{"x": {}}`} {
		if _, err := ParseTiers([]byte(bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

// The args, env and request-concurrency limits: every default tier has them, a tiers file may
// change them, a new tier gets the defaults, and nonsense is refused.
func TestParseTiers_ArgsEnvAndConcurrency(t *testing.T) {
	for name, tier := range DefaultTiers() {
		if err := tier.Validate(); err != nil {
			t.Errorf("default tier %s: %v", name, err)
		}
	}
	tiers, err := ParseTiers([]byte(`{"free": {"args_max": 8, "env_max": 4, "args_env_bytes": 1024, "concurrent_requests": 2}, "team": {"memory_mb": 64, "wall_time_ms": 2000, "module_size": 1000, "in_flight": 2, "stdin_max": 10, "stdout_max": 10}}`))
	if err != nil {
		t.Fatal(err)
	}
	if f := tiers[TierFree]; f.ArgsMax != 8 || f.EnvMax != 4 || f.ArgsEnvBytes != 1024 || f.ConcurrentRequests != 2 {
		t.Errorf("free: %+v", f)
	}
	if team := tiers["team"]; team.ArgsMax != DefaultArgsMax || team.EnvMax != DefaultEnvMax || team.ArgsEnvBytes != DefaultArgsEnvBytes || team.ConcurrentRequests != DefaultConcurrentRequests {
		t.Errorf("a new tier without the fields: %+v", team)
	}
	for _, bad := range []string{
		`{"free": {"args_max": 0}}`, `{"free": {"env_max": -1}}`, `{"free": {"args_max": 1000000}}`,
		`{"free": {"args_env_bytes": 0}}`, `{"free": {"args_env_bytes": 1073741824}}`, `{"free": {"concurrent_requests": 0}}`,
	} {
		if _, err := ParseTiers([]byte(bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

func TestValidateTiers(t *testing.T) {
	if err := ValidateTiers(DefaultTiers()); err != nil {
		t.Fatalf("default tiers: %v", err)
	}
	misnamed := DefaultTiers()
	misnamed["gold"] = misnamed[TierPro]
	bad := DefaultTiers()
	free := bad[TierFree]
	free.MemoryMB = 0
	bad[TierFree] = free
	for name, tiers := range map[string]map[string]Tier{"empty": {}, "misnamed": misnamed, "invalid": bad} {
		if err := ValidateTiers(tiers); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// Big modules: compile budgets and the function cap are tier settings, and unlimited takes
// modules of 256 MiB.
func TestParseTiers_CompileBudget(t *testing.T) {
	tiers, err := ParseTiers([]byte(`{"free": {"compile_base_ms": 2000, "compile_per_mib_ms": 500, "compile_max_ms": 4000, "max_functions": 10}}`))
	if err != nil {
		t.Fatal(err)
	}
	free := tiers[TierFree]
	if free.FunctionCap() != 10 || free.CompileBudget(0) != 2*time.Second || free.CompileBudget(3*MiB) != 3500*time.Millisecond || free.CompileBudget(free.ModuleSize) != 4*time.Second {
		t.Errorf("free: %+v, budgets %v %v", free, free.CompileBudget(3*MiB), free.CompileBudget(free.ModuleSize))
	}
	u := DefaultTiers()[TierUnlimited]
	if u.ModuleSize < 256*MiB || u.FunctionCap() < 1_000_000 || u.StdoutMax < 64*MiB {
		t.Errorf("unlimited: %+v", u)
	}
	if b := u.CompileBudget(u.ModuleSize); b <= u.CompileBudget(MiB) || b > u.CompileMax {
		t.Errorf("unlimited budget for its largest module: %v", b)
	}
	if (Tier{}).CompileBudget(MiB) != DefaultCompileBase+DefaultCompilePerMiB || (Tier{}).FunctionCap() != DefaultMaxFunctions {
		t.Error("a tier without the fields does not get the defaults")
	}
	for _, bad := range []string{`{"free": {"max_functions": -1}}`, `{"free": {"compile_max_ms": -5}}`, `{"unlimited": {"module_size": 2147483648}}`} {
		if _, err := ParseTiers([]byte(bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}
