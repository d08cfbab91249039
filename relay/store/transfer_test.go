package store

import (
	"hash/crc32"
	"testing"

	"github.com/arbor-fabric/arbor/internal/rdb"
)

// TestResumedTransferChecksum: a transfer cut, suspended and resumed keeps
// the CRC-32C of all its bytes (the kept ones read back from disk), which
// the installed snapshot carries; the transfer's record survives as
// written.
func TestResumedTransferChecksum(t *testing.T) {
	s := mustOpen(t, testOptions(t, t.TempDir()))
	body := rdb.Minimal(10)
	half := int64(len(body) / 2)
	w, err := s.NewNamedSnapshotWriter("transfer.rdb")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(body[:half]); err != nil {
		t.Fatal(err)
	}
	n, err := w.Suspend()
	if err != nil || n != half {
		t.Fatalf("Suspend: %d, %v; want %d", n, err, half)
	}
	rec := Transfer{ID: "t1", ChunkSize: 4, Bytes: n}
	if err := s.SaveTransfer("transfer.json", rec); err != nil {
		t.Fatal(err)
	}
	if got, ok := s.LoadTransfer("transfer.json"); !ok || got != rec {
		t.Fatalf("LoadTransfer: %+v, %v; want %+v", got, ok, rec)
	}

	w, err = s.ResumeSnapshotWriter("transfer.rdb", half)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(body[half:]); err != nil {
		t.Fatal(err)
	}
	want := crc32.Checksum(body, castagnoli)
	if got := w.CRC32C(); got != want {
		t.Fatalf("CRC32C after a resume: %08x, want %08x", got, want)
	}
	snap, err := s.ResetTo(w, testReplid, 0)
	if err != nil {
		t.Fatal(err)
	}
	if snap.CRC32C != want {
		t.Errorf("snapshot CRC32C %08x, want %08x", snap.CRC32C, want)
	}
	if err := s.RemoveTransfer("transfer.json"); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.LoadTransfer("transfer.json"); ok {
		t.Error("the transfer record is still there after RemoveTransfer")
	}
}
