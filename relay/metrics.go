package relay

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
)

// The relay's metrics are observable instruments read from one Status per
// collection, so the data path pays nothing for them. Offsets are in the
// master's offset space (bytes), so they carry the unit By; exported to
// Prometheus, arbor.relay.child.lag becomes arbor_relay_child_lag_bytes
// and counters get _total.

const meterName = "github.com/arbor-fabric/arbor/relay"

// Metric attribute keys. Every point carries MetricAttrRelayID, so relays
// sharing a MeterProvider stay apart.
const (
	MetricAttrRelayID   = attribute.Key("relay.id")
	MetricAttrChildID   = attribute.Key("child.id")
	MetricAttrChildKind = attribute.Key("child.kind") // relay or redis
	MetricAttrChildSite = attribute.Key("child.site")
	MetricAttrSite      = attribute.Key("site")
	MetricAttrSyncKind  = attribute.Key("sync.kind") // full or partial
	MetricAttrEncoding  = attribute.Key("encoding")  // raw (before compression) or wire
)

// instruments are the relay's metric instruments.
type instruments struct {
	storedOffset  metric.Int64ObservableGauge
	masterOffset  metric.Int64ObservableGauge
	upstreamLag   metric.Int64ObservableGauge
	upstreamUp    metric.Int64ObservableGauge
	backlogSize   metric.Int64ObservableGauge
	backlogLimit  metric.Int64ObservableGauge
	childAcked    metric.Int64ObservableGauge
	childLag      metric.Int64ObservableGauge
	childLagTime  metric.Float64ObservableGauge
	childSent     metric.Int64ObservableCounter
	siteAcked     metric.Int64ObservableGauge
	siteAtRisk    metric.Int64ObservableGauge
	syncsServed   metric.Int64ObservableCounter
	syncsRefused  metric.Int64ObservableCounter
	syncsReceived metric.Int64ObservableCounter
	linkSent      metric.Int64ObservableCounter
	linkShared    metric.Int64ObservableCounter
	linkReceived  metric.Int64ObservableCounter
}

