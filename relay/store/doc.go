// Package store keeps what a relay has received from its upstream: the last
// RDB snapshot, with the replication ID and offset it corresponds to, and the
// replication stream from that offset on, as a bounded, segmented log on disk
// addressed by absolute offset.
//
// Offsets follow Redis' master_repl_offset: the stream's first byte ever has
// offset 0 in this package's 0-based positions and the store's End is the
// number of bytes of the history it holds, so a Redis replica that reports
// master_repl_offset N (and asks PSYNC <id> N+1) is served from position N.
// Continue holds the one continuation rule (Redis 7's PSYNC rule in these
// positions) and opens the consumer's reader under the same lock, so a
// consumer is never continued onto a history it did not come from.
//
// Every record on disk carries a CRC32C. Open checks every segment and cuts a
// torn or corrupt tail; readers check every record they read back from disk,
// so the store never hands out bytes it cannot vouch for. Readers of recent
// bytes are served from an in-memory tail.
//
// End is what was written; Durable is what the fsync policy vouches for
// (flushed, or with FsyncNo written to the operating system), the offset a
// relay acknowledges upstream. A failed flush fails the store for good
// (SyncError) rather than trusting a later flush.
//
// One goroutine appends (the upstream link); any number read concurrently.
package store
