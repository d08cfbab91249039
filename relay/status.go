package relay

import (
	"slices"
	"time"

	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
	"google.golang.org/protobuf/proto"
)

// Status returns the relay's state as served by the Status RPC (and
// published to etcd): its upstream link, IDs and offsets, store, counters,
// every child relay and Redis replica with its acked offset and lag, and,
// per site, the acked offset and the bytes that would be lost if that site
// vanished now.
func (r *Relay) Status() *arborv1.RelayStatus {
	st := r.store.State()
	now := time.Now()
	r.link.mu.Lock()
	linkState, lastErr, since, cut := r.link.state, r.link.lastErr, r.link.since, r.link.cut
	r.link.mu.Unlock()
	master := max(r.masterOffset.Load(), st.End)
	s := &arborv1.RelayStatus{
		Id:           r.cfg.ID,
		Site:         r.cfg.Site,
		Upstream:     r.currentUpstream().String(),
		LinkState:    linkStateOf(linkState),
		Replid:       st.Replid,
		Replid2:      st.Replid2,
		SecondOffset: st.SecondOffset - 1,
		MasterOffset: master,
		StoredOffset: st.End,
		AckedOffset:  r.upstreamAck(st, r.currentUpstream().Kind == UpstreamRedis),
		Backlog:      &arborv1.Backlog{StartOffset: st.Start, EndOffset: st.End, SizeBytes: st.BacklogBytes, LimitBytes: r.cfg.BacklogSize},
		Compression:  &arborv1.CompressionStats{RawBytes: r.stats.rawBytes.Load(), WireBytes: r.stats.wireBytes.Load(), SharedRawBytes: r.stats.sharedRawBytes.Load()},
		LastError:    lastErr,
		// A runner that moves the relay reads these two (see
		// UpstreamCut.action). A copy, for the caller to keep (nil stays
		// nil).
		UpstreamCut:          proto.CloneOf(cut),
		LinkStateSinceUnixMs: since.UnixMilli(),
		Counters: &arborv1.SyncCounters{
			FullSyncsServed:      uint64(r.stats.fullSyncs.Load()),
			PartialSyncsServed:   uint64(r.stats.partialOK.Load()),
			PartialSyncsRefused:  uint64(r.stats.partialErr.Load()),
			UpstreamFullSyncs:    uint64(r.stats.upstreamFull.Load()),
			UpstreamPartialSyncs: uint64(r.stats.upstreamPartial.Load()),
		},
	}
	if raw := r.stats.upstreamRawBytes.Load(); raw > 0 {
		s.UpstreamBytes = &arborv1.CompressionStats{RawBytes: uint64(raw), WireBytes: uint64(r.stats.upstreamWireBytes.Load())}
	}
	if st.Snapshot != nil {
		s.Snapshot = &arborv1.Snapshot{Replid: st.Snapshot.Replid, Offset: st.Snapshot.Offset, SizeBytes: st.Snapshot.Size, RdbVersion: int32(st.Snapshot.RDBVersion)}
	}
	for _, c := range r.childList() {
		acked := c.acked.Load()
		s.Children = append(s.Children, &arborv1.ChildStatus{
			Id: c.id, Kind: arborv1.ChildKind_CHILD_KIND_RELAY, Addr: c.addr, Site: c.site,
			AckedOffset: acked, LagBytes: max(0, st.End-acked), LagMs: r.timeline.lag(acked, st.End, now).Milliseconds(),
			State:       arborv1.LinkState(c.state.Load()),
			Compression: compressionName(c.compression),
			Bytes:       &arborv1.CompressionStats{RawBytes: c.rawBytes.Load(), WireBytes: c.wireBytes.Load(), SharedRawBytes: c.sharedRawBytes.Load()},
		})
	}
	for _, rp := range r.replicas.list() {
		acked := rp.ackOffset.Load()
		state := arborv1.LinkState_LINK_STATE_STREAMING
		if v, _ := rp.state.Load().(string); v != "online" {
			state = arborv1.LinkState_LINK_STATE_FULL_SYNC
		}
		s.Children = append(s.Children, &arborv1.ChildStatus{
			Id: rp.name(), Kind: arborv1.ChildKind_CHILD_KIND_REDIS, Addr: rp.name(), Site: r.cfg.Site,
			AckedOffset: acked, LagBytes: max(0, st.End-acked), LagMs: r.timeline.lag(acked, st.End, now).Milliseconds(),
			State: state,
		})
	}
	s.SiteAcks = r.siteAcks(st.Durable, master)
	s.TopologyRevision, s.TopologyError = r.topology()
	s.EffectiveUpstream, s.Move = r.parent()
	return s
}

// siteAcks gives, per site, the furthest offset acked by anything in it
// (this relay counts for its own site with what it durably stored), and what would
// be lost if the site vanished: the master's offset minus the best copy
// outside it.
func (r *Relay) siteAcks(stored, master int64) []*arborv1.SiteAck {
	best := map[string]int64{r.cfg.Site: stored}
	for _, a := range r.subtreeAcks() {
		if v, ok := best[a.GetSite()]; !ok || a.GetAckedOffset() > v {
			best[a.GetSite()] = a.GetAckedOffset()
		}
	}
	sites := make([]string, 0, len(best))
	for s := range best {
		sites = append(sites, s)
	}
	slices.Sort(sites)
	out := make([]*arborv1.SiteAck, 0, len(sites))
	for _, s := range sites {
		var elsewhere int64
		for _, o := range sites {
			if o != s {
				elsewhere = max(elsewhere, best[o])
			}
		}
		out = append(out, &arborv1.SiteAck{Site: s, AckedOffset: best[s], BytesAtRisk: max(0, master-elsewhere)})
	}
	return out
}

func linkStateOf(s string) arborv1.LinkState {
	switch s {
	case "connected":
		return arborv1.LinkState_LINK_STATE_STREAMING
	case "sync":
		return arborv1.LinkState_LINK_STATE_FULL_SYNC
	case "connecting":
		return arborv1.LinkState_LINK_STATE_CONNECTING
	}
	return arborv1.LinkState_LINK_STATE_DISCONNECTED
}
