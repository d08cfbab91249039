package node

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// The agent's election metrics. The epoch and role are observable gauges
// read from atomics the owner loop sets, so a collection never waits on
// the loop; failovers and their durations are recorded when this agent's
// node takes over. Exported to Prometheus, arbor.node.failovers becomes
// arbor_node_failovers_total and the duration arbor_node_failover_duration_seconds.

const meterName = "github.com/arbor-fabric/arbor/node"

// MetricAttrNodeID is carried by every point, so agents sharing a
// MeterProvider stay apart; MetricAttrKind says how a take-over came
// about (failover, switchover, or bootstrap for a first or re-election).
const (
	MetricAttrNodeID = attribute.Key("node.id")
	MetricAttrKind   = attribute.Key("kind")
)

// metrics are the agent's instruments and the values its gauges observe.
type metrics struct {
	epoch     atomic.Int64 // newest master record's epoch seen; 0 before any
	role      atomic.Int64 // the elector's role (0 follower, 1 campaigning, 2 leader)
	failovers metric.Int64Counter
	duration  metric.Float64Histogram
	attrs     metric.MeasurementOption
	reg       metric.Registration
}

// newMetrics creates the instruments from mp (nil: no metrics).
func newMetrics(mp metric.MeterProvider, id string) (*metrics, error) {
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	m := mp.Meter(meterName)
	x := &metrics{attrs: metric.WithAttributes(MetricAttrNodeID.String(id))}
	epoch, err1 := m.Int64ObservableGauge("arbor.node.election.epoch", metric.WithUnit("{epoch}"),
		metric.WithDescription("Epoch of the newest master record this agent has seen (the election's leader key create revision)."))
	role, err2 := m.Int64ObservableGauge("arbor.node.election.role",
		metric.WithDescription("The agent's election role: 0 follower, 1 campaigning, 2 leader (its Redis is the master)."))
	var err3, err4 error
	x.failovers, err3 = m.Int64Counter("arbor.node.failovers", metric.WithUnit("{failover}"),
		metric.WithDescription("Take-overs by this node: failovers and switchovers it won and completed."))
	x.duration, err4 = m.Float64Histogram("arbor.node.failover.duration", metric.WithUnit("s"),
		metric.WithDescription("From the master's loss of the election (or the switchover's write pause) to this node's published record."),
		metric.WithExplicitBucketBoundaries(0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 30))
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return nil, err
	}
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(epoch, x.epoch.Load(), x.attrs)
		o.ObserveInt64(role, x.role.Load(), x.attrs)
		return nil
	}, epoch, role)
	if err != nil {
		return nil, err
	}
	x.reg = reg
	return x, nil
}

// tookOver records a completed take-over of kind that began at since
// (zero: unknown, no duration).
func (x *metrics) tookOver(ctx context.Context, kind string, since time.Time) {
	opt := metric.WithAttributes(MetricAttrKind.String(kind))
	x.failovers.Add(ctx, 1, x.attrs, opt)
	if !since.IsZero() {
		x.duration.Record(ctx, time.Since(since).Seconds(), x.attrs, opt)
	}
}

func (x *metrics) close() { _ = x.reg.Unregister() }
