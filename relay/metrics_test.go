package relay_test

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/arbor-fabric/arbor/internal/redistest"
	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
	"github.com/arbor-fabric/arbor/relay"
)

// metricReader is a manual reader behind a relay's MeterProvider.
type metricReader struct {
	t      *testing.T
	reader *sdkmetric.ManualReader
}

func newMetricReader(t *testing.T) (*metricReader, *sdkmetric.MeterProvider) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { mp.Shutdown(context.Background()) })
	return &metricReader{t: t, reader: reader}, mp
}

// sample is one data point: its metric's unit and its value.
type sample struct {
	unit  string
	value float64
}

// collect returns every data point, keyed by the metric name and its
// attributes ("name{k=v,k=v}", keys sorted).
func (m *metricReader) collect() map[string]sample {
	m.t.Helper()
	var rm metricdata.ResourceMetrics
	if err := m.reader.Collect(context.Background(), &rm); err != nil {
		m.t.Fatalf("collect metrics: %v", err)
	}
	out := map[string]sample{}
	add := func(name, unit string, attrs attribute.Set, v float64) {
		var kv []string
		for _, a := range attrs.ToSlice() {
			kv = append(kv, string(a.Key)+"="+a.Value.String())
		}
		out[name+"{"+strings.Join(kv, ",")+"}"] = sample{unit: unit, value: v}
	}
	for _, sm := range rm.ScopeMetrics {
		for _, mt := range sm.Metrics {
			switch d := mt.Data.(type) {
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					add(mt.Name, mt.Unit, p.Attributes, float64(p.Value))
				}
			case metricdata.Gauge[float64]:
				for _, p := range d.DataPoints {
					add(mt.Name, mt.Unit, p.Attributes, p.Value)
				}
			case metricdata.Sum[int64]:
				if !d.IsMonotonic {
					m.t.Errorf("%s: a counter that is not monotonic", mt.Name)
				}
				for _, p := range d.DataPoints {
					add(mt.Name, mt.Unit, p.Attributes, float64(p.Value))
				}
			default:
				m.t.Errorf("%s: unexpected data %T", mt.Name, mt.Data)
			}
		}
	}
	return out
}

// key names a data point as collect does; kv alternates keys and values
// and must be sorted by key.
func key(name string, kv ...string) string {
	var parts []string
	for i := 0; i+1 < len(kv); i += 2 {
		parts = append(parts, kv[i]+"="+kv[i+1])
	}
	return name + "{" + strings.Join(parts, ",") + "}"
}

// childKey names a per-child point of relay id.
func childKey(name, relayID, child, kind, site string) string {
	return key(name, "child.id", child, "child.kind", kind, "child.site", site, "relay.id", relayID)
}

func childOf(st *arborv1.RelayStatus, id string) *arborv1.ChildStatus {
	for _, c := range st.GetChildren() {
		if c.GetId() == id {
			return c
		}
	}
	return nil
}

// expectPoint checks one data point's value and unit.
func expectPoint(got map[string]sample, k, unit string, want float64) error {
	s, ok := got[k]
	switch {
	case !ok:
		return fmt.Errorf("no data point %s", k)
	case s.unit != unit:
		return fmt.Errorf("%s: unit %q, want %q", k, s.unit, unit)
	case s.value != want:
		return fmt.Errorf("%s: got %v, want %v", k, s.value, want)
	}
	return nil
}

