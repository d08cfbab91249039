package rdb

import (
	"hash/crc64"
	"math/bits"
)

// crcPoly is the Jones polynomial used by Redis, in normal form.
const crcPoly = 0xad93d23594c935a9

// crcTable is the lookup table for the reflected Jones polynomial. It is
// computed once and never modified.
var crcTable = crc64.MakeTable(bits.Reverse64(crcPoly))

// CRC64 continues the Redis RDB checksum crc (start with 0) over p and
// returns the result. The checksum is CRC-64/Jones: reflected, initial value
// 0, no final xor; "123456789" checksums to 0xe9c6d914c4b8d9ca.
func CRC64(crc uint64, p []byte) uint64 {
	// The stdlib inverts before and after; undo both to get init 0 and no
	// final xor.
	return ^crc64.Update(^crc, crcTable, p)
}
