package store

import "testing"

// BenchmarkAppend appends 16 KiB chunks of SET commands under each fsync
// policy (segments of 64 MiB, as a 512 MiB backlog gets).
func BenchmarkAppend(b *testing.B) {
	chunk := commands(0, 200)
	for len(chunk) < 16<<10 {
		chunk = append(chunk, commands(0, 200)...)
	}
	for _, policy := range []FsyncPolicy{FsyncNo, FsyncEverySec, FsyncAlways} {
		b.Run(policy.String(), func(b *testing.B) {
			o := testOptions(b, b.TempDir())
			// Open picks the segment and tail sizes of a 512 MiB backlog.
			o.BacklogSize, o.SegmentSize, o.TailSize = 512<<20, 0, 0
			o.Fsync = policy
			s := mustOpen(b, o)
			fullSync(b, s, testReplid, 0)
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
