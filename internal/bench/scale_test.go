package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/arbor-fabric/arbor/internal/resp"
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
	// CPU time comes in 10 ms ticks (utime+stime): one lightly loaded
	// replica for a 1 s step may stay under one, so the replicas' cores are
	// checked on the step with the most of them.
	if most := rep.Replicas[len(rep.Replicas)-1]; rep.Children[0].ChildrenCores <= 0 || rep.Children[0].ReplicasCores <= 0 || most.ReplicasCores <= 0 {
		t.Errorf("children's or replicas' cores not measured: children step %+v, %d replicas step %+v", rep.Children[0], most.Replicas, most)
	}
	if len(rep.Datasets) != 1 {
		t.Fatalf("datasets: %+v", rep.Datasets)
	}
	if d := rep.Datasets[0]; d.RDBBytes <= 0 || d.StoreBytes < d.RDBBytes || d.NativeSyncSeconds <= 0 || d.ReplicaSyncSeconds <= 0 ||
		d.RelayRSSStart <= 0 || d.RelayRSSSynced <= 0 || d.RelayRSSAfter <= 0 || d.RelayPeakRSS < max(d.RelayRSSSynced, d.RelayRSSAfter) || d.MemAvailableMin <= 0 {
		t.Errorf("dataset %+v: want the RDB stored, the native and the relay's replica's syncs timed, the relay's RSS and MemAvailable watched", d)
	}
	// The dataset's replica synced from the relay with the master stopped:
	// the relay served it from its store, and it holds the master's data.
	if len(rep.Digests) != 2*(1+3)+2+2 || rep.Err() != nil {
		t.Errorf("digests: %+v (err %v), want 12 checks (1+3 replicas on the relay and natively, 2 under children, the dataset's native replica and relay's replica), all equal", rep.Digests, rep.Err())
	}
	var out bytes.Buffer
	if err := rep.WriteText(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Redis replicas on one relay", "Child relays on one relay", "Dataset:", "DEBUG DIGEST of 12 replicas equal", "Native, side by side"} {
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
		{"huge values", func(c *ScaleConfig) { c.DatasetValueSize = maxDatasetValueSize + 1 }, "dataset value size 4194305: want 0"},
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

// TestDatasetRoomRefusal: a dataset step the machine cannot hold is
// refused with a *RoomError (ErrNoRoom) naming the resource, before any
// process starts; what fits is let through. 10 GiB of the realistic mix
// with a native replica needs two copies at once, more than a 23 GiB
// machine; without it, one.
func TestDatasetRoomRefusal(t *testing.T) {
	const gib = int64(1) << 30
	roomy := machineRoom{memAvailable: 22 * gib, diskFree: 35 * gib}
	for _, tc := range []struct {
		name      string
		size      int64
		valueSize int
		native    bool
		have      machineRoom
		want      string // the resource refused, "" for none
	}{
		{"10 GiB mix, native: two copies", 10 * gib, 0, true, roomy, "memory"},
		{"10 GiB mix, one copy at a time", 10 * gib, 0, false, roomy, ""},
		{"10 GiB of 65,000-byte values, one copy", 10 * gib, 65000, false, roomy, ""},
		{"10 GiB of 65,000-byte values, native", 10 * gib, 65000, true, roomy, "memory"},
		{"1 GiB, native, little disk", gib, 0, true, machineRoom{memAvailable: 22 * gib, diskFree: 3 * gib}, "disk"},
		{"1 GiB, native, little memory", gib, 0, true, machineRoom{memAvailable: 4 * gib, diskFree: 35 * gib}, "memory"},
		{"1 GiB, native", gib, 0, true, roomy, ""},
	} {
		n := estimateDataset(tc.size, tc.valueSize, tc.native)
		err := checkRoom("dataset", n, tc.have)
		var re *RoomError
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: refused (%v), want it to fit", tc.name, err)
		case tc.want != "" && !errors.As(err, &re):
			t.Errorf("%s: error %v, want a *RoomError for %s", tc.name, err, tc.want)
		case tc.want != "" && (re.Resource != tc.want || !errors.Is(err, ErrNoRoom) || re.Need <= re.Have):
			t.Errorf("%s: %+v, want %s refused (need over have, ErrNoRoom)", tc.name, re, tc.want)
		case tc.want == "memory" && tc.native && !strings.Contains(re.Detail, "--dataset-native"):
			t.Errorf("%s: %v, want it to say that without --dataset-native one copy is resident at a time", tc.name, err)
		}
	}
}

