package wasmmodule

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tetratelabs/wabin/leb128"
	"github.com/tetratelabs/wazero"
)

// The modules in testdata/proposals each use one proposal beyond WebAssembly 2.0; regenerate
// them with go generate ./wasmmodule.
//
//go:generate sh -c "for f in testdata/proposals/*.wat; do wat2wasm --enable-all $DOLLAR{f} -o $DOLLAR{f%.wat}.wasm; done"

// proposalFixtures maps each fixture to the proposal it uses.
var proposalFixtures = map[string]Proposal{
	"exceptions":          ProposalExceptionHandling, // a tag section
	"exceptions-code":     ProposalExceptionHandling, // try/catch_all only
	"threads":             ProposalThreads,           // a shared memory
	"atomics":             ProposalThreads,           // atomic.fence only
	"tail-call":           ProposalTailCall,
	"memory64":            ProposalMemory64,
	"multi-memory":        ProposalMultiMemory,
	"extended-const":      ProposalExtendedConst,
	"function-references": ProposalFunctionReferences,
	"relaxed-simd":        ProposalRelaxedSIMD,
}

func TestInspect_Proposals(t *testing.T) {
	files, err := filepath.Glob("testdata/proposals/*.wasm")
	if err != nil || len(files) != len(proposalFixtures) {
		t.Fatalf("fixtures %v (%v), want %d", files, err, len(proposalFixtures))
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".wasm")
		t.Run(name, func(t *testing.T) {
			p, ok := proposalFixtures[name]
			if !ok {
				t.Fatalf("no proposal listed for %s", f)
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Inspect(b)
			want := "module uses the " + string(p) + " proposal ("
			if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "which the runtime does not support") {
				t.Fatalf("Inspect: %v, want an error containing %q", err, want)
			}
			t.Log(err)

			// The executor's wazero refuses it too, and its message is explained the same way.
			r := wazero.NewRuntime(context.Background())
			defer r.Close(context.Background())
			if _, cerr := r.CompileModule(context.Background(), b); cerr == nil {
				t.Fatal("wazero compiled it: the runtime supports this proposal now; Inspect should accept it")
			} else if got := ExplainCompileError(cerr.Error()); !strings.Contains(got, want) {
				switch p {
				case ProposalRelaxedSIMD, ProposalExceptionHandling:
					// wazero misreads these ("read block: type index out of range", "invalid
					// instruction 0x6"): only Inspect can name them.
					t.Logf("wazero: %v", cerr)
				default:
					t.Errorf("ExplainCompileError(%q) = %q, want it to contain %q", cerr, got, want)
				}
			}
		})
	}
}

// TestInspect_ProposalGC builds a module with a struct type (wabt cannot write GC yet).
func TestInspect_ProposalGC(t *testing.T) {
	sec := func(id byte, content []byte) []byte {
		return append(append([]byte{id}, leb128.EncodeUint32(uint32(len(content)))...), content...)
	}
	var m []byte
	m = append(m, magic...)
	m = append(m, coreVersion...)
	m = append(m, sec(secType, []byte{2, 0x60, 0, 0, 0x5f, 1, 0x7f, 0})...) // () -> (), struct { i32 }
	_, err := Inspect(m)
	if err == nil || !strings.Contains(err.Error(), "uses the gc proposal") {
		t.Fatalf("Inspect: %v, want the gc proposal named", err)
	}
	// A typed reference as a function's parameter.
	m = append(append([]byte{}, m[:8]...), sec(secType, []byte{1, 0x60, 1, 0x64, 0x70, 0})...)
	if _, err := Inspect(m); err == nil || !strings.Contains(err.Error(), "uses the function-references proposal") {
		t.Fatalf("Inspect: %v, want the function-references proposal named", err)
	}
}

func TestExplainCompileError_Unchanged(t *testing.T) {
	for _, msg := range []string{"invalid magic number", `feature "unknown" is disabled`, ""} {
		if got := ExplainCompileError(msg); got != msg {
			t.Errorf("ExplainCompileError(%q) = %q", msg, got)
		}
	}
}
