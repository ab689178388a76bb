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