// registerMetrics creates the relay's instruments from mp and registers the
// callback that observes them. Unregister the result when the relay stops.
func (r *Relay) registerMetrics(mp metric.MeterProvider) (metric.Registration, error) {
	m := mp.Meter(meterName, metric.WithInstrumentationVersion(Version))
	var in instruments
	var errs []error
	gauge := func(dst *metric.Int64ObservableGauge, name, unit, desc string) {
		g, err := m.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		*dst = g
	}
	counter := func(dst *metric.Int64ObservableCounter, name, unit, desc string) {
		c, err := m.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		*dst = c
	}
	gauge(&in.storedOffset, "arbor.relay.stored.offset", "By",
		"End of the replication stream this relay holds, as a master offset.")
	gauge(&in.masterOffset, "arbor.relay.master.offset", "By",
		"Newest master offset this relay has heard of (stream or heartbeats).")
	gauge(&in.upstreamLag, "arbor.relay.upstream.lag", "By",
		"Master offset minus stored offset: bytes this relay has yet to receive.")
	gauge(&in.upstreamUp, "arbor.relay.upstream.up", "",
		"1 while the upstream link is streaming, else 0.")
	gauge(&in.backlogSize, "arbor.relay.backlog.size", "By",
		"Stream bytes held in the backlog partial syncs are served from.")
	gauge(&in.backlogLimit, "arbor.relay.backlog.limit", "By",
		"Bound on the backlog's size.")
	gauge(&in.childAcked, "arbor.relay.child.acked.offset", "By",
		"Offset each child relay or Redis replica last acknowledged.")
	gauge(&in.childLag, "arbor.relay.child.lag", "By",
		"Stored offset minus the child's acknowledged offset.")
	lagTime, err := m.Float64ObservableGauge("arbor.relay.child.lag.time", metric.WithUnit("s"),
		metric.WithDescription("How far the child's acknowledgements trail the origin time of the bytes this relay holds."))
	errs = append(errs, err)
	in.childLagTime = lagTime
	counter(&in.childSent, "arbor.relay.child.sent", "By",
		"Bytes sent to each child relay, before (raw) and after (wire) compression.")
	gauge(&in.siteAcked, "arbor.relay.site.acked.offset", "By",
		"Furthest offset acknowledged by anything in the site, in this relay's subtree.")
	gauge(&in.siteAtRisk, "arbor.relay.site.at_risk", "By",
		"Bytes that would be lost if the site vanished now: master offset minus the best copy outside it.")
	counter(&in.syncsServed, "arbor.relay.syncs.served", "{sync}",
		"Full and partial syncs served to child relays and Redis replicas.")
	counter(&in.syncsRefused, "arbor.relay.syncs.refused", "{sync}",
		"Partial syncs asked for by children and refused (then served as full syncs).")
	counter(&in.syncsReceived, "arbor.relay.syncs.received", "{sync}",
		"Full and partial syncs this relay made with its upstream.")
	counter(&in.linkSent, "arbor.relay.link.sent", "By",
		"Stream and RDB bytes sent to child relays, before (raw) and after (wire) compression.")
	counter(&in.linkShared, "arbor.relay.link.shared", "By",
		"Of the stream bytes sent to child relays, those sent in frames compressed once for every child that keeps up.")
	counter(&in.linkReceived, "arbor.relay.link.received", "By",
		"Stream and RDB bytes received from a parent relay, before (raw) and after (wire) decompression.")
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	self := MetricAttrRelayID.String(r.cfg.ID)
	own := metric.WithAttributeSet(attribute.NewSet(self))
	full := metric.WithAttributeSet(attribute.NewSet(self, MetricAttrSyncKind.String("full")))
	partial := metric.WithAttributeSet(attribute.NewSet(self, MetricAttrSyncKind.String("partial")))
	raw := metric.WithAttributeSet(attribute.NewSet(self, MetricAttrEncoding.String("raw")))
	wire := metric.WithAttributeSet(attribute.NewSet(self, MetricAttrEncoding.String("wire")))
	observe := func(_ context.Context, o metric.Observer) error {
		s := r.Status()
		o.ObserveInt64(in.storedOffset, s.GetStoredOffset(), own)
		o.ObserveInt64(in.masterOffset, s.GetMasterOffset(), own)
		o.ObserveInt64(in.upstreamLag, max(0, s.GetMasterOffset()-s.GetStoredOffset()), own)
		up := int64(0)
		if s.GetLinkState() == arborv1.LinkState_LINK_STATE_STREAMING {
			up = 1
		}
		o.ObserveInt64(in.upstreamUp, up, own)
		o.ObserveInt64(in.backlogSize, s.GetBacklog().GetSizeBytes(), own)
		o.ObserveInt64(in.backlogLimit, s.GetBacklog().GetLimitBytes(), own)
		for _, c := range s.GetChildren() {
			attrs := []attribute.KeyValue{self, MetricAttrChildID.String(c.GetId()),
				MetricAttrChildKind.String(childKindName(c.GetKind())), MetricAttrChildSite.String(c.GetSite())}
			child := metric.WithAttributes(attrs...)
			o.ObserveInt64(in.childAcked, c.GetAckedOffset(), child)
			o.ObserveInt64(in.childLag, c.GetLagBytes(), child)
			o.ObserveFloat64(in.childLagTime, float64(c.GetLagMs())/1000, child)
			if b := c.GetBytes(); b != nil {
				o.ObserveInt64(in.childSent, int64(b.GetRawBytes()), metric.WithAttributes(append(attrs, MetricAttrEncoding.String("raw"))...))
				o.ObserveInt64(in.childSent, int64(b.GetWireBytes()), metric.WithAttributes(append(attrs, MetricAttrEncoding.String("wire"))...))
			}
		}
		for _, sa := range s.GetSiteAcks() {
			site := metric.WithAttributes(self, MetricAttrSite.String(sa.GetSite()))
			o.ObserveInt64(in.siteAcked, sa.GetAckedOffset(), site)
			o.ObserveInt64(in.siteAtRisk, sa.GetBytesAtRisk(), site)
		}
		cs := s.GetCounters()
		o.ObserveInt64(in.syncsServed, int64(cs.GetFullSyncsServed()), full)
		o.ObserveInt64(in.syncsServed, int64(cs.GetPartialSyncsServed()), partial)
		o.ObserveInt64(in.syncsRefused, int64(cs.GetPartialSyncsRefused()), own)
		o.ObserveInt64(in.syncsReceived, int64(cs.GetUpstreamFullSyncs()), full)
		o.ObserveInt64(in.syncsReceived, int64(cs.GetUpstreamPartialSyncs()), partial)
		o.ObserveInt64(in.linkSent, int64(s.GetCompression().GetRawBytes()), raw)
		o.ObserveInt64(in.linkSent, int64(s.GetCompression().GetWireBytes()), wire)
		o.ObserveInt64(in.linkShared, int64(s.GetCompression().GetSharedRawBytes()), own)
		o.ObserveInt64(in.linkReceived, int64(s.GetUpstreamBytes().GetRawBytes()), raw)
		o.ObserveInt64(in.linkReceived, int64(s.GetUpstreamBytes().GetWireBytes()), wire)
		return nil
	}
	return m.RegisterCallback(observe,
		in.storedOffset, in.masterOffset, in.upstreamLag, in.upstreamUp, in.backlogSize, in.backlogLimit,
		in.childAcked, in.childLag, in.childLagTime, in.childSent, in.siteAcked, in.siteAtRisk,
		in.syncsServed, in.syncsRefused, in.syncsReceived, in.linkSent, in.linkShared, in.linkReceived)
}

func childKindName(k arborv1.ChildKind) string {
	switch k {
	case arborv1.ChildKind_CHILD_KIND_RELAY:
		return "relay"
	case arborv1.ChildKind_CHILD_KIND_REDIS:
		return "redis"
	}
	return "unknown"
}
