package relay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/arbor-fabric/arbor/internal/redistest"
)

// flipInSnapshot flips the case of the first byte of needle in relay r's
// stored snapshot file, in place: the RDB still parses, and the parent
// reads (and checksums per chunk) whatever the file holds.
func flipInSnapshot(t *testing.T, r *testRelay, needle string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(r.cfg.DataDir, "snapshot-*.rdb"))
	if err != nil || len(files) != 1 {
		t.Fatalf("snapshot files of %s: %v, %v", r.cfg.ID, files, err)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte(needle))
	if i < 0 {
		t.Fatalf("%s's snapshot does not hold %q", r.cfg.ID, needle)
	}
	b[i] ^= 0x20
	if err := os.WriteFile(files[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestChildRefusesCorruptSnapshot: a byte of the parent's stored snapshot
// is changed on disk after the parent received it (inside a value, so the
// RDB still parses; with rdbchecksum no it carries no CRC64 either). The
// parent's chunks carry valid CRCs of what it read, but the child's
// end-to-end check (the CRC-32C the root kept since the RDB arrived) fails:
// it refuses the RDB, installs nothing, and fetches it again, until the
// parent's file is good again; then it and its replica converge.
func TestChildRefusesCorruptSnapshot(t *testing.T) {
	for _, checksum := range []string{"no", "yes"} {
		t.Run("rdbchecksum_"+checksum, func(t *testing.T) {
			ctx := context.Background()
			master := redistest.Start(t, "--rdbchecksum", checksum, "--rdbcompression", "no")
			const needle = "needle-value-0123456789abcdef"
			if err := master.Client().Set(ctx, "needle", needle, 0).Err(); err != nil {
				t.Fatal(err)
			}
			load(t, master, redistest.LoadOptions{SmallKeys: 500, Seed: 1})
			a := treeRelay(t, "relay-a", "A", upstreamOf(master))
			redistest.WaitFor(t, 30*time.Second, func() error {
				if a.status(t).GetSnapshot().GetSizeBytes() == 0 {
					return fmt.Errorf("relay-a has no snapshot yet")
				}
				return nil
			})
			flipInSnapshot(t, a, needle)

			b := treeRelay(t, "relay-b", "B", a.arborURL())
			redistest.WaitFor(t, 30*time.Second, func() error {
				if b.status(t).GetSnapshot().GetSizeBytes() != 0 {
					return nil // installed: fails below
				}
				// Refused twice: the child fetched it again after the first.
				if n, _ := strconv.Atoi(b.Info(t, "stats")["arbor_upstream_rejected_snapshots"]); n < 2 {
					return fmt.Errorf("relay-b refused %d snapshots, want at least 2", n)
				}
				return nil
			})
			if st := b.status(t); st.GetSnapshot().GetSizeBytes() != 0 {
				t.Fatalf("relay-b installed the snapshot that failed its check (%d bytes at %d)",
					st.GetSnapshot().GetSizeBytes(), st.GetSnapshot().GetOffset())
			}
			expectEq(t, "relay-b arbor_upstream_full_syncs while refused", b.InfoInt(t, "stats", "arbor_upstream_full_syncs"), 0)
			if a.logLine("stored snapshot no longer matches its checksum") == "" {
				t.Error("relay-a did not log that its stored snapshot no longer matches its checksum")
			}

			flipInSnapshot(t, a, "N"+needle[1:]) // good again
			rep := redistest.Start(t)
			replicaOf(t, rep, b.Port)
			redistest.WaitInSync(t, syncTimeout, master, rep)
			expectEq(t, "relay-b arbor_upstream_full_syncs", b.InfoInt(t, "stats", "arbor_upstream_full_syncs"), 1)
		})
	}
}

// TestResumedTransferIsCheckedWhole: relay-b is stopped in the middle of
// an RDB transfer, and a byte of the part it kept on disk is changed while
// it is down (the file's chunks were checked as they arrived, before the
// change). It resumes the transfer from its kept chunks, but the
// end-to-end check covers the kept bytes too: it refuses the RDB, discards
// the transfer, fetches the RDB whole, and its replica converges.
func TestResumedTransferIsCheckedWhole(t *testing.T) {
	ctx := context.Background()
	master := redistest.Start(t, "--rdbcompression", "no")
	if err := master.Client().Do(ctx, "DEBUG", "POPULATE", "80000", "key", "64").Err(); err != nil {
		t.Fatal(err)
	}
	b, _, _ := halfwayTransfer(t, master)
	b.Stop()

	var rec struct {
		Bytes int64 `json:"durable_bytes"`
	}
	if raw, err := os.ReadFile(filepath.Join(b.cfg.DataDir, "transfer.json")); err != nil || json.Unmarshal(raw, &rec) != nil || rec.Bytes < 1<<20 {
		t.Fatalf("relay-b kept no resumable transfer: %+v, %v", rec, err)
	}
	path := filepath.Join(b.cfg.DataDir, "transfer.rdb")
	kept, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(kept, []byte("value:"))
	if i < 0 || int64(i) >= rec.Bytes {
		t.Fatalf("no value in the kept part of the transfer (at %d of %d bytes)", i, rec.Bytes)
	}
	kept[i] ^= 0x20 // "value:" becomes "Value:": the RDB still parses
	if err := os.WriteFile(path, kept, 0o644); err != nil {
		t.Fatal(err)
	}

	b.start()
	rep := redistest.Start(t)
	replicaOf(t, rep, b.Port)
	redistest.WaitInSync(t, syncTimeout, master, rep)
	if b.logLine("resuming RDB transfer from parent relay") == "" {
		t.Error("relay-b did not resume its transfer")
	}
	if n := b.InfoInt(t, "stats", "arbor_upstream_rejected_snapshots"); n < 1 {
		t.Errorf("relay-b arbor_upstream_rejected_snapshots %d, want at least 1", n)
	}
	expectEq(t, "relay-b arbor_upstream_full_syncs (installed once)", b.InfoInt(t, "stats", "arbor_upstream_full_syncs"), 1)
}
