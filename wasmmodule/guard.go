package wasmmodule

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

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
	secTag       = 13 // exception handling's; refused by name
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
	// core is the module with its custom sections removed and, in its code and data sections,
	// every function body replaced by an empty one and every data segment's bytes by none: what
	// wabin needs to decode the declarations, a small fraction of a large module.
	core               []byte
	customSectionBytes int64 // bytes taken by custom sections, headers included
	customSections     int
	largestBody        int    // bytes of the largest function body
	funcImports        int    // functions imported: the first defined function's index
	body               []byte // scanCode's window
}

// scanWindow is how much of a function body scanCode holds at once.
const scanWindow = 32 << 10

// maxDeclarationBytes bounds the sections other than code, data and custom (types, imports,
// functions, tables, memory, globals, exports, start, elements): guard reads them into memory
// for wabin. Real programs declare far less (a 20 MiB Go module: ~1 MiB).
const maxDeclarationBytes = 8 << 20

// emptyBody is a function body with no locals and no instructions: size 2, 0 local groups, end.
var emptyBody = []byte{0x02, 0x00, 0x0b}

// guard checks the structure of the size bytes of r (which start with a valid 8-byte header)
// and bounds every count in it. It reads r once, front to back, through a small buffer: code
// and data, the bulk of a module, are walked and skipped, never held.
func guard(r io.ReaderAt, size int64) (guarded, error) {
	var g guarded
	var core bytes.Buffer
	core.Write(magic)
	core.Write(coreVersion)
	br := bufio.NewReaderSize(io.NewSectionReader(r, 8, size-8), 64<<10)
	top := &streamSource{br: br, left: size - 8}
	lastRank := 0
	var declBytes int64
	for top.Len() > 0 {
		start := size - int64(top.Len())
		id, _ := top.ReadByte()
		if id == secTag {
			return g, uses(ProposalExceptionHandling, "a tag section")
		}
		if int(id) >= len(sectionNames) {
			return g, fmt.Errorf("unknown section id %d at offset %d", id, start)
		}
		name := sectionNames[id]
		secSize, err := decodeUint32(top)
		if err != nil {
			return g, fmt.Errorf("%s section: size: %v", name, err)
		}
		if int64(secSize) > int64(top.Len()) {
			return g, fmt.Errorf("%s section: declares %d bytes but only %d remain", name, secSize, top.Len())
		}
		headerBytes := size - int64(top.Len()) - start
		top.left -= int64(secSize) // the section's bytes are read through sec
		sec := &streamSource{br: br, left: int64(secSize)}

		if id == secCustom {
			g.customSectionBytes += headerBytes + int64(secSize)
			g.customSections++
			if err := checkCustom(sec); err != nil {
				return g, fmt.Errorf("custom section: %v", err)
			}
			if err := sec.Discard(sec.Len()); err != nil {
				return g, fmt.Errorf("custom section: %v", err)
			}
			continue
		}
		rank := sectionRank(id)
		if rank <= lastRank {
			return g, fmt.Errorf("%s section is out of order or repeated", name)
		}
		lastRank = rank
		var content []byte
		if id == secCode || id == secData {
			s := &sectionReader{src: sec, name: name}
			if content, err = s.walkBulk(id, &g); err != nil {
				return g, err
			}
		} else {
			if declBytes += int64(secSize); declBytes > maxDeclarationBytes {
				return g, fmt.Errorf("declarations (types, imports, functions, tables, globals, exports, elements) take more than %d bytes", maxDeclarationBytes)
			}
			content = make([]byte, secSize)
			if _, err := io.ReadFull(br, content); err != nil {
				return g, fmt.Errorf("%s section: %v", name, err)
			}
			sec.left = 0
			s := newSectionReader(name, content)
			if err := s.walk(id); err != nil {
				return g, err
			}
			if id == secImport {
				g.funcImports = s.funcImports
			}
		}
		if sec.Len() != 0 {
			return g, fmt.Errorf("%s section: %d bytes left over after its contents", name, sec.Len())
		}
		core.WriteByte(id)
		core.Write(leb128.EncodeUint32(uint32(len(content))))
		core.Write(content)
	}
	g.core = core.Bytes()
	return g, nil
}

// checkCustom checks that a custom section's name fits in it.
func checkCustom(s source) error {
	n, err := decodeUint32(s)
	if err != nil {
		return fmt.Errorf("name: %v", err)
	}
	if int64(n) > int64(s.Len()) {
		return errors.New("name is longer than the section")
	}
	return nil
}

// source is the bytes of one section (or one function body) that a sectionReader reads: in
// memory, or streamed from the module.
type source interface {
	io.ByteReader
	Len() int            // bytes left
	Discard(n int) error // skips n <= Len() bytes
	Read(p []byte) error // reads len(p) <= Len() bytes
}

type memSource struct{ *bytes.Reader }

func (m memSource) Discard(n int) error { _, err := m.Seek(int64(n), io.SeekCurrent); return err }

func (m memSource) Read(p []byte) error { _, err := io.ReadFull(m.Reader, p); return err }

