package node

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/arbor-fabric/arbor/internal/redistest"
)

// collect reads every point of r into a map by instrument name (one node
// per reader, so one point per gauge): a gauge's value, a sum's total, and
// a histogram's count and sum as name.count and name.sum.
func collect(ctx context.Context, r *sdkmetric.ManualReader) (map[string]float64, error) {
	var rm metricdata.ResourceMetrics
	if err := r.Collect(ctx, &rm); err != nil {
		return nil, err
	}
	got := map[string]float64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					got[m.Name] = float64(p.Value)
				}
			case metricdata.Gauge[float64]:
				for _, p := range d.DataPoints {
					got[m.Name] = p.Value
				}
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					got[m.Name] += float64(p.Value)
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					got[m.Name+".count"] += float64(p.Count)
					got[m.Name+".sum"] += p.Sum
				}
			}
		}
	}
	return got, nil
}

// TestNodeMetrics: a replica's agent exports its Redis's role, offset,
// link, health and its lag behind the master's published offset in bytes
// and time; the lag grows while its upstream is stopped and returns to 0
// once it resumes; a killed Redis reads as down, with no role or offset.
// The master's agent exports its role and offset and no lag.
func TestNodeMetrics(t *testing.T) {
	f := newFabric(t, 1)
	mr, nr := sdkmetric.NewManualReader(), sdkmetric.NewManualReader()
	f.runAgent(t, "m", f.m, func(c *Config) { c.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(mr)) })
	f.runAgent(t, "n", f.n, func(c *Config) { c.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(nr)) })
	waitFollows(t, f.ctx, f.n, f.r1, 30*time.Second)

	// want polls r until check accepts its points.
	want := func(who string, r *sdkmetric.ManualReader, check func(map[string]float64) error) map[string]float64 {
		t.Helper()
		var got map[string]float64
		redistest.WaitFor(t, 30*time.Second, func() error {
			var err error
			if got, err = collect(f.ctx, r); err != nil {
				return err
			}
			if err := check(got); err != nil {
				return fmt.Errorf("%s's metrics %v: %w", who, got, err)
			}
			return nil
		})
		return got
	}
	// A first write gives the master an offset to publish.
	if err := f.m.Client().Set(f.ctx, "k0", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	want("m", mr, func(m map[string]float64) error {
		if m["arbor.node.redis.up"] != 1 || m["arbor.node.healthy"] != 1 || m["arbor.node.redis.role"] != 1 || m["arbor.node.offset"] <= 0 {
			return fmt.Errorf("want up, healthy, role 1 (master), an offset")
		}
		if _, ok := m["arbor.node.lag"]; ok {
			return fmt.Errorf("a master reports a lag")
		}
		return nil
	})
	steady := func(m map[string]float64) error {
		lag, ok := m["arbor.node.lag"]
		if m["arbor.node.redis.up"] != 1 || m["arbor.node.healthy"] != 1 || m["arbor.node.redis.role"] != 2 ||
			m["arbor.node.link.up"] != 1 || m["arbor.node.link.state"] != 4 || m["arbor.node.offset"] <= 0 || !ok || lag != 0 {
			return fmt.Errorf("want up, healthy, role 2 (replica), link up and streaming, an offset, lag 0")
		}
		return nil
	}
	want("n", nr, steady)

	// Stop n's upstream and write: n stays where it is while the master
	// moves on.
	f.r1.Pause()
	resumed := false
	defer func() {
		if !resumed {
			f.r1.Resume()
		}
	}()
	val := strings.Repeat("x", 1024)
	for i := range 64 {
		if err := f.m.Client().Set(f.ctx, fmt.Sprintf("k%d", i), val, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	lagged := want("n", nr, func(m map[string]float64) error {
		if m["arbor.node.lag"] < 64*1024 || m["arbor.node.lag.time"] <= 0 {
			return fmt.Errorf("want a lag of at least 64 KiB and a time lag")
		}
		return nil
	})
	t.Logf("n behind a stopped upstream: %.0f bytes, %.3f s", lagged["arbor.node.lag"], lagged["arbor.node.lag.time"])
	f.r1.Resume()
	resumed = true
	want("n", nr, steady)

	f.n.Kill()
	want("n", nr, func(m map[string]float64) error {
		if v, ok := m["arbor.node.redis.up"]; !ok || v != 0 || m["arbor.node.healthy"] != 0 {
			return fmt.Errorf("want down and unhealthy")
		}
		for _, name := range []string{"arbor.node.redis.role", "arbor.node.offset", "arbor.node.lag"} {
			if _, ok := m[name]; ok {
				return fmt.Errorf("%s reported for a Redis that does not answer", name)
			}
		}
		return nil
	})
}
