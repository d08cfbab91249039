package store

// ring is the in-memory copy of the newest stream bytes: it holds the stream
// range [start, end), at most len(buf) bytes. Guarded by the store's mutex.
type ring struct {
	buf        []byte
	start, end int64
}

func (r *ring) reset(pos int64) { r.start, r.end = pos, pos }

func (r *ring) write(p []byte) {
	size := int64(len(r.buf))
	if skip := int64(len(p)) - size; skip > 0 {
		r.end += skip
		p = p[skip:]
	}
	for len(p) > 0 {
		i := r.end % size
		n := copy(r.buf[i:], p)
		p = p[n:]
		r.end += int64(n)
	}
	if r.end-r.start > size {
		r.start = r.end - size
	}
}

// read copies bytes from pos, which must be in [start, end), into p.
func (r *ring) read(p []byte, pos int64) int {
	size := int64(len(r.buf))
	n := 0
	for n < len(p) && pos < r.end {
		i := pos % size
		m := copy(p[n:], r.buf[i:min(size, i+(r.end-pos))])
		n += m
		pos += int64(m)
	}
	return n
}
