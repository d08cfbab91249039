package relay

import "os"

// SetSyncFile makes the relay's store flush with fn (store.Options.SyncFile):
// tests inject slow or failing flushes with it.
func SetSyncFile(c *Config, fn func(*os.File) error) { c.syncFile = fn }

// SetRDBChunkHook makes the relay pass every RDB chunk it sends a child
// relay to fn before computing its checksum: tests hold a transfer in the
// middle, or corrupt a chunk as a bad disk would.
func SetRDBChunkHook(c *Config, fn func(index uint32, raw []byte)) { c.rdbChunk = fn }