// streamSource reads the next left bytes of a module from br. With rec set, ReadByte appends
// what it reads to *rec.
type streamSource struct {
	br   *bufio.Reader
	left int64
	rec  *[]byte
}

func (s *streamSource) ReadByte() (byte, error) {
	if s.left <= 0 {
		return 0, io.EOF
	}
	c, err := s.br.ReadByte()
	if err != nil {
		return 0, io.ErrUnexpectedEOF
	}
	s.left--
	if s.rec != nil {
		*s.rec = append(*s.rec, c)
	}
	return c, nil
}

func (s *streamSource) Len() int { return int(s.left) }

func (s *streamSource) Read(p []byte) error {
	if int64(len(p)) > s.left {
		return io.ErrUnexpectedEOF
	}
	n, err := io.ReadFull(s.br, p)
	s.left -= int64(n)
	if err != nil {
		return io.ErrUnexpectedEOF
	}
	return nil
}

func (s *streamSource) Discard(n int) error {
	if int64(n) > s.left {
		return io.ErrUnexpectedEOF
	}
	d, err := s.br.Discard(n)
	s.left -= int64(d)
	if err != nil {
		return io.ErrUnexpectedEOF
	}
	return nil
}

// limitSource is the next left bytes of another source (a function body in its section).
type limitSource struct {
	src  source
	left int
}

func (l *limitSource) ReadByte() (byte, error) {
	if l.left <= 0 {
		return 0, io.EOF
	}
	c, err := l.src.ReadByte()
	if err == nil {
		l.left--
	}
	return c, err
}

func (l *limitSource) Len() int { return l.left }

func (l *limitSource) Read(p []byte) error {
	if len(p) > l.left {
		return io.ErrUnexpectedEOF
	}
	l.left -= len(p)
	return l.src.Read(p)
}

func (l *limitSource) Discard(n int) error {
	if n > l.left {
		return io.ErrUnexpectedEOF
	}
	l.left -= n
	return l.src.Discard(n)
}

// sectionReader reads one section's content; nothing it reads can pass the section's end.
type sectionReader struct {
	src         source
	name        string
	funcImports int // functions imported (the import section's walk counts them)
}

func newSectionReader(name string, content []byte) *sectionReader {
	return &sectionReader{src: memSource{bytes.NewReader(content)}, name: name}
}

func (s *sectionReader) Len() int { return s.src.Len() }

func (s *sectionReader) errorf(format string, args ...any) error {
	return fmt.Errorf("%s section: "+format, append([]any{s.name}, args...)...)
}

func (s *sectionReader) u32(what string) (uint32, error) {
	v, err := decodeUint32(s.src)
	if err != nil {
		return 0, s.errorf("%s: %v", what, err)
	}
	return v, nil
}

func (s *sectionReader) byte(what string) (byte, error) {
	c, err := s.src.ReadByte()
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
	return s.src.Discard(int(n))
}

func (s *sectionReader) fixed(what string, n int) error {
	if s.Len() < n {
		return s.errorf("%s: unexpected end", what)
	}
	return s.src.Discard(n)
}

