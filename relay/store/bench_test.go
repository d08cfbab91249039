package store

import (
	"io"
	"log/slog"
	"testing"

	"github.com/arbor-fabric/arbor/internal/rdb"
)

// BenchmarkAppend appends 16 KiB chunks of SET commands under each fsync
// policy (segments of 64 MiB, as a 512 MiB backlog gets).
func BenchmarkAppend(b *testing.B) {
	chunk := commands(0, 200)
	for len(chunk) < 16<<10 {
		chunk = append(chunk, commands(0, 200)...)
	}
	for _, policy := range []FsyncPolicy{FsyncNo, FsyncEverySec, FsyncAlways} {
		b.Run(policy.String(), func(b *testing.B) {
			s, err := Open(Options{Dir: b.TempDir(), BacklogSize: 512 << 20, Fsync: policy,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			w, err := s.NewSnapshotWriter()
			if err != nil {
				b.Fatal(err)
			}
			if _, err := w.Write(rdb.Minimal(10)); err != nil {
				b.Fatal(err)
			}
			if _, err := s.ResetTo(w, testReplid, 0); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(chunk)))
			b.ResetTimer()
			for range b.N {
				if _, err := s.Append(chunk); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
