package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

const metaFile = "meta.json"

// Snapshot describes the stored RDB.
type Snapshot struct {
	// File is the RDB's file name inside the store's directory.
	File string `json:"file"`
	// Replid and Offset are the values of the +FULLRESYNC line the RDB came
	// with: the RDB holds the dataset after Offset bytes of Replid's history.
	Replid string `json:"replid"`
	Offset int64  `json:"offset"`
	// Size is the RDB's length in bytes.
	Size int64 `json:"size"`
	// CRC64 is the CRC-64 computed over the RDB's content (magic to EOF
	// opcode): what its trailer holds, unless it was written with
	// rdbchecksum no (trailer 0).
	CRC64 uint64 `json:"crc64"`
	// CRC32C is the CRC-32C (Castagnoli) of all Size bytes, computed when
	// the RDB was received (by the root relay from the master, by every
	// other relay from its parent, which checked it end to end) and
	// checked again at Open. 0 in a meta from before it was kept: Open
	// then computes it.
	CRC32C uint32 `json:"crc32c,omitempty"`
	// RDBVersion is the RDB format version.
	RDBVersion int `json:"rdb_version"`
}

// meta is the store's durable state besides the segments. It is written
// atomically (temporary file, fsync, rename, fsync of the directory).
type meta struct {
	Version int `json:"version"`
	// Replid is the current replication ID of the history held.
	Replid string `json:"replid"`
	// Replid2 and SecondOffset follow Redis: PSYNC Replid2 off is accepted
	// for off ≤ SecondOffset (a 1-based byte number; -1 when there is no
	// Replid2).
	Replid2      string `json:"replid2,omitempty"`
	SecondOffset int64  `json:"second_offset"`
	// Switches are the newest replication ID switches of this history,
	// oldest first (at most maxSwitches), so that a reader several
	// switches behind learns each one at its offset, in turn.
	Switches []Switch `json:"switches,omitempty"`
	// Snapshot is the stored RDB; nil while the store holds nothing.
	Snapshot *Snapshot `json:"snapshot,omitempty"`
	// BacklogDir names the directory of the segments of this history. A new
	// history (a full sync) gets a new directory, so a crash between writing
	// meta and cleaning up can never mix two histories.
	BacklogDir string `json:"backlog_dir"`
	// Generation counts full syncs installed; it names BacklogDir.
	Generation uint64 `json:"generation"`
}

// Switch is one change of replication ID: from At on, the history goes on
// under To (Redis' shiftReplicationId at a promotion).
type Switch struct {
	From string `json:"from"`
	To   string `json:"to"`
	At   int64  `json:"at"`
}

// maxSwitches bounds meta.Switches.
const maxSwitches = 16

// recordSwitch appends a switch to the history, dropping the oldest beyond
// maxSwitches.
func (m *meta) recordSwitch(from, to string, at int64) {
	if from == "" || from == to {
		return
	}
	sw := append(m.Switches[:len(m.Switches):len(m.Switches)], Switch{From: from, To: to, At: at})
	m.Switches = sw[max(0, len(sw)-maxSwitches):]
}

// nextSwitch returns the switch a reader that holds bytes under replid
// meets next: the recorded one from replid, or, when the history no
// longer has it (or never had: a store from before switches were kept),
// the switch to the current ID at SecondOffset-1, as Redis' replid2 says.
func (m *meta) nextSwitch(replid string) Switch {
	for i := len(m.Switches) - 1; i >= 0; i-- {
		if m.Switches[i].From == replid {
			return m.Switches[i]
		}
	}
	return Switch{From: replid, To: m.Replid, At: m.SecondOffset - 1}
}

func readMeta(dir string) (*meta, error) {
	b, err := os.ReadFile(filepath.Join(dir, metaFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var m meta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, metaFile, err)
	}
	if m.Version != 1 {
		return nil, fmt.Errorf("%s: unsupported version %d", metaFile, m.Version)
	}
	return &m, nil
}

func writeMeta(dir string, m *meta) error {
	m.Version = 1
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, metaFile), append(b, '\n'))
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
