package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/arbor-fabric/arbor/internal/resp"
)

func TestParseMix(t *testing.T) {
	m, err := ParseMix(" profile=5, log=0,hash=2 ")
	if err != nil {
		t.Fatal(err)
	}
	if want := (Mix{{KindProfile, 5}, {KindLog, 0}, {KindHash, 2}}); !slices.Equal(m, want) {
		t.Errorf("got %v, want %v", m, want)
	}
	if got, want := DefaultMix().String(), "profile=40,log=30,counter=20,hash=10"; got != want {
		t.Errorf("default mix %q, want %q", got, want)
	}
	back, err := ParseMix(DefaultMix().String())
	if err != nil || !slices.Equal(back, DefaultMix()) {
		t.Errorf("round trip: %v, %v", back, err)
	}
	for _, bad := range []string{"", "profile=0", "blob=3", "profile", "profile=-1", "profile=x", "log=1,log=2"} {
		if _, err := ParseMix(bad); err == nil {
			t.Errorf("ParseMix(%q): no error", bad)
		}
	}
}

// parseCommands reads every RESP command of b.
func parseCommands(t *testing.T, b []byte) [][]string {
	t.Helper()
	rd := resp.NewReader(bufio.NewReader(bytes.NewReader(b)))
	var cmds [][]string
	for {
		v, err := rd.ReadReply()
		if err != nil {
			break
		}
		var args []string
		for _, a := range v.Array {
			args = append(args, string(a.Str))
		}
		cmds = append(cmds, args)
	}
	return cmds
}

func TestDocGen(t *testing.T) {
	gen := func() ([]byte, *docGen) {
		g := newDocGen(DefaultMix(), 1000, false, 7)
		var b []byte
		for range 2000 {
			b = g.appendNext(b)
		}
		return b, g
	}
	b, g := gen()
	if b2, _ := gen(); !bytes.Equal(b, b2) {
		t.Error("the same seed made different commands")
	}
	cmds := parseCommands(t, b)
	if len(cmds) != 2000 {
		t.Fatalf("parsed %d commands, want 2000", len(cmds))
	}
	var data int64
	byName := map[string]int{}
	for _, c := range cmds {
		byName[c[0]]++
		for _, a := range c[1:] {
			data += int64(len(a))
		}
		switch c[0] {
		case "SET":
			if strings.HasPrefix(c[1], "user:") && !json.Valid([]byte(c[2])) {
				t.Fatalf("profile is not JSON: %s", c[2])
			}
			if strings.HasPrefix(c[1], "log:") && !strings.Contains(c[2], " request_id=") {
				t.Fatalf("log line %q", c[2])
			}
		case "INCR":
			if len(c) != 2 {
				t.Fatalf("INCR %q", c)
			}
		case "HSET":
			if len(c) != 10 {
				t.Fatalf("HSET %q", c)
			}
		default:
			t.Fatalf("unexpected command %q", c)
		}
	}
	if data != g.dataBytes {
		t.Errorf("dataBytes %d, counted %d", g.dataBytes, data)
	}
	for kind, n := range g.count {
		if n < 100 {
			t.Errorf("%s written %d times of 2000", kind, n)
		}
	}
	if byName["SET"] < 1000 || byName["INCR"] < 200 || byName["HSET"] < 100 {
		t.Errorf("commands by name %v: not the mix", byName)
	}
	// Text, not random bytes: it compresses, but not to nothing.
	var z bytes.Buffer
	zw, _ := zstd.NewWriter(&z)
	zw.Write(b)
	zw.Close()
	if r := float64(z.Len()) / float64(len(b)); r < 0.1 || r > 0.5 {
		t.Errorf("zstd ratio %.3f: want realistic text (0.1-0.5)", r)
	}

	// Fill mode writes a new key every time.
	f := newDocGen(Mix{{KindProfile, 1}, {KindCounter, 1}}, 0, true, 1)
	b = b[:0]
	for range 500 {
		b = f.appendNext(b)
	}
	keys := map[string]bool{}
	for _, c := range parseCommands(t, b) {
		if keys[c[1]] {
			t.Fatalf("fill wrote %s twice", c[1])
		}
		keys[c[1]] = true
	}
}

