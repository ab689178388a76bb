package wasmmodule

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/tetratelabs/wabin/leb128"
)

// Why a guard in front of wabin: wabin's decoder sizes its allocations from counts it reads
// (vector lengths, string and data lengths, local counts) before it knows whether that many bytes
// follow, so a hostile module of a few dozen bytes can make it allocate gigabytes (for example a
// type section that declares 2^32-1 parameters, or one code entry with 2^32-1 locals, which wabin
// expands into a 4 GiB slice). guard walks the module's structure first, with the same LEB128
// reader wabin uses, and checks every such count against the bytes left in its section; only
// then does wabin decode it. Instruction bodies are not walked: wabin keeps them as raw bytes.
//
// guard also removes the custom sections (counting their bytes), since nothing here needs their
// contents and wabin's name-section decoder has the same preallocation problem.

// maxLocals is the most locals one function may declare, the limit of the major engines (V8,
// SpiderMonkey, JavaScriptCore). wabin expands local declarations one byte per local.
const maxLocals = 50_000

// Section ids, in the order they must appear (the data count section sits between the element
// and code sections).
const (
	secCustom    = 0
	secType      = 1
	secImport    = 2
	secFunction  = 3
	secTable     = 4
	secMemory    = 5
	secGlobal    = 6
	secExport    = 7
	secStart     = 8
	secElement   = 9
	secCode      = 10
	secData      = 11
	secDataCount = 12
)

var sectionNames = [...]string{"custom", "type", "import", "function", "table", "memory", "global",
	"export", "start", "element", "code", "data", "data count"}

// sectionRank is a section's place in the required order.
func sectionRank(id byte) int {
	switch id {
	case secDataCount:
		return secElement + 1
	case secCode, secData:
		return int(id) + 1
	}
	return int(id)
}

// guarded is what guard learned about a module.
type guarded struct {
	core               []byte // the module without its custom sections
	customSectionBytes int64  // bytes taken by custom sections, headers included
	customSections     int
}

// guard checks the structure of b (which starts with a valid header) and bounds every count in it.
func guard(b []byte) (guarded, error) {
	g := guarded{core: b}
	var stripped []byte // lazily, b without custom sections
	r := bytes.NewReader(b[8:])
	lastRank := 0
	for r.Len() > 0 {
		start := len(b) - r.Len()
		id, _ := r.ReadByte()
		if int(id) >= len(sectionNames) {
			return g, fmt.Errorf("unknown section id %d at offset %d", id, start)
		}
		name := sectionNames[id]
		size, _, err := leb128.DecodeUint32(r)
		if err != nil {
			return g, fmt.Errorf("%s section: size: %v", name, err)
		}
		if int64(size) > int64(r.Len()) {
			return g, fmt.Errorf("%s section: declares %d bytes but only %d remain", name, size, r.Len())
		}
		contentStart := len(b) - r.Len()
		end := contentStart + int(size)
		content := b[contentStart:end]
		r.Reset(b[end:])

		if id == secCustom {
			if stripped == nil {
				stripped = append(make([]byte, 0, len(b)), b[:start]...)
			}
			g.customSectionBytes += int64(end - start)
			g.customSections++
			if err := checkCustom(content); err != nil {
				return g, fmt.Errorf("custom section: %v", err)
			}
			continue
		}
		if stripped != nil {
			stripped = append(stripped, b[start:end]...)
		}
		rank := sectionRank(id)
		if rank <= lastRank {
			return g, fmt.Errorf("%s section is out of order or repeated", name)
		}
		lastRank = rank
		s := newSectionReader(name, content)
		if err := s.walk(id); err != nil {
			return g, err
		}
		if s.Len() != 0 {
			return g, fmt.Errorf("%s section: %d bytes left over after its contents", name, s.Len())
		}
	}
	if stripped != nil {
		g.core = stripped
	}
	return g, nil
}

// checkCustom checks that a custom section's name fits in it.
func checkCustom(content []byte) error {
	r := bytes.NewReader(content)
	n, _, err := leb128.DecodeUint32(r)
	if err != nil {
		return fmt.Errorf("name: %v", err)
	}
	if int64(n) > int64(r.Len()) {
		return errors.New("name is longer than the section")
	}
	return nil
}

