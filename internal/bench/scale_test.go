package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestScaleSmoke runs the scale benchmark at tiny sizes: every step
// measures the relay (cores, RSS, probes seen on every replica), the
// dataset step stores the RDB, every digest matches, and nothing is left
// behind.
func TestScaleSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds arbor, runs redis-servers and relays")
	}
	cfg := DefaultScaleConfig()
	cfg.RelayBin, cfg.Dir = buildArbor(t), t.TempDir()
	cfg.Replicas, cfg.Children, cfg.Datasets = []int{1, 3}, []int{2}, []int64{4 << 20}
	cfg.Rate, cfg.Duration, cfg.LagSamples = 2000, time.Second, 20
	var progress bytes.Buffer
	cfg.Progress = &progress
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := RunScale(ctx, cfg)
	if err != nil {
		t.Fatalf("%v\nprogress:\n%s", err, progress.String())
	}
	if len(rep.Replicas) != 2 || rep.Replicas[1].Replicas != 3 || len(rep.Native) != 2 || rep.Native[1].Replicas != 3 || len(rep.Children) != 1 || rep.Children[0].Children != 2 {
		t.Fatalf("steps: %+v %+v %+v", rep.Replicas, rep.Native, rep.Children)
	}
	for _, s := range rep.Native {
		if s.StreamBytes <= 0 || s.MasterCores <= 0 || s.RelayCores != 0 || s.Lag.Count == 0 || s.Missing != 0 {
			t.Errorf("native step %+v: want stream and master CPU measured, no relay, every probe seen", s)
		}
	}
	for _, s := range append(rep.Replicas, rep.Children...) {
		if s.StreamBytes <= 0 || s.MasterCores <= 0 || s.RelayCores <= 0 || s.RelayRSS <= 0 || s.RelayPeakRSS < s.RelayRSS || s.Lag.Count == 0 || s.Missing != 0 {
			t.Errorf("step %+v: want stream, master and relay CPU, relay RSS measured and every probe seen", s)
		}
		if want := s.Lag.Count / s.Replicas; s.Worst.Count != want {
			t.Errorf("step of %d replicas: %d probes on the slowest replica, want %d (every probe on every replica)", s.Replicas, s.Worst.Count, want)
		}
	}
	if rep.Children[0].ChildrenCores <= 0 || rep.Children[0].ReplicasCores <= 0 || rep.Replicas[0].ReplicasCores <= 0 {
		t.Errorf("children's or replicas' cores not measured: %+v", rep.Children[0])
	}
	if len(rep.Datasets) != 1 || rep.Datasets[0].RDBBytes <= 0 || rep.Datasets[0].StoreBytes < rep.Datasets[0].RDBBytes || rep.Datasets[0].RelayPeakRSS <= 0 {
		t.Errorf("datasets: %+v", rep.Datasets)
	}
	if len(rep.Digests) != 2*(1+3)+2+1 || rep.Err() != nil {
		t.Errorf("digests: %+v (err %v), want 11 checks (1+3 replicas on the relay and natively, 2 under children, 1 dataset), all equal", rep.Digests, rep.Err())
	}
	var out bytes.Buffer
	if err := rep.WriteText(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Redis replicas on one relay", "Child relays on one relay", "Dataset:", "DEBUG DIGEST of 11 replicas equal", "Native, side by side"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	t.Logf("\n%s", out.String())
	checkNothingLeft(t, cfg.Dir)
}

// TestScaleConfigValidate: counts must ascend within bounds, datasets be
// at least 1 MiB, and the load positive when there are steps to load.
func TestScaleConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*ScaleConfig)
		want string
	}{
		{"defaults", func(*ScaleConfig) {}, ""},
		{"descending", func(c *ScaleConfig) { c.Replicas = []int{10, 1} }, "replicas [10 1]: want ascending"},
		{"zero", func(c *ScaleConfig) { c.Children = []int{0, 4} }, "children [0 4]: want ascending"},
		{"too many", func(c *ScaleConfig) { c.Replicas = []int{1, maxScaleReplicas + 1} }, "want ascending counts from 1 to 500"},
		{"tiny dataset", func(c *ScaleConfig) { c.Datasets = []int64{1000} }, "dataset 1000 bytes: want at least 1 MiB"},
		{"nothing", func(c *ScaleConfig) { c.Replicas, c.Children, c.Datasets = nil, nil, nil }, "nothing to measure"},
		{"no rate", func(c *ScaleConfig) { c.Rate = 0 }, "want all positive"},
		{"datasets only, no load needed", func(c *ScaleConfig) { c.Replicas, c.Children, c.Rate = nil, nil, 0 }, ""},
	} {
		c := DefaultScaleConfig()
		tc.edit(&c)
		err := c.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
}
