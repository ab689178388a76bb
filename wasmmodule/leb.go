package wasmmodule

import (
	"errors"
	"fmt"
	"io"
)

// LEB128 readers over an io.ByteReader (wabin's take a *bytes.Reader; guard streams). guard
// only needs to find where a number ends and whether an unsigned one overflows: wabin decodes
// again whatever guard keeps.

var errOverflow32 = errors.New("overflows a 32-bit integer")

// decodeUint32 reads an unsigned LEB128 number of at most 32 bits, as wabin's DecodeUint32.
func decodeUint32(r io.ByteReader) (uint32, error) {
	var ret uint32
	var s uint32
	for i := 0; i < 5; i++ {
		b, err := r.ReadByte()
		if err != nil {
			return 0, err
		}
		if b < 0x80 {
			if i == 4 && b&0xf0 > 0 { // unused bits must be zero
				return 0, errOverflow32
			}
			return ret | uint32(b)<<s, nil
		}
		ret |= (uint32(b) & 0x7f) << s
		s += 7
	}
	return 0, errOverflow32
}

// skipSigned reads a signed LEB128 number of at most maxBytes bytes (5 for i32, 10 for i64).
func skipSigned(r io.ByteReader, maxBytes int) error {
	for i := 0; i < maxBytes; i++ {
		b, err := r.ReadByte()
		if err != nil {
			return fmt.Errorf("readByte failed: %w", err)
		}
		if b&0x80 == 0 {
			return nil
		}
	}
	return fmt.Errorf("overflows a %d-bit integer", map[int]int{5: 32, 10: 64}[maxBytes])
}