// sectionReader reads one section's content; nothing it reads can pass the section's end.
type sectionReader struct {
	*bytes.Reader
	buf  []byte
	name string
}

func newSectionReader(name string, content []byte) *sectionReader {
	return &sectionReader{Reader: bytes.NewReader(content), buf: content, name: name}
}

func (s *sectionReader) errorf(format string, args ...any) error {
	return fmt.Errorf("%s section: "+format, append([]any{s.name}, args...)...)
}

func (s *sectionReader) u32(what string) (uint32, error) {
	v, _, err := leb128.DecodeUint32(s.Reader)
	if err != nil {
		return 0, s.errorf("%s: %v", what, err)
	}
	return v, nil
}

func (s *sectionReader) byte(what string) (byte, error) {
	c, err := s.ReadByte()
	if err != nil {
		return 0, s.errorf("%s: unexpected end", what)
	}
	return c, nil
}

// count reads a vector length whose elements take at least minSize bytes each and checks that they
// can fit in what is left of the section.
func (s *sectionReader) count(what string, minSize int) (uint32, error) {
	n, err := s.u32(what + " count")
	if err != nil {
		return 0, err
	}
	if uint64(n)*uint64(minSize) > uint64(s.Len()) {
		return 0, s.errorf("%d %s cannot fit in the %d bytes left", n, what, s.Len())
	}
	return n, nil
}

// skip reads a length-prefixed run of bytes (a name, a value type vector, data) and skips it.
func (s *sectionReader) skip(what string) error {
	n, err := s.count(what, 1)
	if err != nil {
		return err
	}
	_, err = s.Seek(int64(n), 1)
	return err
}

func (s *sectionReader) fixed(what string, n int) error {
	if s.Len() < n {
		return s.errorf("%s: unexpected end", what)
	}
	_, err := s.Seek(int64(n), 1)
	return err
}

func (s *sectionReader) limits() error {
	flag, err := s.byte("limits")
	if err != nil {
		return err
	}
	if flag > 1 {
		return s.errorf("limits flag %#x is not 0 or 1", flag)
	}
	if _, err := s.u32("limits minimum"); err != nil {
		return err
	}
	if flag == 1 {
		if _, err := s.u32("limits maximum"); err != nil {
			return err
		}
	}
	return nil
}

// constExpr skips a constant expression: one instruction (as wabin accepts) and end.
func (s *sectionReader) constExpr() error {
	op, err := s.byte("constant expression")
	if err != nil {
		return err
	}
	switch op {
	case 0x41: // i32.const
		_, _, err = leb128.DecodeInt32(s.Reader)
	case 0x42: // i64.const
		_, _, err = leb128.DecodeInt64(s.Reader)
	case 0x43: // f32.const
		err = s.fixed("f32.const", 4)
	case 0x44: // f64.const
		err = s.fixed("f64.const", 8)
	case 0x23, 0xd2: // global.get, ref.func
		_, err = s.u32("index")
	case 0xd0: // ref.null
		_, err = s.byte("reference type")
	case 0xfd: // v128.const
		var sub byte
		if sub, err = s.byte("vector opcode"); err == nil {
			if sub != 0x0c {
				return s.errorf("vector opcode %#x is not allowed in a constant expression", sub)
			}
			err = s.fixed("v128.const", 16)
		}
	default:
		return s.errorf("opcode %#x is not allowed in a constant expression", op)
	}
	if err != nil {
		return s.errorf("constant expression: %v", err)
	}
	if end, err := s.byte("constant expression end"); err != nil {
		return err
	} else if end != 0x0b {
		return s.errorf("constant expression is not terminated")
	}
	return nil
}

// walk checks one non-custom section.
func (s *sectionReader) walk(id byte) error {
	switch id {
	case secStart, secDataCount:
		_, err := s.u32("index")
		return err
	case secMemory:
		// wabin reads one memory even when the count is 0 (and then fails on the section's
		// length), so a valid but empty memory section is refused; toolchains do not emit one.
		n, err := s.count("memories", 2)
		if err != nil {
			return err
		}
		if n > 1 {
			return s.errorf("%d memories declared; at most one is supported", n)
		}
		for ; n > 0; n-- {
			if err := s.limits(); err != nil {
				return err
			}
		}
		return nil
	}

	n, err := s.count("entries", minEntrySize[id])
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		if err := s.entry(id); err != nil {
			return err
		}
	}
	return nil
}

