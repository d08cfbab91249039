package store

import (
	"errors"
	"testing"

	"github.com/arbor-fabric/arbor/internal/rdb"
)

// noCRC returns a minimal RDB of version v with a stored checksum of 0
// (rdbchecksum no).
func noCRC(v int) []byte {
	b := rdb.Minimal(v)
	clear(b[len(b)-8:])
	return b
}

// TestRefreshRules: a refreshed snapshot from a source other than the
// upstream may not raise the RDB version, and must carry a checksum unless
// the snapshot it replaces carries none.
func TestRefreshRules(t *testing.T) {
	strict := RefreshRules{NoNewerVersion: true, NeedCRC: true}
	install := func(s *Store, body []byte, rules RefreshRules) error {
		t.Helper()
		w, err := s.NewSnapshotWriter()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(body); err != nil {
			t.Fatal(err)
		}
		_, err = s.InstallSnapshotWith(w, testReplid, s.End(), rules)
		return err
	}
	s := mustOpen(t, testOptions(t, t.TempDir()))
	fullSync(t, s, testReplid, 0) // version 10, with a checksum
	appendAll(t, s, commands(0, 10), 100)

	for _, c := range []struct {
		name  string
		body  []byte
		rules RefreshRules
		want  error
	}{
		{"newer version from a source", rdb.Minimal(11), strict, ErrSnapshotRefused},
		{"no checksum from a source", noCRC(10), strict, ErrSnapshotRefused},
		{"same version with a checksum", rdb.Minimal(10), strict, nil},
		{"older version", rdb.Minimal(9), strict, nil},
		{"newer version from the upstream", rdb.Minimal(11), RefreshRules{}, nil},
	} {
		err := install(s, c.body, c.rules)
		if !errors.Is(err, c.want) || (c.want == nil && err != nil) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
		appendAll(t, s, commands(0, 1), 100)
	}
	if v := s.State().Snapshot.RDBVersion; v != 11 {
		t.Fatalf("snapshot version %d, want 11 (the upstream's)", v)
	}

	// A master with rdbchecksum no: its snapshots carry no checksum, so a
	// source's may not either.
	s2 := mustOpen(t, testOptions(t, t.TempDir()))
	w, _ := s2.NewSnapshotWriter()
	w.Write(noCRC(10))
	if _, err := s2.ResetTo(w, testReplid, 0); err != nil {
		t.Fatal(err)
	}
	appendAll(t, s2, commands(0, 10), 100)
	if err := install(s2, noCRC(10), strict); err != nil {
		t.Fatalf("no checksum after a master without checksums: %v", err)
	}
}
