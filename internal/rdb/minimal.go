package rdb

import (
	"encoding/binary"
	"fmt"
)

// Minimal returns the smallest valid RDB of the given version: the magic
// ("REDIS0011" for 11), the EOF opcode and the checksum. Such an RDB holds
// no keys and no aux fields; replicas load it as an empty dataset. version
// must be between 0 and 9999.
func Minimal(version int) []byte {
	if version < 0 || version > 9999 {
		panic(fmt.Sprintf("rdb: Minimal version %d out of range", version))
	}
	b := fmt.Appendf(make([]byte, 0, minimalLen), "REDIS%04d", version)
	b = append(b, opEOF)
	return binary.LittleEndian.AppendUint64(b, CRC64(0, b))
}
