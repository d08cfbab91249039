package dashboard

import (
	"testing"
	"time"

	"github.com/arbor-fabric/arbor/internal/statusview"
)

// TestTrackerLagHistory: each site's point is the largest lag of the edges
// the page draws; the history keeps one point per view, in order, within
// HistoryAge and historyPoints, and drops a site that is gone.
func TestTrackerLagHistory(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	view := func(at time.Time, lag int64, sites ...string) *statusview.Fabric {
		v := &statusview.Fabric{Time: at, Master: "m",
			Relays: []statusview.Relay{
				{ID: "ra", Site: "A", Upstream: "master", Live: true, LagBytes: 7,
					Links: []statusview.Link{{ID: "rb", Kind: "relay", LagBytes: lag}, {ID: "127.0.0.1:7", Node: "b1", Kind: "redis", LagBytes: 3}}},
				{ID: "rb", Site: "B", Upstream: "ra", Live: true, LagBytes: 1 << 40}, // its parent's link measures it
			},
			Nodes: []statusview.Node{
				{ID: "m", Site: "A", Live: true, Healthy: true, LagBytes: 1 << 40}, // the master: no edge
				{ID: "b1", Site: "B", Live: true, Healthy: true, LagBytes: 1 << 40},
				{ID: "a2", Site: "A", Live: true, Healthy: true, LagBytes: 5},
				{ID: "a3", Site: "A", Live: true, Healthy: false, LagBytes: 99}, // unhealthy: its figure is not drawn
			}}
		for _, s := range sites {
			v.Sites = append(v.Sites, statusview.Site{Name: s})
		}
		return v
	}
	tr := newTracker()
	pv := tr.observe(view(t0, 100, "A", "B"))
	if pv.SiteLag["A"] != 7 || pv.SiteLag["B"] != 100 {
		t.Errorf("site lags %v, want A 7 (ra's upstream lag), B 100 (ra's link to rb)", pv.SiteLag)
	}
	tr.observe(view(t0, 200, "A", "B"))                   // the same time: not a new point
	tr.observe(view(t0.Add(-time.Second), 300, "A", "B")) // older: not a new point
	if h := tr.lagHistory()["B"]; len(h) != 1 || h[0].Bytes != 100 {
		t.Fatalf("B's history after a view at the same time and an older one: %+v, want only the first point", h)
	}
	for i := 1; i <= historyPoints+10; i++ {
		tr.observe(view(t0.Add(time.Duration(i)*100*time.Millisecond), int64(i), "A", "B"))
	}
	h := tr.lagHistory()
	if len(h["B"]) != historyPoints {
		t.Fatalf("%d points kept for B, want %d", len(h["B"]), historyPoints)
	}
	for i := 1; i < len(h["B"]); i++ {
		if h["B"][i].T <= h["B"][i-1].T {
			t.Fatalf("history out of order at %d: %v", i, h["B"][i-1:i+1])
		}
	}
	if last := h["B"][len(h["B"])-1]; last.Bytes != historyPoints+10 {
		t.Errorf("newest point %+v", last)
	}
	// Past HistoryAge, the old points go.
	late := t0.Add(time.Duration(historyPoints+10)*100*time.Millisecond + HistoryAge - time.Second)
	tr.observe(view(late, 1, "A", "B"))
	if h := tr.lagHistory()["B"]; h[0].T < late.Add(-HistoryAge).UnixMilli() {
		t.Errorf("a point older than %v kept: %+v", HistoryAge, h[0])
	}
	// A site no longer in the view is dropped.
	tr.observe(view(late.Add(time.Second), 1, "A"))
	if _, ok := tr.lagHistory()["B"]; ok {
		t.Error("site B kept after it left the view")
	}
}

// TestTrackerFullSyncETA: a full sync's rate is what it sent since the
// dashboard first saw it over the time since, its ETA the rest of the
// snapshot at that rate; none before it progresses; a sync that ends is
// forgotten and a new one starts over.
func TestTrackerFullSyncETA(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	view := func(at time.Time, sent uint64, state string) *statusview.Fabric {
		return &statusview.Fabric{Time: at, Relays: []statusview.Relay{{ID: "ra", Live: true, SnapshotBytes: 100 << 20,
			Links: []statusview.Link{{ID: "rb", Kind: "relay", State: state, RawBytes: sent}}}}}
	}
	tr := newTracker()
	fs := tr.observe(view(t0, 10<<20, "full_sync")).FullSyncs
	if len(fs) != 1 || fs[0].Relay != "ra" || fs[0].Child != "rb" || fs[0].Percent != 10 || fs[0].ETAMs != nil || fs[0].RateBytesPerSec != 0 {
		t.Fatalf("first sight: %+v", fs)
	}
	fs = tr.observe(view(t0.Add(2*time.Second), 30<<20, "full_sync")).FullSyncs
	// 20 MiB in 2 s: 10 MiB/s; 70 MiB left: 7 s.
	if len(fs) != 1 || fs[0].RateBytesPerSec != 10<<20 || fs[0].ETAMs == nil || *fs[0].ETAMs != 7000 || fs[0].Percent != 30 || fs[0].SinceMs != 2000 {
		t.Fatalf("after 2 s: %+v", fs)
	}
	if fs := tr.observe(view(t0.Add(3*time.Second), 100<<20, "streaming")).FullSyncs; len(fs) != 0 {
		t.Fatalf("a streaming link listed as syncing: %+v", fs)
	}
	fs = tr.observe(view(t0.Add(4*time.Second), 1<<20, "full_sync")).FullSyncs
	if len(fs) != 1 || fs[0].SinceMs != 0 || fs[0].ETAMs != nil {
		t.Fatalf("a new sync: %+v", fs)
	}
}