// TestRelayMetrics: relay-a → relay-b (through a link that can be paused)
// → a Redis replica. The metrics of both relays match their Status: offsets,
// per child acked offset and lag (bytes and seconds) with the child's id,
// kind and site, per site acks, counters and link bytes; a paused link shows
// as lag, which goes back to zero when the link is back; and the
// instruments are gone once the relay stops.
func TestRelayMetrics(t *testing.T) {
	master := redistest.Start(t, "--repl-backlog-size", "64mb")
	load(t, master, redistest.LoadOptions{SmallKeys: 2000, Seed: 1})
	readA, mpA := newMetricReader(t)
	readB, mpB := newMetricReader(t)
	a := treeRelay(t, "relay-a", "A", upstreamOf(master), func(c *relay.Config) { c.MeterProvider = mpA })
	link := bridgeTo(t, a)
	b := treeRelay(t, "relay-b", "B", "arbor://"+link.Addr(), func(c *relay.Config) { c.MeterProvider = mpB })
	rep := redistest.Start(t)
	replicaOf(t, rep, b.Port)
	load(t, master, redistest.LoadOptions{SmallKeys: 1000, Seed: 2})
	redistest.WaitInSync(t, syncTimeout, master, rep)

	// In sync: every lag is zero and every value is the Status's.
	redistest.WaitFor(t, 15*time.Second, func() error {
		ma, mb := readA.collect(), readB.collect()
		sa, sb := a.status(t), b.status(t)
		cb, crep := childOf(sa, "relay-b"), childOf(sb, rep.Addr)
		if cb == nil || crep == nil || cb.GetLagBytes() != 0 || crep.GetLagBytes() != 0 || sa.GetStoredOffset() != sb.GetStoredOffset() {
			return fmt.Errorf("not settled: relay-a %d, relay-b %d, children %v / %v", sa.GetStoredOffset(), sb.GetStoredOffset(), cb, crep)
		}
		for _, check := range []error{
			expectPoint(ma, key("arbor.relay.stored.offset", "relay.id", "relay-a"), "By", float64(sa.GetStoredOffset())),
			expectPoint(mb, key("arbor.relay.stored.offset", "relay.id", "relay-b"), "By", float64(sb.GetStoredOffset())),
			expectPoint(mb, key("arbor.relay.master.offset", "relay.id", "relay-b"), "By", float64(sb.GetMasterOffset())),
			expectPoint(mb, key("arbor.relay.upstream.lag", "relay.id", "relay-b"), "By", 0),
			expectPoint(ma, key("arbor.relay.upstream.up", "relay.id", "relay-a"), "", 1),
			expectPoint(mb, key("arbor.relay.upstream.up", "relay.id", "relay-b"), "", 1),
			expectPoint(ma, key("arbor.relay.backlog.limit", "relay.id", "relay-a"), "By", float64(256<<20)),
			expectPoint(ma, key("arbor.relay.backlog.size", "relay.id", "relay-a"), "By", float64(sa.GetBacklog().GetSizeBytes())),
			expectPoint(ma, childKey("arbor.relay.child.acked.offset", "relay-a", "relay-b", "relay", "B"), "By", float64(cb.GetAckedOffset())),
			expectPoint(ma, childKey("arbor.relay.child.lag", "relay-a", "relay-b", "relay", "B"), "By", 0),
			expectPoint(ma, childKey("arbor.relay.child.lag.time", "relay-a", "relay-b", "relay", "B"), "s", 0),
			expectPoint(mb, childKey("arbor.relay.child.acked.offset", "relay-b", rep.Addr, "redis", "B"), "By", float64(crep.GetAckedOffset())),
			expectPoint(mb, childKey("arbor.relay.child.lag", "relay-b", rep.Addr, "redis", "B"), "By", 0),
			expectPoint(ma, key("arbor.relay.site.acked.offset", "relay.id", "relay-a", "site", "B"), "By", float64(sa.GetStoredOffset())),
			expectPoint(ma, key("arbor.relay.site.at_risk", "relay.id", "relay-a", "site", "A"), "By", 0),
			expectPoint(ma, key("arbor.relay.syncs.served", "relay.id", "relay-a", "sync.kind", "full"), "{sync}", 1),
			expectPoint(mb, key("arbor.relay.syncs.served", "relay.id", "relay-b", "sync.kind", "full"), "{sync}", 1),
			expectPoint(mb, key("arbor.relay.syncs.received", "relay.id", "relay-b", "sync.kind", "full"), "{sync}", 1),
			expectPoint(mb, key("arbor.relay.syncs.received", "relay.id", "relay-b", "sync.kind", "partial"), "{sync}", 0),
			expectPoint(ma, key("arbor.relay.link.sent", "encoding", "raw", "relay.id", "relay-a"), "By", float64(sa.GetCompression().GetRawBytes())),
			expectPoint(ma, key("arbor.relay.link.sent", "encoding", "wire", "relay.id", "relay-a"), "By", float64(sa.GetCompression().GetWireBytes())),
			expectPoint(ma, key("arbor.relay.link.shared", "relay.id", "relay-a"), "By", float64(sa.GetCompression().GetSharedRawBytes())),
			expectPoint(mb, key("arbor.relay.link.received", "encoding", "raw", "relay.id", "relay-b"), "By", float64(sb.GetUpstreamBytes().GetRawBytes())),
			expectPoint(mb, key("arbor.relay.link.received", "encoding", "wire", "relay.id", "relay-b"), "By", float64(sb.GetUpstreamBytes().GetWireBytes())),
			expectPoint(ma, key("arbor.relay.child.sent", "child.id", "relay-b", "child.kind", "relay", "child.site", "B", "encoding", "wire", "relay.id", "relay-a"),
				"By", float64(cb.GetBytes().GetWireBytes())),
		} {
			if check != nil {
				return check
			}
		}
		return nil
	})
	sb := b.status(t)
	if raw, wire := sb.GetUpstreamBytes().GetRawBytes(), sb.GetUpstreamBytes().GetWireBytes(); wire == 0 || raw < wire {
		t.Errorf("relay-b link bytes received: raw %d, wire %d; want compressed bytes", raw, wire)
	}
	if shared := a.status(t).GetCompression().GetSharedRawBytes(); shared == 0 {
		t.Error("relay-a sent relay-b no shared frames, so arbor.relay.link.shared was only checked at 0")
	}

	// The link to relay-b stalls: relay-a sees relay-b fall behind, in
	// bytes and in seconds, and site B's bytes at risk.
	link.Pause()
	load(t, master, redistest.LoadOptions{SmallKeys: 300, Seed: 3})
	time.Sleep(300 * time.Millisecond)
	redistest.WaitFor(t, 15*time.Second, func() error {
		ma := readA.collect()
		sa := a.status(t)
		cb := childOf(sa, "relay-b")
		if cb == nil {
			return fmt.Errorf("relay-b not attached to relay-a")
		}
		lag := sa.GetStoredOffset() - cb.GetAckedOffset()
		if lag <= 0 {
			return fmt.Errorf("relay-b lags %d bytes behind relay-a", lag)
		}
		if err := expectPoint(ma, childKey("arbor.relay.child.lag", "relay-a", "relay-b", "relay", "B"), "By", float64(lag)); err != nil {
			return err
		}
		if err := expectPoint(ma, childKey("arbor.relay.child.acked.offset", "relay-a", "relay-b", "relay", "B"), "By", float64(cb.GetAckedOffset())); err != nil {
			return err
		}
		// Lag in time grows between the collection and Status.
		secs := ma[childKey("arbor.relay.child.lag.time", "relay-a", "relay-b", "relay", "B")].value
		if secs <= 0 || math.Abs(secs-float64(cb.GetLagMs())/1000) > 1 {
			return fmt.Errorf("relay-b lag %vs in metrics, %dms in Status; want about the same, above zero", secs, cb.GetLagMs())
		}
		k := key("arbor.relay.site.at_risk", "relay.id", "relay-a", "site", "A")
		if got := ma[k].value; got < float64(lag) {
			return fmt.Errorf("%s: %v, want at least relay-b's lag %d", k, got, lag)
		}
		t.Logf("paused link: relay-b %d bytes and %.3fs behind relay-a (Status: %d ms)", lag, secs, cb.GetLagMs())
		return nil
	})
	link.Restore()
	redistest.WaitInSync(t, syncTimeout, master, rep)
	redistest.WaitFor(t, 15*time.Second, func() error {
		k := childKey("arbor.relay.child.lag", "relay-a", "relay-b", "relay", "B")
		if s, ok := readA.collect()[k]; !ok || s.value != 0 {
			return fmt.Errorf("%s: %v after the link is back, want 0", k, s.value)
		}
		return nil
	})

	// Run has ended: the callback is unregistered.
	b.Stop()
	for k := range readB.collect() {
		t.Errorf("relay-b stopped, yet its metrics still report %s", k)
	}
}
