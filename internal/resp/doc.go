// Package resp implements the parts of the Redis serialization protocol
// (RESP2) that a replication relay needs.
//
// Encoding is done by pure append functions (AppendBulk, AppendCommand, ...)
// that add to a caller-owned []byte, so replies and commands can be built
// without allocating. Decoding is done by a Reader over a *bufio.Reader, which
// reads client commands (multibulk or inline) and reply values.
//
// StreamScanner tracks command boundaries in a master's replication stream
// without copying it: it is fed the stream chunk by chunk, skips bulk payloads
// by length, reports where the last complete command ended and whether a
// "REPLCONF GETACK" went by, and can persist its state so a store can resume
// scanning at a segment start.
//
// All parse errors wrap ErrProtocol.
package resp
