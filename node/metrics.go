package node

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
)

// The agent's metrics. The Redis's state (role, offset, lag, health, link)
// and the election's (epoch, role) are observable gauges read from values
// the owner loop stores after each check, so a collection never waits on
// the loop; failovers and their durations are recorded when this agent's
// node takes over. Exported to Prometheus, arbor.node.failovers becomes
// arbor_node_failovers_total, the duration arbor_node_failover_duration_seconds
// and arbor.node.lag arbor_node_lag_bytes.

const meterName = "github.com/arbor-fabric/arbor/node"

// MetricAttrNodeID is carried by every point, so agents sharing a
// MeterProvider stay apart; MetricAttrKind says how a take-over came
// about: switchover, or failover (a forced one too). A bootstrap or
// re-election promotes nothing and is not counted.
const (
	MetricAttrNodeID = attribute.Key("node.id")
	MetricAttrKind   = attribute.Key("kind")
)

// redisState is what the agent's last check saw of its Redis, as the
// gauges report it.
type redisState struct {
	status   *arborv1.NodeStatus // the status the check produced; never modified
	answered bool                // the Redis answered INFO
	lagKnown bool                // status's lag was measured against the master's published offset
}

// metrics are the agent's instruments and the values its gauges observe.
type metrics struct {
	epoch     atomic.Int64 // newest master record's epoch seen; 0 before any
	role      atomic.Int64 // the elector's role (0 follower, 1 campaigning, 2 leader)
	redis     atomic.Pointer[redisState]
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
	// Every gauge is observed by the one callback below; errs collects
	// the instruments' errors.
	var errs []error
	var observed []metric.Observable
	gauge := func(name string, opts ...metric.Int64ObservableGaugeOption) metric.Int64ObservableGauge {
		g, err := m.Int64ObservableGauge(name, opts...)
		errs, observed = append(errs, err), append(observed, g)
		return g
	}
	epoch := gauge("arbor.node.election.epoch", metric.WithUnit("{epoch}"),
		metric.WithDescription("Epoch of the newest master record this agent has seen (the election's leader key create revision)."))
	role := gauge("arbor.node.election.role",
		metric.WithDescription("The agent's election role: 0 follower, 1 campaigning, 2 leader (its Redis is the master)."))
	redisUp := gauge("arbor.node.redis.up",
		metric.WithDescription("1 when the Redis answered the agent's last check, else 0."))
	healthy := gauge("arbor.node.healthy",
		metric.WithDescription("1 when the Redis answered and is not loading its dataset (the status's healthy), else 0."))
	redisRole := gauge("arbor.node.redis.role",
		metric.WithDescription("The role the Redis reports: 1 master, 2 replica (0 not known: it did not answer)."))
	offset := gauge("arbor.node.offset", metric.WithUnit("By"),
		metric.WithDescription("The Redis's replication offset (master_repl_offset)."))
	linkUp := gauge("arbor.node.link.up",
		metric.WithDescription("Replicas only: 1 while the link to its master or relay streams (master_link_status:up), else 0."))
	linkState := gauge("arbor.node.link.state",
		metric.WithDescription("Replicas only: the link's state (2 connecting, 3 full sync, 4 streaming: arbor.v1.LinkState)."))
	lag := gauge("arbor.node.lag", metric.WithUnit("By"),
		metric.WithDescription("Replicas only, once the master's offset is known: bytes the Redis trails the master's published offset by."))
	lagTime, err := m.Float64ObservableGauge("arbor.node.lag.time", metric.WithUnit("s"),
		metric.WithDescription("Replicas only, once the master's offset is known: how long ago the master was at this Redis's offset (as fine as the master's status interval)."))
	errs, observed = append(errs, err), append(observed, lagTime)
	x.failovers, err = m.Int64Counter("arbor.node.failovers", metric.WithUnit("{failover}"),
		metric.WithDescription("Take-overs by this node: failovers and switchovers it won and completed."))
	errs = append(errs, err)
	x.duration, err = m.Float64Histogram("arbor.node.failover.duration", metric.WithUnit("s"),
		metric.WithDescription("From the master's loss of the election (or the switchover's write pause) to this node's published record."),
		metric.WithExplicitBucketBoundaries(0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 30))
	if err := errors.Join(append(errs, err)...); err != nil {
		return nil, err
	}
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(epoch, x.epoch.Load(), x.attrs)
		o.ObserveInt64(role, x.role.Load(), x.attrs)
		rs := x.redis.Load()
		if rs == nil {
			return nil // no check yet
		}
		st := rs.status
		o.ObserveInt64(redisUp, boolInt(rs.answered), x.attrs)
		o.ObserveInt64(healthy, boolInt(st.GetHealthy()), x.attrs)
		if !rs.answered {
			return nil // role, offset and link are unknown, not zero
		}
		o.ObserveInt64(redisRole, int64(st.GetRole()), x.attrs)
		o.ObserveInt64(offset, st.GetOffset(), x.attrs)
		if st.GetRole() == arborv1.NodeRole_NODE_ROLE_REPLICA {
			o.ObserveInt64(linkUp, boolInt(st.GetLinkState() == arborv1.LinkState_LINK_STATE_STREAMING), x.attrs)
			o.ObserveInt64(linkState, int64(st.GetLinkState()), x.attrs)
			if rs.lagKnown {
				o.ObserveInt64(lag, st.GetLagBytes(), x.attrs)
				o.ObserveFloat64(lagTime, float64(st.GetLagMs())/1000, x.attrs)
			}
		}
		return nil
	}, observed...)
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

// checked stores what a check of the Redis saw, for the gauges.
func (x *metrics) checked(st *arborv1.NodeStatus, answered, lagKnown bool) {
	x.redis.Store(&redisState{status: st, answered: answered, lagKnown: lagKnown})
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func (x *metrics) close() { _ = x.reg.Unregister() }
