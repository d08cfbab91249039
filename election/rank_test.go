package election

import (
	"strings"
	"testing"
)

func TestRank(t *testing.T) {
	ref := Reference{Replid: "new", Offset: 10_000, Replid2: "old", SecondOffset: 9_000}
	good := func(id, site string, prio int32, off int64) Candidate {
		return Candidate{ID: id, Site: site, Candidate: true, Priority: prio, Alive: true, Healthy: true, Replid: "new", Offset: off}
	}
	with := func(c Candidate, f func(*Candidate)) Candidate { f(&c); return c }
	type want struct {
		id     string
		rank   int
		reason string // substring
	}
	tests := []struct {
		name string
		in   RankInput
		want []want
	}{
		{
			name: "priority first, then old site, then id",
			in: RankInput{OldSite: "A", Candidates: []Candidate{
				good("b2", "B", 10, 10_000), good("a2", "A", 10, 9_990), good("a1", "A", 10, 9_000), good("c", "C", 20, 9_500),
			}},
			want: []want{{"c", 1, "eligible"}, {"a1", 2, "old master's site"}, {"a2", 3, "eligible"}, {"b2", 4, "eligible"}},
		},
		{
			name: "offset does not order eligible candidates",
			in:   RankInput{Candidates: []Candidate{good("y", "A", 5, 10_000), good("x", "A", 5, 9_500)}},
			want: []want{{"x", 1, "eligible"}, {"y", 2, "eligible"}},
		},
		{
			name: "priority 0 never wins, even most advanced and only",
			in:   RankInput{Candidates: []Candidate{good("p0", "A", 0, 10_000)}},
			want: []want{{"p0", 0, "priority 0"}},
		},
		{
			name: "lagging backup is not eligible",
			in: RankInput{MaxLagBytes: 1000, Candidates: []Candidate{
				good("lag", "A", 100, 8_999), good("ok", "B", 1, 9_000),
			}},
			want: []want{{"ok", 1, "eligible"}, {"lag", 0, "lags 1001 bytes"}},
		},
		{
			name: "default lag limit is 1 MiB",
			in:   RankInput{Ref: Reference{Replid: "r", Offset: 3 << 20}, Candidates: []Candidate{with(good("n", "A", 1, 2<<20), func(c *Candidate) { c.Replid = "r" }), with(good("m", "A", 1, 2<<20-1), func(c *Candidate) { c.Replid = "r" })}},
			want: []want{{"n", 1, "eligible"}, {"m", 0, "lags 1048577 bytes"}},
		},
		{
			name: "previous replid up to the switch is the same history",
			in: RankInput{Candidates: []Candidate{
				with(good("behind", "A", 1, 8_000), func(c *Candidate) { c.Replid = "old" }),
				with(good("forked", "A", 1, 9_500), func(c *Candidate) { c.Replid = "old" }),
				with(good("other", "A", 9, 10_000), func(c *Candidate) { c.Replid = "else" }),
			}},
			want: []want{{"behind", 1, "eligible"}, {"forked", 0, "other replication history"}, {"other", 0, "other replication history"}},
		},
		{
			name: "not candidate, dead agent, unhealthy redis",
			in: RankInput{Candidates: []Candidate{
				with(good("nc", "A", 5, 10_000), func(c *Candidate) { c.Candidate = false }),
				with(good("dead", "A", 5, 10_000), func(c *Candidate) { c.Alive = false }),
				with(good("sick", "A", 5, 10_000), func(c *Candidate) { c.Healthy = false }),
			}},
			want: []want{{"dead", 0, "agent down"}, {"nc", 0, "not a candidate"}, {"sick", 0, "unhealthy"}},
		},
		{
			name: "no reference history: nobody",
			in:   RankInput{Ref: Reference{}, Candidates: []Candidate{good("a", "A", 1, 0)}},
			want: []want{{"a", 0, "no known replication history"}},
		},
		{
			name: "equal everything: one deterministic winner by id",
			in:   RankInput{Candidates: []Candidate{good("n2", "A", 3, 10_000), good("n1", "A", 3, 10_000)}},
			want: []want{{"n1", 1, "eligible"}, {"n2", 2, "eligible"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.in.Ref == (Reference{}) && !strings.HasPrefix(tt.name, "no reference") {
				tt.in.Ref = ref
			}
			got := Rank(tt.in)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d entries %+v, want %d", len(got), got, len(tt.want))
			}
			for i, w := range tt.want {
				g := got[i]
				if g.ID != w.id || g.Rank != w.rank || !strings.Contains(g.Reason, w.reason) {
					t.Errorf("entry %d: got %s rank %d %q, want %s rank %d containing %q", i, g.ID, g.Rank, g.Reason, w.id, w.rank, w.reason)
				}
			}
		})
	}
}
