package wasmmodule

import (
	"fmt"
	"strings"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// Proposal is a WebAssembly proposal beyond 2.0 (what Inspect accepts and the executor's wazero
// runs). A module that uses one is refused with a message naming it, instead of the decoder's
// "unknown section id 13" or "invalid instruction 0x6": the guard recognises each proposal's
// sections, types, limits flags, constant expressions and instructions (scanCode).
type Proposal string

// The proposals wazero v1.12 does not run in the executor's configuration (some it has behind
// experimental flags, which WasmWiz does not turn on).
const (
	ProposalExceptionHandling  Proposal = "exception-handling"
	ProposalThreads            Proposal = "threads"
	ProposalTailCall           Proposal = "tail-call"
	ProposalMemory64           Proposal = "memory64"
	ProposalMultiMemory        Proposal = "multi-memory"
	ProposalExtendedConst      Proposal = "extended-const"
	ProposalFunctionReferences Proposal = "function-references"
	ProposalGC                 Proposal = "gc"
	ProposalRelaxedSIMD        Proposal = "relaxed-simd"
)

// proposalError is what the guard returns for a module using a proposal; InspectReader turns it
// into an invalid_module error whose message names the proposal.
type proposalError struct {
	p    Proposal
	what string // where: "a tag section", "instruction return_call in function 3"
}

func (e *proposalError) Error() string {
	return fmt.Sprintf("module uses the %s proposal (%s), which the runtime does not support", e.p, e.what)
}

func (e *proposalError) schemaError() *schemas.Error {
	return schemas.Errorf(schemas.CodeInvalidModule, "%s", e.Error())
}

func uses(p Proposal, format string, args ...any) error {
	return &proposalError{p: p, what: fmt.Sprintf(format, args...)}
}

// refTypeProposal names the proposal a type byte belongs to when it is not a WebAssembly 2.0
// value type, or "" when it belongs to none the guard knows.
func refTypeProposal(t byte) Proposal {
	switch t {
	case 0x63, 0x64: // (ref null ht), (ref ht)
		return ProposalFunctionReferences
	case 0x69: // exnref
		return ProposalExceptionHandling
	case 0x6e, 0x6d, 0x6c, 0x6b, 0x6a, 0x71, 0x72, 0x73, 0x74: // anyref eqref i31ref structref arrayref and the bottom types
		return ProposalGC
	}
	return ""
}

// valTypeError is the error for a type byte that is not a WebAssembly 2.0 value type: the
// proposal it comes from, or nil when it is just invalid (the caller says so).
func valTypeError(t byte, where string) error {
	if p := refTypeProposal(t); p != "" {
		return uses(p, "a %s of type %#x", where, t)
	}
	return nil
}

// ehOps are the exception-handling instructions, by opcode.
var ehOps = map[byte]string{0x06: "try", 0x07: "catch", 0x08: "throw", 0x09: "rethrow", 0x0a: "throw_ref",
	0x18: "delegate", 0x19: "catch_all", 0x1f: "try_table"}

// codeScanner walks one function body's instructions (after its locals) looking for a
// proposal's instructions. It is not a validator: anything it does not know (an unassigned
// opcode, a truncated immediate) ends the scan without an error, and wazero's compile says
// what is wrong.
//
// It reads the body through a window (buf) refilled from src, so that a large body is never
// held whole.
type codeScanner struct {
	src source // the rest of the body
	buf []byte // the window's storage
	b   []byte // unread bytes of the window
	err error  // the source failed: the module is truncated
	fn  int    // function index, for messages
}

func (s *codeScanner) next() (byte, bool) {
	if len(s.b) == 0 && !s.refill() {
		return 0, false
	}
	c := s.b[0]
	s.b = s.b[1:]
	return c, true
}

func (s *codeScanner) refill() bool {
	n := min(len(s.buf), s.src.Len())
	if n == 0 {
		return false
	}
	if err := s.src.Read(s.buf[:n]); err != nil {
		s.err = err
		return false
	}
	s.b = s.buf[:n]
	return true
}

// leb skips a LEB128 number of at most max bytes and returns its low 32 bits (enough for
// opcodes, indices and flags).
func (s *codeScanner) leb(max int) (uint32, bool) {
	var v uint32
	for i := range max {
		c, ok := s.next()
		if !ok {
			return 0, false
		}
		if i < 5 {
			v |= uint32(c&0x7f) << (7 * i)
		}
		if c&0x80 == 0 {
			return v, true
		}
	}
	return 0, false
}

func (s *codeScanner) u32() (uint32, bool) { return s.leb(5) }

func (s *codeScanner) skip(n int) bool {
	for ; n > 0; n-- {
		if _, ok := s.next(); !ok {
			return false
		}
	}
	return true
}

func (s *codeScanner) instr(name string) string {
	return fmt.Sprintf("instruction %s in function %d", name, s.fn)
}

// blockType reads a block type: empty (0x40), a value type, or a type index (s33).
func (s *codeScanner) blockType() (bool, error) {
	c, ok := s.next()
	if !ok {
		return false, nil
	}
	if c == 0x40 || valueType(c) {
		return true, nil
	}
	if err := valTypeError(c, "block result"); err != nil {
		return false, err
	}
	for c&0x80 != 0 { // the rest of a type index
		if c, ok = s.next(); !ok {
			return false, nil
		}
	}
	return true, nil
}

// memarg reads a load's or store's alignment and offset; bit 6 of the alignment says a memory
// index follows (multi-memory).
func (s *codeScanner) memarg(name string) (bool, error) {
	align, ok := s.u32()
	if !ok {
		return false, nil
	}
	if align&0x40 != 0 {
		return false, uses(ProposalMultiMemory, "%s on a memory other than the first", s.instr(name))
	}
	_, ok = s.leb(10) // u64 offsets are memory64's, whose memory the guard refused already
	return ok, nil
}

// memIndex reads a memory index that must be 0 without multi-memory.
func (s *codeScanner) memIndex(name string) (bool, error) {
	c, ok := s.next()
	if !ok {
		return false, nil
	}
	if c != 0 {
		return false, uses(ProposalMultiMemory, "%s on memory %d", s.instr(name), c)
	}
	return true, nil
}

// scanCode looks through the instructions of a function body, the rest of src, for a proposal's,
// reading through buf. It returns nil when it finds none (or stops early on bytes it does not
// know), and reads src to its end either way.
func scanCode(src source, buf []byte, fn int) error {
	s := &codeScanner{src: src, buf: buf, fn: fn}
	err := s.scan()
	if s.err != nil {
		return s.err
	}
	if err != nil {
		return err
	}
	return src.Discard(src.Len())
}

func (s *codeScanner) scan() error {
	for {
		op, ok := s.next()
		if !ok {
			return nil
		}
		var err error
		switch {
		case op <= 0x01, op == 0x05, op == 0x0b, op == 0x0f, op == 0x1a, op == 0x1b,
			op >= 0x45 && op <= 0xc4, op == 0xd1:
			// no immediates
		case op >= 0x02 && op <= 0x04:
			ok, err = s.blockType()
		case ehOps[op] != "":
			return uses(ProposalExceptionHandling, "%s", s.instr(ehOps[op]))
		case op == 0x0c, op == 0x0d, op == 0x10, op >= 0x20 && op <= 0x26, op == 0xd2:
			_, ok = s.u32()
		case op == 0x0e:
			var n uint32
			if n, ok = s.u32(); ok && int64(n) <= int64(s.src.Len()+len(s.b)) {
				for i := uint32(0); i <= n && ok; i++ {
					_, ok = s.u32()
				}
			} else {
				ok = false
			}
		case op == 0x11:
			if _, ok = s.u32(); ok {
				_, ok = s.u32()
			}
		case op == 0x12:
			return uses(ProposalTailCall, "%s", s.instr("return_call"))
		case op == 0x13:
			return uses(ProposalTailCall, "%s", s.instr("return_call_indirect"))
		case op == 0x14:
			return uses(ProposalFunctionReferences, "%s", s.instr("call_ref"))
		case op == 0x15:
			return uses(ProposalFunctionReferences, "%s", s.instr("return_call_ref"))
		case op == 0x1c: // select t*
			var n uint32
			if n, ok = s.u32(); ok {
				for ; n > 0 && ok; n-- {
					var t byte
					if t, ok = s.next(); ok && !valueType(t) {
						if err := valTypeError(t, "select result"); err != nil {
							return err
						}
						ok = false
					}
				}
			}
		case op >= 0x28 && op <= 0x3e:
			ok, err = s.memarg(fmt.Sprintf("load/store %#x", op))
		case op == 0x3f:
			ok, err = s.memIndex("memory.size")
		case op == 0x40:
			ok, err = s.memIndex("memory.grow")
		case op == 0x41:
			_, ok = s.leb(5)
		case op == 0x42:
			_, ok = s.leb(10)
		case op == 0x43:
			ok = s.skip(4)
		case op == 0x44:
			ok = s.skip(8)
		case op == 0xd0: // ref.null ht
			var t byte
			if t, ok = s.next(); ok && t != 0x70 && t != 0x6f {
				if p := refTypeProposal(t); p != "" {
					return uses(p, "%s of heap type %#x", s.instr("ref.null"), t)
				}
				return uses(ProposalFunctionReferences, "%s of a typed function reference", s.instr("ref.null"))
			}
		case op == 0xd3:
			return uses(ProposalGC, "%s", s.instr("ref.eq"))
		case op == 0xd4:
			return uses(ProposalFunctionReferences, "%s", s.instr("ref.as_non_null"))
		case op == 0xd5:
			return uses(ProposalFunctionReferences, "%s", s.instr("br_on_null"))
		case op == 0xd6:
			return uses(ProposalFunctionReferences, "%s", s.instr("br_on_non_null"))
		case op == 0xfb:
			sub, _ := s.u32()
			return uses(ProposalGC, "%s", s.instr(fmt.Sprintf("0xfb %d (struct, array, i31 or cast)", sub)))
		case op == 0xfc:
			ok, err = s.misc()
		case op == 0xfd:
			ok, err = s.simd()
		case op == 0xfe:
			sub, _ := s.u32()
			name := fmt.Sprintf("0xfe %#x (atomic)", sub)
			if sub == 0x03 {
				name = "atomic.fence"
			}
			return uses(ProposalThreads, "%s", s.instr(name))
		default:
			return nil // unknown to the scanner: wazero decides
		}
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
	}
}

// misc reads the 0xfc instructions of WebAssembly 2.0 (saturating truncation, bulk memory,
// tables).
func (s *codeScanner) misc() (bool, error) {
	sub, ok := s.u32()
	if !ok {
		return false, nil
	}
	switch {
	case sub <= 7: // trunc_sat
		return true, nil
	case sub == 8: // memory.init data mem
		if _, ok = s.u32(); !ok {
			return false, nil
		}
		return s.memIndex("memory.init")
	case sub == 9, sub == 13, sub >= 15 && sub <= 17: // data.drop, elem.drop, table.grow/size/fill
		_, ok = s.u32()
		return ok, nil
	case sub == 10: // memory.copy dst src
		if ok, err := s.memIndex("memory.copy"); !ok {
			return false, err
		}
		return s.memIndex("memory.copy")
	case sub == 11:
		return s.memIndex("memory.fill")
	case sub == 12, sub == 14: // table.init, table.copy
		if _, ok = s.u32(); ok {
			_, ok = s.u32()
		}
		return ok, nil
	}
	return false, nil
}

// simd reads a 0xfd instruction: SIMD of WebAssembly 2.0, or relaxed SIMD.
func (s *codeScanner) simd() (bool, error) {
	sub, ok := s.u32()
	if !ok {
		return false, nil
	}
	switch {
	case sub <= 0x0b, sub == 0x5c, sub == 0x5d: // loads and stores
		return s.memarg(fmt.Sprintf("v128 %#x", sub))
	case sub == 0x0c, sub == 0x0d: // v128.const, i8x16.shuffle
		return s.skip(16), nil
	case sub >= 0x15 && sub <= 0x22: // extract_lane, replace_lane
		return s.skip(1), nil
	case sub >= 0x54 && sub <= 0x5b: // load_lane, store_lane
		if ok, err := s.memarg(fmt.Sprintf("v128 %#x", sub)); !ok {
			return false, err
		}
		return s.skip(1), nil
	case sub <= 0xff:
		return true, nil
	case sub <= 0x11f:
		return false, uses(ProposalRelaxedSIMD, "%s", s.instr(fmt.Sprintf("0xfd %#x (relaxed SIMD)", sub)))
	}
	return false, nil
}

// wazeroFeatures maps the feature names in wazero's compile errors (`... as feature "tail-call"
// is disabled`) to proposals.
var wazeroFeatures = map[string]Proposal{
	"threads": ProposalThreads, "tail-call": ProposalTailCall, "extended-const": ProposalExtendedConst,
	"exception-handling": ProposalExceptionHandling, "typed-function-references": ProposalFunctionReferences,
}

// ExplainCompileError rewrites a compile error of the executor's wazero that comes from a
// proposal the runtime does not support into the message Inspect gives for it; other messages
// come back unchanged. Inspect refuses such modules before they reach a compiler; this covers
// modules stored before it did, and anything its scan does not recognise.
func ExplainCompileError(msg string) string {
	if _, rest, ok := strings.Cut(msg, `feature "`); ok {
		if name, _, ok := strings.Cut(rest, `"`); ok {
			if p, ok := wazeroFeatures[name]; ok {
				return (&proposalError{p: p, what: msg}).Error()
			}
		}
	}
	for _, m := range []struct {
		substr string
		p      Proposal
	}{
		{"shared memory requested", ProposalThreads},
		{"at most one memory allowed", ProposalMultiMemory},
		{"invalid byte for limits: 0x4", ProposalMemory64},
		{"invalid byte for limits: 0x5", ProposalMemory64},
		{"tag section not supported", ProposalExceptionHandling},
	} {
		if strings.Contains(msg, m.substr) {
			return (&proposalError{p: m.p, what: msg}).Error()
		}
	}
	return msg
}