// TestScaleRefusesHugeDataset: RunScale refuses a dataset no machine here
// holds before it starts anything, and leaves nothing behind.
func TestScaleRefusesHugeDataset(t *testing.T) {
	cfg := DefaultScaleConfig()
	cfg.Dir = t.TempDir()
	cfg.Replicas, cfg.Children, cfg.Datasets = []int{1}, nil, []int64{1 << 50}
	rep, err := RunScale(context.Background(), cfg)
	var re *RoomError
	if !errors.As(err, &re) || re.Resource != "memory" || rep != nil {
		t.Fatalf("RunScale: report %v, error %v, want a *RoomError for memory and no report", rep, err)
	}
	checkNothingLeft(t, cfg.Dir)
}

// TestBlobGen: the large-value fill writes well-formed SETs of new keys,
// counts their data, and no two neighbouring values are the same bytes.
func TestBlobGen(t *testing.T) {
	g := newBlobGen(1000, 1)
	var b []byte
	for range 3 {
		b = g.appendNext(b)
	}
	r := resp.NewReader(bufio.NewReader(bytes.NewReader(b)))
	var values [][]byte
	var data int64
	for i := range 3 {
		args, err := r.ReadCommand()
		if err != nil {
			t.Fatalf("command %d: %v", i, err)
		}
		if len(args) != 3 || string(args[0]) != "SET" || string(args[1]) != fmt.Sprintf("blob:%d", i) || len(args[2]) != 1000 {
			t.Fatalf("command %d: %q, want SET blob:%d and a 1000-byte value", i, args, i)
		}
		values = append(values, bytes.Clone(args[2]))
		data += int64(len(args[1]) + len(args[2]))
	}
	if g.written() != data {
		t.Errorf("written %d, counted %d", g.written(), data)
	}
	if bytes.Equal(values[0], values[1]) || bytes.Equal(values[1], values[2]) {
		t.Error("neighbouring values are equal")
	}
}

// TestMemWatchStops: should MemAvailable fall under the floor while a step
// runs, memWatch cancels the step with a *RoomError (here the floor is
// above what any machine has); meanwhile it samples the watched process's
// resident set.
func TestMemWatchStops(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	w := memWatch{floor: 1 << 60}
	w.pid.Store(int64(os.Getpid()))
	stop := w.watch(ctx, "dataset", cancel)
	defer stop()
	select {
	case <-ctx.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("not stopped after 30 s")
	}
	var re *RoomError
	if cause := context.Cause(ctx); !errors.As(cause, &re) || re.Resource != "memory" || !errors.Is(cause, ErrNoRoom) {
		t.Fatalf("cause %v, want a *RoomError for memory", cause)
	}
	if w.lowest() <= 0 || w.maxRSS.Load() <= 0 {
		t.Errorf("lowest MemAvailable %d, highest RSS %d: want both sampled", w.lowest(), w.maxRSS.Load())
	}
}

// TestDigestInterrupted: DEBUG DIGEST of a large dataset may take long; when
// the benchmark is interrupted (its context canceled) digest returns at
// once with the context's error. The server here (a listener that never
// answers) stands in for a redis-server busy digesting.
func TestDigestInterrupted(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := digest(ctx, ln.Addr().String())
		done <- err
	}()
	c, ok := <-accepted
	if !ok {
		t.Fatal("no connection")
	}
	defer c.Close()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("digest: %v, want context.Canceled", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("digest still waiting 20 s after its context ended")
	}
}
