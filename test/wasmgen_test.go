package test

import "bytes"

// Generated hostile modules, built as bytes so that CI needs no wat2wasm: the shapes are too big
// to commit (megabytes of one instruction pattern) and trivial to encode.

// The instruction patterns repeated in generated function bodies.
var (
	// patAdd is local.get 0; i32.const 1; i32.add; local.set 0 (7 bytes): cheap to run, costly
	// to compile in bulk (wazero's compiler spends ~3 µs per repetition).
	patAdd = []byte{0x20, 0x00, 0x41, 0x01, 0x6a, 0x21, 0x00}
	// patDrop is i32.const 0; drop (3 bytes).
	patDrop = []byte{0x41, 0x00, 0x1a}
)

// genModule returns a WASI command module with one memory (exported as "memory") and nfuncs
// functions of type () -> (), each with one i32 local and a body of pattern repeated reps
// times; function 0 is exported as _start. It imports nothing.
func genModule(nfuncs int, pattern []byte, reps int) []byte {
	var out bytes.Buffer
	out.WriteString("\x00asm\x01\x00\x00\x00")
	section(&out, 1, []byte{1, 0x60, 0, 0}) // one type: () -> ()
	var funcs bytes.Buffer
	uleb(&funcs, uint64(nfuncs))
	funcs.Write(bytes.Repeat([]byte{0}, nfuncs)) // every function has type 0
	section(&out, 3, funcs.Bytes())
	section(&out, 5, []byte{1, 0, 1}) // one memory, min 1 page, no max
	section(&out, 7, []byte{2, 6, '_', 's', 't', 'a', 'r', 't', 0, 0, 6, 'm', 'e', 'm', 'o', 'r', 'y', 2, 0})
	body := bytes.NewBuffer([]byte{1, 1, 0x7f}) // one run of one local of type i32
	body.Write(bytes.Repeat(pattern, reps))
	body.WriteByte(0x0b) // end
	var code bytes.Buffer
	uleb(&code, uint64(nfuncs))
	for range nfuncs {
		uleb(&code, uint64(body.Len()))
		code.Write(body.Bytes())
	}
	section(&out, 10, code.Bytes())
	return out.Bytes()
}

func section(out *bytes.Buffer, id byte, body []byte) {
	out.WriteByte(id)
	uleb(out, uint64(len(body)))
	out.Write(body)
}

func uleb(b *bytes.Buffer, v uint64) {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			c |= 0x80
		}
		b.WriteByte(c)
		if v == 0 {
			return
		}
	}
}

// genDataModule returns a WASI command module carrying data bytes of data (byte i is i*7 mod
// 251) in one active segment at address 0 of a memory just large enough for them, and an empty
// _start: a big module that costs little to compile.
func genDataModule(data int) []byte {
	var out bytes.Buffer
	out.WriteString("\x00asm\x01\x00\x00\x00")
	section(&out, 1, []byte{1, 0x60, 0, 0}) // one type: () -> ()
	section(&out, 3, []byte{1, 0})          // one function of type 0
	var mem bytes.Buffer
	mem.Write([]byte{1, 0}) // one memory, no max
	uleb(&mem, uint64((data+65535)/65536))
	section(&out, 5, mem.Bytes())
	section(&out, 7, []byte{2, 6, '_', 's', 't', 'a', 'r', 't', 0, 0, 6, 'm', 'e', 'm', 'o', 'r', 'y', 2, 0})
	section(&out, 10, []byte{1, 2, 0, 0x0b}) // the empty body
	var seg bytes.Buffer
	seg.Write([]byte{1, 0, 0x41, 0, 0x0b}) // one segment, memory 0, offset i32.const 0
	uleb(&seg, uint64(data))
	for i := range data {
		seg.WriteByte(byte(i * 7 % 251))
	}
	section(&out, 11, seg.Bytes())
	return out.Bytes()
}
