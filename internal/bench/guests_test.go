package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"testing"

	"github.com/wasmwiz/wasmwiz/internal/fixtures"
)

// The bench's echo is a copy of the fixture: they must not drift apart.
func TestGuests_EchoIsTheFixture(t *testing.T) {
	if !bytes.Equal(echoWasm, fixtures.Wasm("echo")) {
		t.Fatal("internal/bench/guests/echo.wasm differs from internal/fixtures/wasm/echo.wasm")
	}
}

// Every bench guest runs in wazero and answers what the bench expects of it.
func TestGuests_Run(t *testing.T) {
	ctx := context.Background()
	lim, err := newLimitRunner(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	defer lim.close(ctx)
	for _, name := range ModuleNames {
		t.Run(name, func(t *testing.T) {
			wasm, stdin, err := guest(name)
			if err != nil {
				t.Fatal(err)
			}
			cm, err := lim.rt.CompileModule(ctx, wasm)
			if err != nil {
				t.Fatal(err)
			}
			out, outcome := runCompiled(ctx, lim.rt, cm, &benchModule{Name: name, stdin: stdin, args: []string{name}})
			if outcome != OutcomeOK {
				t.Fatalf("outcome %s", outcome)
			}
			switch name {
			case "echo":
				if !bytes.Equal(out, stdin) {
					t.Errorf("stdout %q, want stdin %q", out, stdin)
				}
			case "probe":
				if want := fmt.Sprintf("%x\n", sha256.Sum256(stdin)); string(out) != want {
					t.Errorf("stdout %q, want %q", out, want)
				}
			}
		})
	}
	if _, _, err := guest("nope"); err == nil {
		t.Error("guest(nope) did not fail")
	}
}

func TestConfig_Validate(t *testing.T) {
	for _, c := range []Config{
		{Modes: []string{"rest", "nope"}},
		{Modules: []string{"echo", "tablebomb"}},
		{Concurrency: []int{1, 0}},
		{ProfileMode: "x"},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}
