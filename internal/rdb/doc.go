// Package rdb holds the little knowledge of the Redis RDB snapshot format
// that a replication relay needs; it is not a full RDB parser.
//
// It provides the format's CRC64, a Verifier that checks an RDB as it streams
// past (magic, version, EOF opcode, checksum) in constant memory while
// decoding the aux fields of its header (redis-ver, repl-id, repl-offset...),
// and Minimal, which builds the smallest valid RDB for tests.
package rdb