func TestCountReplies(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{in: "+OK\r\n:1\r\n:12345\r\n+OK\r\n", want: 4},
		{in: "+OK\r\n-ERR wrong type\r\n", want: 1, wantErr: true},
		{in: "+OK\r\n$3\r\nabc\r\n", want: 1, wantErr: true},
	} {
		a, b := net.Pipe()
		go func() {
			// Split the replies across writes to cross read boundaries.
			for i := 0; i < len(tt.in); i += 3 {
				a.Write([]byte(tt.in[i:min(i+3, len(tt.in))]))
			}
			a.Close()
		}()
		var acked atomic.Int64
		var closing atomic.Bool
		err := countReplies(b, &acked, &closing)
		b.Close()
		if acked.Load() != tt.want {
			t.Errorf("%q: counted %d, want %d", tt.in, acked.Load(), tt.want)
		}
		// Without closing set, EOF is an error too; a bad reply must
		// name the reply.
		if tt.wantErr && (err == nil || !strings.Contains(err.Error(), "want a simple string")) {
			t.Errorf("%q: error %v, want a bad reply", tt.in, err)
		}
	}
}

func TestTreeConfigValidate(t *testing.T) {
	cfg := DefaultTreeConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if cfg.Bandwidth != 12_500_000 || cfg.Latency != 10*time.Millisecond || cfg.DatasetSize != 1<<30 ||
		cfg.BytesRate != 20000 || cfg.LagRate != 50000 || cfg.Compression != "zstd" {
		t.Errorf("defaults %+v", cfg)
	}
	bad := cfg
	bad.Phases = []string{"throughput"}
	bad.Compression = "lz4"
	bad.LagSamples = bad.LagRate + 1
	bad.Mix = Mix{{KindLog, 0}}
	err := bad.Validate()
	for _, want := range []string{"phases", "compression", "lag-samples", "mix"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v, want an error naming %s", err, want)
		}
	}
	if got, err := ParseTreePhases("fullsync,bytes"); err != nil || !slices.Equal(got, []string{TreePhaseBytes, TreePhaseFullSync}) {
		t.Errorf("ParseTreePhases: %v, %v", got, err)
	}
	if _, err := ParseTreePhases("lag,throughput"); err == nil {
		t.Error("ParseTreePhases accepted a relay phase")
	}
}

func TestSiteBytesFill(t *testing.T) {
	s := SiteBytes{NativeToSite: 2 << 20, NativeFromSite: 1000, ArborToSite: 600 << 10, ArborFromSite: 2000}
	s.fill(2 << 20)
	if s.NativePerMiB != float64(2<<20+1000)/2 || s.ArborPerMiB != float64(600<<10+2000)/2 {
		t.Errorf("per MiB: native %v, Arbor %v", s.NativePerMiB, s.ArborPerMiB)
	}
	if want := s.ArborPerMiB / s.NativePerMiB; s.Ratio != want {
		t.Errorf("ratio %v, want %v", s.Ratio, want)
	}
}

