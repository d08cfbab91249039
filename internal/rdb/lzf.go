package rdb

import (
	"errors"
	"fmt"
)

// lzfDecompress decodes the LZF data in, which must expand to exactly n
// bytes.
//
// The format is a sequence of items, each starting with a control byte c:
// c < 32 is a run of c+1 literal bytes; otherwise it is a back reference of
// length c>>5 (7 means "7 plus the next byte"), plus 2, whose distance is
// ((c&31)<<8 | next byte) + 1 bytes back into the output.
func lzfDecompress(in []byte, n int) ([]byte, error) {
	out := make([]byte, 0, n)
	for i := 0; i < len(in); {
		c := int(in[i])
		i++
		if c < 32 {
			run := c + 1
			if run > len(in)-i {
				return nil, errors.New("lzf: literal run past end of input")
			}
			if run > n-len(out) {
				return nil, errors.New("lzf: output longer than declared")
			}
			out = append(out, in[i:i+run]...)
			i += run
			continue
		}
		length := c >> 5
		if length == 7 {
			if i >= len(in) {
				return nil, errors.New("lzf: truncated back reference")
			}
			length += int(in[i])
			i++
		}
		length += 2
		if i >= len(in) {
			return nil, errors.New("lzf: truncated back reference")
		}
		dist := ((c&0x1f)<<8 | int(in[i])) + 1
		i++
		if dist > len(out) {
			return nil, fmt.Errorf("lzf: back reference %d bytes before start", dist-len(out))
		}
		if length > n-len(out) {
			return nil, errors.New("lzf: output longer than declared")
		}
		// Byte by byte: the source may overlap the bytes being written.
		from := len(out) - dist
		for k := range length {
			out = append(out, out[from+k])
		}
	}
	if len(out) != n {
		return nil, fmt.Errorf("lzf: got %d bytes, want %d", len(out), n)
	}
	return out, nil
}
