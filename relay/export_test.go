package relay

import "os"

// SetSyncFile makes the relay's store flush with fn (store.Options.SyncFile):
// tests inject slow or failing flushes with it.
func SetSyncFile(c *Config, fn func(*os.File) error) { c.syncFile = fn }
