package gateway

import (
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/internal/streams"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// A compiling module's record is abandoned (compiled again by the next reader) only once every
// attempt of its compile, and the pauses between them, must have ended; and a tenant's compile
// slot outlives that compile if the gateway dies.
func TestCompileDeadline_CoversEveryAttempt(t *testing.T) {
	g := &Server{cfg: Config{UploadWait: 30 * time.Second}}
	for name, tier := range schemas.DefaultTiers() {
		size := tier.ModuleSize
		longest := compileRequestTimeout(tier, size)*compileAttempts + compilePauses
		if w := g.uploadWait(tier, size, true); w != longest {
			t.Errorf("%s: ?wait=true waits %v, want every attempt's %v", name, w, longest)
		}
		if g.uploadWait(tier, size, false) != 30*time.Second {
			t.Errorf("%s: an upload without wait does not wait UploadWait", name)
		}
		d := compileDeadline(tier, size)
		m := &schemas.Module{Status: schemas.ModuleCompiling, CompileDeadline: &d}
		if abandoned(m) {
			t.Errorf("%s: a compile started now is abandoned", name)
		}
		past := time.Now().Add(-longest - compileSlack - time.Second)
		m.CompileDeadline = &past
		if !abandoned(m) {
			t.Errorf("%s: a compile past its deadline and slack is not abandoned", name)
		}
		if m.Status = schemas.ModuleReady; abandoned(m) {
			t.Errorf("%s: a ready module is abandoned", name)
		}
		if slot := streams.CompilingAge(tier); slot < longest {
			t.Errorf("%s: the compile slot's max age %v is shorter than the longest compile %v", name, slot, longest)
		}
	}
}
