package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Transfer records a resumable RDB transfer from a parent relay, kept
// beside its partial file (NewNamedSnapshotWriter) across reconnects and
// restarts.
type Transfer struct {
	// ID names the transfer to the sender (ResumeRdb.transfer_id).
	ID string `json:"transfer_id"`
	// ChunkSize is the sender's chunk size; a resume keeps whole chunks.
	ChunkSize int64 `json:"chunk_size"`
	// Bytes is how much of the partial file was on stable storage when
	// the record was written (SnapshotWriter.Sync or Suspend): a resume
	// keeps no more than that, whatever the file's size says after a
	// crash.
	Bytes int64 `json:"durable_bytes"`
}

// SaveTransfer writes the record name atomically (temporary file, fsync,
// rename, fsync of the directory).
func (s *Store) SaveTransfer(name string, t Transfer) error {
	b, err := json.Marshal(t)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(s.opts.Dir, name), b); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// LoadTransfer reads the record name; ok is false when there is none or it
// is unusable.
func (s *Store) LoadTransfer(name string) (t Transfer, ok bool) {
	b, err := os.ReadFile(filepath.Join(s.opts.Dir, name))
	if err != nil || json.Unmarshal(b, &t) != nil || t.ID == "" || t.ChunkSize <= 0 || t.Bytes < 0 {
		return Transfer{}, false
	}
	return t, true
}

// RemoveTransfer deletes the record name.
func (s *Store) RemoveTransfer(name string) error {
	err := os.Remove(filepath.Join(s.opts.Dir, name))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}