// minEntrySize is the fewest bytes an entry of each vector section can take: a function type is
// at least 0x60 and two empty vectors, an import two empty names, a kind and an index, and so on.
var minEntrySize = [...]int{
	secType: 3, secImport: 4, secFunction: 1, secTable: 3, secGlobal: 4, secExport: 3,
	secElement: 2, secCode: 3, secData: 2,
}

// entry checks one entry of a vector section.
func (s *sectionReader) entry(id byte) error {
	switch id {
	case secType:
		if form, err := s.byte("type form"); err != nil {
			return err
		} else if form != 0x60 {
			return s.errorf("type form %#x is not a function type (0x60)", form)
		}
		if err := s.skip("parameters"); err != nil {
			return err
		}
		return s.skip("results")
	case secImport:
		if err := s.skip("import module name"); err != nil {
			return err
		}
		if err := s.skip("import name"); err != nil {
			return err
		}
		kind, err := s.byte("import kind")
		if err != nil {
			return err
		}
		switch kind {
		case 0: // function
			_, err = s.u32("type index")
			return err
		case 1: // table
			if _, err := s.byte("table type"); err != nil {
				return err
			}
			return s.limits()
		case 2: // memory
			return s.limits()
		case 3: // global
			return s.fixed("global type", 2)
		}
		return s.errorf("import kind %#x is not valid", kind)
	case secFunction:
		_, err := s.u32("type index")
		return err
	case secTable:
		if _, err := s.byte("table type"); err != nil {
			return err
		}
		return s.limits()
	case secGlobal:
		if err := s.fixed("global type", 2); err != nil {
			return err
		}
		return s.constExpr()
	case secExport:
		if err := s.skip("export name"); err != nil {
			return err
		}
		if _, err := s.byte("export kind"); err != nil {
			return err
		}
		_, err := s.u32("export index")
		return err
	case secElement:
		return s.element()
	case secCode:
		return s.code()
	case secData:
		prefix, err := s.u32("data segment flags")
		if err != nil {
			return err
		}
		switch prefix {
		case 2:
			if _, err := s.u32("memory index"); err != nil {
				return err
			}
			fallthrough
		case 0:
			if err := s.constExpr(); err != nil {
				return err
			}
		case 1:
		default:
			return s.errorf("data segment flags %d are not valid", prefix)
		}
		return s.skip("data bytes")
	}
	return s.errorf("unexpected section") // not reached: walk handles every other id
}

func (s *sectionReader) element() error {
	prefix, err := s.u32("element segment flags")
	if err != nil {
		return err
	}
	if prefix > 7 {
		return s.errorf("element segment flags %d are not valid", prefix)
	}
	if prefix == 2 || prefix == 6 {
		if _, err := s.u32("table index"); err != nil {
			return err
		}
	}
	if prefix == 0 || prefix == 2 || prefix == 4 || prefix == 6 {
		if err := s.constExpr(); err != nil {
			return err
		}
	}
	if prefix != 0 && prefix != 4 {
		if _, err := s.byte("element kind"); err != nil {
			return err
		}
	}
	if prefix < 4 {
		n, err := s.count("function indices", 1)
		if err != nil {
			return err
		}
		for ; n > 0; n-- {
			if _, err := s.u32("function index"); err != nil {
				return err
			}
		}
		return nil
	}
	n, err := s.count("element expressions", 2)
	if err != nil {
		return err
	}
	for ; n > 0; n-- {
		if err := s.constExpr(); err != nil {
			return err
		}
	}
	return nil
}

// code checks one function body's size and its local declarations.
func (s *sectionReader) code() error {
	size, err := s.count("function body bytes", 1)
	if err != nil {
		return err
	}
	off := len(s.buf) - s.Len()
	body := newSectionReader(s.name, s.buf[off:off+int(size)])
	groups, err := body.count("local declarations", 2)
	if err != nil {
		return err
	}
	var locals uint64
	for ; groups > 0; groups-- {
		n, err := body.u32("local count")
		if err != nil {
			return err
		}
		if locals += uint64(n); locals > maxLocals {
			return s.errorf("a function declares more than %d locals", maxLocals)
		}
		if _, err := body.byte("local type"); err != nil {
			return err
		}
	}
	return s.fixed("function body", int(size))
}