// TestRunTreeSmoke runs the whole tree benchmark tiny and checks that every
// phase measured something, that the replicas match their masters, and
// that no process or directory is left behind.
func TestRunTreeSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server and relay processes; skipped with -short")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skipf("redis-server not found: %v", err)
	}
	cfg := DefaultTreeConfig()
	cfg.RelayBin = buildArbor(t)
	cfg.Dir = t.TempDir()
	cfg.Duration = time.Second
	cfg.BytesRate = 1000
	cfg.LagRate = 2000
	cfg.LagSamples = 100
	cfg.LagSweep = []int{500}
	cfg.Keyspace = 5000
	cfg.DatasetSize = 2 << 20
	var progress bytes.Buffer
	cfg.Progress = &progress

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	rep, err := RunTree(ctx, cfg)
	t.Logf("progress:\n%s", progress.String())
	if err != nil {
		t.Fatalf("RunTree: %v", err)
	}
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", text.String())
	if err := rep.Err(); err != nil {
		t.Errorf("report has correctness failures: %v", err)
	}

	b := rep.Bytes
	if b == nil {
		t.Fatal("no bytes result")
	}
	if b.StreamBytes <= 0 || len(b.Sites) != 2 {
		t.Fatalf("bytes: stream %d, %d sites", b.StreamBytes, len(b.Sites))
	}
	for _, s := range b.Sites {
		// Each site's native link carries the whole stream to S-1.
		if s.NativeToSite < b.StreamBytes || s.ArborToSite <= 0 || s.NativeFromSite <= 0 && s.ArborFromSite <= 0 {
			t.Errorf("site %s: %+v for a stream of %d", s.Site, s, b.StreamBytes)
		}
	}
	if b.Total.Ratio <= 0 || b.Total.Ratio >= 1 {
		t.Errorf("bytes ratio %v: want compressed, in (0, 1)", b.Total.Ratio)
	}

	l := rep.Lag
	if l == nil {
		t.Fatal("no lag result")
	}
	if l.Probes < 10 || l.Native.Count != l.Probes || l.Arbor.Count != l.Probes {
		t.Errorf("probes %d, received native %d, Arbor %d", l.Probes, l.Native.Count, l.Arbor.Count)
	}
	// Both paths cross a link with 10 ms of latency.
	if l.Native.P50 < l.LinkLatencyMs || l.Arbor.P50 < l.LinkLatencyMs {
		t.Errorf("lag p50 native %v ms, Arbor %v ms: below the link's %v ms", l.Native.P50, l.Arbor.P50, l.LinkLatencyMs)
	}

	if len(rep.LagSweep) != 1 || rep.LagSweep[0].Rate != 500 || rep.LagSweep[0].Arbor.Count == 0 {
		t.Errorf("lag sweep: %+v, want one measurement at 500 writes/s", rep.LagSweep)
	}

	f := rep.FullSync
	if f == nil {
		t.Fatal("no full sync result")
	}
	if f.DataBytes < cfg.DatasetSize || f.Keys <= 0 || f.RDBBytes <= 0 {
		t.Errorf("fill: %d data bytes, %d keys, RDB %d", f.DataBytes, f.Keys, f.RDBBytes)
	}
	if f.NativeSeconds <= 0 || f.ArborSeconds <= 0 || f.NativeLinkBytes < f.RDBBytes/2 || f.ArborLinkBytes <= 0 {
		t.Errorf("full sync: native %v s %d B, Arbor %v s %d B", f.NativeSeconds, f.NativeLinkBytes, f.ArborSeconds, f.ArborLinkBytes)
	}
	// 8 replicas after the bytes phase and each lag measurement, 2 after
	// the full sync.
	if got, want := len(rep.Digests), 8+8+8+2; got != want {
		t.Errorf("digest checks: got %d, want %d", got, want)
	}
	if len(rep.Targets) != 4 { // bytes, lag by the relays and end to end, full sync
		t.Errorf("targets: %v", rep.Targets)
	}
	if _, err := json.Marshal(rep); err != nil {
		t.Errorf("report does not marshal: %v", err)
	}
	checkNothingLeft(t, cfg.Dir)
}

// TestRunTreeCanceled cancels a tree run during its first load and checks
// that it returns promptly with the context's error and leaves no process,
// bridge or directory behind (goleak checks the bridges' goroutines).
func TestRunTreeCanceled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server and relay processes; skipped with -short")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skipf("redis-server not found: %v", err)
	}
	cfg := DefaultTreeConfig()
	cfg.RelayBin = buildArbor(t)
	cfg.Dir = t.TempDir()
	cfg.Duration = time.Minute
	cfg.BytesRate = 1000
	cfg.Keyspace = 1000
	var progress lockedBuffer
	cfg.Progress = &progress

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := RunTree(ctx, cfg)
		done <- err
	}()
	// Cancel once the first load has started.
	waitProgress(t, &progress, "writing ", done)
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Error("RunTree after cancel: no error")
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("RunTree did not return 30s after cancel; progress:\n%s", progress.String())
	}
	checkNothingLeft(t, cfg.Dir)
}