func (s *sectionReader) limits() error {
	flag, err := s.byte("limits")
	if err != nil {
		return err
	}
	switch {
	case flag == 2 || flag == 3:
		return uses(ProposalThreads, "a shared memory")
	case flag >= 4 && flag <= 7:
		return uses(ProposalMemory64, "a 64-bit memory or table")
	case flag > 1:
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

// valTypes reads a vector of value types (a function type's parameters or results).
func (s *sectionReader) valTypes(what string) error {
	n, err := s.count(what, 1)
	if err != nil {
		return err
	}
	for ; n > 0; n-- {
		t, err := s.byte(what)
		if err != nil {
			return err
		}
		if !valueType(t) {
			if err := valTypeError(t, "function "+strings.TrimSuffix(what, "s")); err != nil {
				return err
			}
			return s.errorf("%s: %#x is not a value type", what, t)
		}
	}
	return nil
}

// refType reads the reference type of a table or element segment.
func (s *sectionReader) refType(what string) error {
	t, err := s.byte(what + " type")
	if err != nil {
		return err
	}
	if t != 0x70 && t != 0x6f {
		return valTypeError(t, what)
	}
	return nil
}

// globalType reads a global's value type and mutability.
func (s *sectionReader) globalType(what string) error {
	t, err := s.byte(what + " type")
	if err != nil {
		return err
	}
	if !valueType(t) {
		if err := valTypeError(t, what); err != nil {
			return err
		}
	}
	_, err = s.byte(what + " mutability")
	return err
}

// constExpr skips a constant expression: one instruction (as wabin accepts) and end.
func (s *sectionReader) constExpr() error {
	op, err := s.byte("constant expression")
	if err != nil {
		return err
	}
	switch op {
	case 0x41: // i32.const
		err = skipSigned(s.src, 5)
	case 0x42: // i64.const
		err = skipSigned(s.src, 10)
	case 0x43: // f32.const
		err = s.fixed("f32.const", 4)
	case 0x44: // f64.const
		err = s.fixed("f64.const", 8)
	case 0x23, 0xd2: // global.get, ref.func
		_, err = s.u32("index")
	case 0xd0: // ref.null
		var t byte
		if t, err = s.byte("reference type"); err == nil && t != 0x70 && t != 0x6f {
			if e := valTypeError(t, "constant ref.null"); e != nil {
				return e
			}
		}
	case 0xfb:
		return uses(ProposalGC, "a GC instruction in a constant expression")
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
		switch end {
		case 0x41, 0x42, 0x23, 0x6a, 0x6b, 0x6c, 0x7c, 0x7d, 0x7e: // a second constant, add, sub, mul
			return uses(ProposalExtendedConst, "a constant expression of more than one instruction")
		}
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
			return uses(ProposalMultiMemory, "%d memories", n)
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
			switch form {
			case 0x5e, 0x5f, 0x4e, 0x50, 0x4f: // array, struct, rec, sub, sub final
				return uses(ProposalGC, "a type of form %#x (struct, array or recursive type)", form)
			}
			return s.errorf("type form %#x is not a function type (0x60)", form)
		}
		if err := s.valTypes("parameters"); err != nil {
			return err
		}
		return s.valTypes("results")
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
			s.funcImports++
			_, err = s.u32("type index")
			return err
		case 1: // table
			if err := s.refType("imported table"); err != nil {
				return err
			}
			return s.limits()
		case 2: // memory
			return s.limits()
		case 3: // global
			return s.globalType("imported global")
		case 4:
			return uses(ProposalExceptionHandling, "an imported tag")
		}
		return s.errorf("import kind %#x is not valid", kind)
	case secFunction:
		_, err := s.u32("type index")
		return err
	case secTable:
		if err := s.refType("table"); err != nil {
			return err
		}
		return s.limits()
	case secGlobal:
		if err := s.globalType("global"); err != nil {
			return err
		}
		return s.constExpr()
	case secExport:
		if err := s.skip("export name"); err != nil {
			return err
		}
		if kind, err := s.byte("export kind"); err != nil {
			return err
		} else if kind == 4 {
			return uses(ProposalExceptionHandling, "an exported tag")
		}
		_, err := s.u32("export index")
		return err
	case secElement:
		return s.element()
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
		if err := s.refType("element segment"); err != nil {
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

// code checks one function body's size and its local declarations, scans its instructions for
// a proposal's (scanCode) and returns its size. fn is the function's index.
func (s *sectionReader) code(g *guarded, fn int) (int, error) {
	size, err := s.count("function body bytes", 1)
	if err != nil {
		return 0, err
	}
	body := &sectionReader{src: &limitSource{src: s.src, left: int(size)}, name: s.name}
	groups, err := body.count("local declarations", 2)
	if err != nil {
		return 0, err
	}
	var locals uint64
	for ; groups > 0; groups-- {
		n, err := body.u32("local count")
		if err != nil {
			return 0, err
		}
		if locals += uint64(n); locals > maxLocals {
			return 0, s.errorf("a function declares more than %d locals", maxLocals)
		}
		t, err := body.byte("local type")
		if err != nil {
			return 0, err
		}
		if !valueType(t) {
			if err := valTypeError(t, "local"); err != nil {
				return 0, err
			}
			return 0, s.errorf("local type %#x is not a value type", t)
		}
	}
	if g.body == nil {
		g.body = make([]byte, scanWindow)
	}
	if err := scanCode(body.src, g.body, fn); err != nil {
		var pe *proposalError
		if errors.As(err, &pe) {
			return 0, err
		}
		return 0, s.errorf("function %d: %v", fn, err)
	}
	return int(size), nil
}

// valueType reports whether t is a WebAssembly 2.0 value type.
func valueType(t byte) bool {
	switch t {
	case 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f: // i32 i64 f32 f64 v128 funcref externref
		return true
	}
	return false
}

// walkBulk checks a code or data section, streamed, and returns the section wabin decodes in its
// place: the same entries, with empty function bodies and empty data.
func (s *sectionReader) walkBulk(id byte, g *guarded) ([]byte, error) {
	n, err := s.count("entries", minEntrySize[id])
	if err != nil {
		return nil, err
	}
	out := leb128.EncodeUint32(n)
	for i := uint32(0); i < n; i++ {
		if id == secCode {
			size, err := s.code(g, g.funcImports+int(i))
			if err != nil {
				return nil, err
			}
			g.largestBody = max(g.largestBody, size)
			out = append(out, emptyBody...)
			continue
		}
		// A data segment: its header is kept (recorded as it is read), its bytes are not.
		src := s.src.(*streamSource)
		src.rec = &out
		err := s.dataHeader()
		src.rec = nil
		if err != nil {
			return nil, err
		}
		if err := s.skip("data bytes"); err != nil {
			return nil, err
		}
		out = append(out, 0x00)
	}
	return out, nil
}

// dataHeader reads a data segment up to its bytes: flags, memory index, offset expression.
func (s *sectionReader) dataHeader() error {
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
		return s.constExpr()
	case 1:
		return nil
	}
	return s.errorf("data segment flags %d are not valid", prefix)
}
