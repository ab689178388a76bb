package guestfs

import "io"

// chunkSize is the size of the pieces a scratch file's bytes are kept in.
const chunkSize = 64 << 10

// fileData is a scratch file's bytes, kept in chunks of chunkSize so that a growing file is
// never copied: one contiguous slice grown by doubling left every old copy behind as garbage,
// and the worker counts the heap it grows during a run (garbage included, until the collector
// runs, which with a big module's structures on the heap may be never) as the guest's memory.
// A guest writing a 100 MiB file in 1 MiB writes was billed and killed for 234 MiB.
//
// Chunk i holds bytes [i*chunkSize, (i+1)*chunkSize) of the file, or fewer: the bytes past a
// chunk's length, up to the file's size, are zeroes (a hole, after a truncate that grew the file
// or a write past its end), and so is every byte of a chunk's capacity past its length. The first
// chunk grows by doubling, so that a small file costs about its size; the others are made whole,
// so the garbage a file leaves while it grows is less than one chunk.
type fileData struct {
	chunks [][]byte
	size   int64
}

func (d *fileData) len() int64 { return d.size }

// resize sets the file's length; new bytes are zeroes.
func (d *fileData) resize(size int64) {
	if size >= d.size {
		d.size = size
		return
	}
	keep := int((size + chunkSize - 1) / chunkSize)
	clear(d.chunks[min(keep, len(d.chunks)):]) // for the collector
	d.chunks = d.chunks[:min(keep, len(d.chunks))]
	if keep > 0 && keep <= len(d.chunks) {
		last := d.chunks[keep-1]
		if end := int(size - int64(keep-1)*chunkSize); len(last) > end {
			clear(last[end:]) // zeroes again, should the file grow back over them
			d.chunks[keep-1] = last[:end]
		}
	}
	if size == 0 {
		d.chunks = nil
	}
	d.size = size
}

// readAt copies the file's bytes at off into p, as many as there are.
func (d *fileData) readAt(p []byte, off int64) int {
	if off >= d.size {
		return 0
	}
	p = p[:min(int64(len(p)), d.size-off)]
	n := 0
	for n < len(p) {
		at := off + int64(n)
		i, in := int(at/chunkSize), int(at%chunkSize)
		want := min(len(p)-n, chunkSize-in)
		var c []byte
		if i < len(d.chunks) {
			c = d.chunks[i]
		}
		k := 0
		if in < len(c) {
			k = copy(p[n:n+want], c[in:])
		}
		clear(p[n+k : n+want]) // a hole
		n += want
	}
	return n
}

// writeAt copies p into the file at off, growing it if it ends past its size.
func (d *fileData) writeAt(p []byte, off int64) int {
	n := 0
	for n < len(p) {
		at := off + int64(n)
		i, in := int(at/chunkSize), int(at%chunkSize)
		want := min(len(p)-n, chunkSize-in)
		for len(d.chunks) <= i {
			d.chunks = append(d.chunks, nil)
		}
		c := d.chunks[i]
		if end := in + want; end > len(c) {
			switch {
			case end <= cap(c):
				c = c[:end] // zeroes past its length
			case i == 0:
				nc := make([]byte, end, min(chunkSize, max(end, 2*cap(c))))
				copy(nc, c)
				c = nc
			default:
				nc := make([]byte, end, chunkSize)
				copy(nc, c)
				c = nc
			}
			d.chunks[i] = c
		}
		copy(c[in:in+want], p[n:])
		n += want
	}
	d.size = max(d.size, off+int64(n))
	return n
}

// readFrom fills an empty file with size bytes read from r at off (a bundle's archive), straight
// into its chunks.
func (d *fileData) readFrom(r io.ReaderAt, off, size int64) error {
	for d.size < size {
		c := make([]byte, min(chunkSize, size-d.size))
		k, err := r.ReadAt(c, off+d.size)
		if k < len(c) {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		d.chunks = append(d.chunks, c)
		d.size += int64(k)
	}
	return nil
}
