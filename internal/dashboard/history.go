package dashboard

import (
	"cmp"
	"strings"
	"sync"
	"time"

	"github.com/arbor-fabric/arbor/internal/statusview"
)

// Bounds of the per-site lag history the server keeps, so a page opened
// now charts the last minutes at once rather than starting empty.
const (
	// HistoryAge is how far back the lag history goes.
	HistoryAge = 5 * time.Minute
	// historyPoints bounds the points per site (views come at most twice a
	// second: 600 covers HistoryAge).
	historyPoints = 600
	// historySites bounds the sites kept (the sites of the newest view;
	// a topology with more keeps the first ones by name order of the view).
	historySites = 256
)

// LagPoint is one point of a site's lag history: the largest lag in bytes
// of the site's components (the lag the tree's edges show) in the view
// read at T (Unix milliseconds).
type LagPoint struct {
	T     int64 `json:"t"`
	Bytes int64 `json:"bytes"`
}

// FullSync is a full sync in progress from a relay to a child, with how
// far it got and, once the dashboard has seen it progress, its rate and
// the time left at that rate.
type FullSync struct {
	Relay string `json:"relay"`
	Child string `json:"child"`
	// Bytes are the bytes sent so far; Total the snapshot's size (0:
	// unknown), Percent Bytes of Total.
	Bytes   uint64  `json:"bytes"`
	Total   int64   `json:"total_bytes,omitempty"`
	Percent float64 `json:"percent,omitempty"`
	// RateBytesPerSec is the average rate since the dashboard first saw
	// this sync; ETAMs the time left at that rate (absent until there is a
	// rate and a total).
	RateBytesPerSec float64 `json:"rate_bytes_per_sec,omitempty"`
	ETAMs           *int64  `json:"eta_ms,omitempty"`
	// SinceMs is how long the dashboard has seen it in progress.
	SinceMs int64 `json:"since_ms"`
}

// pageView is what the page and /api/view get: the fabric's view with the
// dashboard's own figures, computed over successive views.
type pageView struct {
	*statusview.Fabric
	// SiteLag is each site's largest lag in bytes in this view (the
	// newest point of its history).
	SiteLag   map[string]int64 `json:"site_lag"`
	FullSyncs []FullSync       `json:"full_syncs"`
}

// syncSeen is the first sight of a full sync in progress.
type syncSeen struct {
	at    time.Time
	bytes uint64
}

// tracker follows the views over time: each site's lag history and the
// progress of full syncs. observe is called by the reading goroutine,
// history by any.
type tracker struct {
	mu      sync.Mutex
	history map[string][]LagPoint // by site, oldest first; guarded by mu
	syncs   map[string]syncSeen   // by relay + child; guarded by mu
}

func newTracker() *tracker {
	return &tracker{history: map[string][]LagPoint{}, syncs: map[string]syncSeen{}}
}

// observe records view v (read at v.Time) and returns it with the
// dashboard's figures.
func (tr *tracker) observe(v *statusview.Fabric) pageView {
	now := v.Time
	lags := siteLags(v)
	tr.mu.Lock()
	defer tr.mu.Unlock()
	pv := pageView{Fabric: v, SiteLag: lags, FullSyncs: []FullSync{}}

	t := now.UnixMilli()
	keep := map[string]bool{}
	for _, s := range v.Sites {
		if len(keep) == historySites {
			break
		}
		keep[s.Name] = true
		h := tr.history[s.Name]
		if n := len(h); n > 0 && h[n-1].T >= t {
			continue // the clock went back or the same view twice
		}
		h = append(h, LagPoint{T: t, Bytes: lags[s.Name]})
		for len(h) > historyPoints || (len(h) > 0 && h[0].T < t-HistoryAge.Milliseconds()) {
			h = h[1:]
		}
		tr.history[s.Name] = h
	}
	for site := range tr.history {
		if !keep[site] {
			delete(tr.history, site)
		}
	}

	inSync := map[string]bool{}
	for _, r := range v.Relays {
		for _, l := range r.Links {
			if l.State != "full_sync" {
				continue
			}
			child := cmp.Or(l.Node, l.ID)
			key := r.ID + "\x00" + child
			inSync[key] = true
			seen, ok := tr.syncs[key]
			if !ok || l.RawBytes < seen.bytes {
				// New, or a new sync of the same link.
				seen = syncSeen{at: now, bytes: l.RawBytes}
				tr.syncs[key] = seen
			}
			pv.FullSyncs = append(pv.FullSyncs, fullSync(r.ID, child, l.RawBytes, r.SnapshotBytes, seen, now))
		}
	}
	for key := range tr.syncs {
		if !inSync[key] {
			delete(tr.syncs, key)
		}
	}
	return pv
}

// fullSync computes a sync's progress, rate and ETA.
func fullSync(relay, child string, sent uint64, total int64, seen syncSeen, now time.Time) FullSync {
	fs := FullSync{Relay: relay, Child: child, Bytes: sent, Total: total, SinceMs: now.Sub(seen.at).Milliseconds()}
	if total > 0 {
		fs.Percent = min(100, 100*float64(sent)/float64(total))
	}
	if d := now.Sub(seen.at); d > 0 && sent > seen.bytes {
		fs.RateBytesPerSec = float64(sent-seen.bytes) / d.Seconds()
		if total > 0 {
			left := max(0, float64(total)-float64(sent))
			eta := int64(left / fs.RateBytesPerSec * 1000)
			fs.ETAMs = &eta
		}
	}
	return fs
}

// siteLags returns each site's largest lag in bytes: over the edges the
// page draws, each component's incoming edge. A relay following another
// relay, and a Redis replica a relay reports, are measured by the parent
// relay's link (its acks, as the lag traces are); a relay following the
// master by its own upstream lag; a node no relay reports by its agent.
// The designated master has none.
func siteLags(v *statusview.Fabric) map[string]int64 {
	linkTo := map[string]statusview.Link{}
	for _, r := range v.Relays {
		for _, l := range r.Links {
			linkTo[cmp.Or(l.Node, l.ID)] = l
		}
	}
	out := map[string]int64{}
	for _, s := range v.Sites {
		out[s.Name] = 0
	}
	note := func(site string, lag int64) {
		if site == "" {
			site = "?"
		}
		out[site] = max(out[site], lag)
	}
	for _, r := range v.Relays {
		if !r.Live {
			continue
		}
		parent := r.Upstream
		if parent == "master" || strings.HasPrefix(parent, "redis://") {
			parent = v.Master
		}
		if l, ok := linkTo[r.ID]; ok && parent != v.Master {
			note(r.Site, l.LagBytes)
		} else {
			note(r.Site, r.LagBytes)
		}
	}
	for _, n := range v.Nodes {
		if n.ID == v.Master {
			continue
		}
		if l, ok := linkTo[n.ID]; ok {
			note(n.Site, l.LagBytes)
		} else if n.Live && n.Healthy {
			note(n.Site, n.LagBytes)
		}
	}
	return out
}

// lagHistory returns a copy of every site's lag history.
func (tr *tracker) lagHistory() map[string][]LagPoint {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	out := make(map[string][]LagPoint, len(tr.history))
	for site, h := range tr.history {
		out[site] = append([]LagPoint(nil), h...)
	}
	return out
}
