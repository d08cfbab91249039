package bench

import (
	"bufio"
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/arbor-fabric/arbor/internal/resp"
)

func TestPercentile(t *testing.T) {
	ms := func(xs ...int) []time.Duration {
		out := make([]time.Duration, len(xs))
		for i, x := range xs {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one p50", ms(7), 50, 7 * time.Millisecond},
		{"one p99", ms(7), 99, 7 * time.Millisecond},
		{"two p50", ms(1, 2), 50, 1 * time.Millisecond},
		{"two p99", ms(1, 2), 99, 2 * time.Millisecond},
		{"odd p50", ms(1, 2, 3, 4, 5), 50, 3 * time.Millisecond},
		{"hundred p50", hundred, 50, 50 * time.Millisecond},
		{"hundred p99", hundred, 99, 99 * time.Millisecond},
		{"hundred p100", hundred, 100, 100 * time.Millisecond},
		{"hundred tiny p", hundred, 0.001, 1 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("percentile(%v, %v) = %v, want %v", tt.sorted, tt.p, got, tt.want)
			}
		})
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		xs   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{5, 1}, 3},
		{[]float64{9, 1, 5}, 5},
		{[]float64{4, 1, 3, 2}, 2.5},
	}
	for _, tt := range tests {
		in := slices.Clone(tt.xs)
		if got := median(tt.xs); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.xs, got, tt.want)
		}
		if !slices.Equal(in, tt.xs) {
			t.Errorf("median modified its input: got %v, want %v", tt.xs, in)
		}
	}
}

func TestSummarize(t *testing.T) {
	ds := []time.Duration{4 * time.Millisecond, time.Millisecond, 3 * time.Millisecond, 2 * time.Millisecond}
	got := summarize(ds)
	want := Dist{Count: 4, P50: 2, P99: 4, Max: 4, Mean: 2.5}
	if got != want {
		t.Errorf("summarize = %+v, want %+v", got, want)
	}
	if got := summarize(nil); got != (Dist{}) {
		t.Errorf("summarize(nil) = %+v, want zero", got)
	}
}

func TestPerGiBAndRatio(t *testing.T) {
	if got := perGiB(2*time.Second, 1<<29); got != 4 {
		t.Errorf("perGiB(2s, 512MiB) = %v, want 4", got)
	}
	if got := perGiB(time.Second, 0); got != 0 {
		t.Errorf("perGiB(1s, 0) = %v, want 0", got)
	}
	if got := ratio(1, 0); got != 0 {
		t.Errorf("ratio(1, 0) = %v, want 0", got)
	}
	if got := ratio(3, 4); got != 0.75 {
		t.Errorf("ratio(3, 4) = %v, want 0.75", got)
	}
}

func TestLagStats(t *testing.T) {
	sent := []time.Duration{10, 20, 30}
	native := &subscriber{recvAt: []time.Duration{15, 0, 40}}
	relayed := &subscriber{recvAt: []time.Duration{17, 26, 0}, dups: 2}
	n, r, paired := lagStats(sent, native, relayed)
	if n.Count != 2 || n.Missing != 1 {
		t.Errorf("native: count %d missing %d, want 2 and 1", n.Count, n.Missing)
	}
	if r.Count != 2 || r.Missing != 1 || r.Duplicates != 2 {
		t.Errorf("relay: count %d missing %d dups %d, want 2, 1, 2", r.Count, r.Missing, r.Duplicates)
	}
	if paired.Count != 1 || paired.Max != ms(2) {
		t.Errorf("paired: count %d max %v, want 1 and %v", paired.Count, paired.Max, ms(2))
	}
}

func TestParseStatCPU(t *testing.T) {
	// The command name holds a space and a parenthesis.
	stat := "1234 (redis serv) er) S 1 1234 1234 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 5 0 100 0 0\n"
	got, err := parseStatCPU([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	if want := 325 * clockTick; got != want {
		t.Errorf("parseStatCPU = %v, want %v", got, want)
	}
	if _, err := parseStatCPU([]byte("1234 (x) S 1 2")); err == nil {
		t.Error("parseStatCPU of a short line: got nil error, want one")
	}
}

func TestParseStatusKB(t *testing.T) {
	status := "Name:\tarbor\nVmPeak:\t  900000 kB\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n"
	got, err := parseStatusKB([]byte(status), "VmHWM")
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(20 << 20); got != want {
		t.Errorf("VmHWM = %d, want %d", got, want)
	}
	if _, err := parseStatusKB([]byte(status), "VmSwap"); err == nil {
		t.Error("missing key: got nil error, want one")
	}
}

func TestParseHostCPU(t *testing.T) {
	stat := "cpu  100 5 50 800 40 3 2 0 0 0\ncpu0 50 2 25 400 20 1 1 0 0 0\n"
	busy, total, err := parseHostCPU([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	if busy != 160 || total != 1000 {
		t.Errorf("parseHostCPU = busy %d, total %d; want 160, 1000", busy, total)
	}
	if _, _, err := parseHostCPU([]byte("intr 1 2 3\n")); err == nil {
		t.Error("parseHostCPU without a cpu line: got nil error, want one")
	}
}

func TestSetBatch(t *testing.T) {
	value := newValue(5)
	b := newSetBatch(3, value)
	next := b.setKeys(8, 10)
	if next != 1 {
		t.Errorf("setKeys(8, 10) returned %d, want 1", next)
	}
	rd := resp.NewReader(bufio.NewReader(bytes.NewReader(b.buf)))
	for _, want := range []string{"key:0000000008", "key:0000000009", "key:0000000000"} {
		args, err := rd.ReadCommand()
		if err != nil {
			t.Fatal(err)
		}
		got := make([]string, len(args))
		for i, a := range args {
			got[i] = string(a)
		}
		if w := []string{"SET", want, "abcde"}; !slices.Equal(got, w) {
			t.Errorf("command %q, want %q", got, w)
		}
	}
	args, err := resp.NewReader(bufio.NewReader(bytes.NewReader(appendProbe(nil, 42, value)))).ReadCommand()
	if err != nil || len(args) != 3 || string(args[1]) != "lag:42" {
		t.Errorf("appendProbe(42): %q, %v; want SET lag:42 abcde", args, err)
	}
}

func TestCheckOK(t *testing.T) {
	if err := checkOK([]byte("+OK\r\n+OK\r\n")); err != nil {
		t.Errorf("checkOK(two OKs) = %v, want nil", err)
	}
	err := checkOK([]byte("+OK\r\n-OOM command not allowed\r\n"))
	if err == nil || !strings.Contains(err.Error(), "OOM") {
		t.Errorf("checkOK(error reply) = %v, want an error naming OOM", err)
	}
}

func TestParsePhases(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{"all", AllPhases, false},
		{"lag", []string{PhaseLag}, false},
		{"lag,throughput", []string{PhaseThroughput, PhaseLag}, false},
		{" Throughput , throughput", []string{PhaseThroughput}, false},
		{"lag,all", AllPhases, false},
		{"cpu", nil, true},
		{"", nil, true},
	}
	for _, tt := range tests {
		got, err := ParsePhases(tt.in)
		if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
			t.Errorf("ParsePhases(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestValidate(t *testing.T) {
	cfg := DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("DefaultConfig().Validate() = %v, want nil", err)
	}
	cfg.Rate = 0
	cfg.Pipeline = 0
	err := cfg.Validate()
	for _, field := range []string{"rate", "pipeline"} {
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("Validate() = %v, want an error naming %s", err, field)
		}
	}
}

// TestSpreadOf: the median, range and bootstrap interval of a ratio's
// repeats; the interval holds the median and lies within the range.
func TestSpreadOf(t *testing.T) {
	if got := spreadOf(nil); got != (Spread{}) {
		t.Errorf("spreadOf(nil) = %+v, want zero", got)
	}
	one := spreadOf([]float64{0.97})
	if one != (Spread{N: 1, Min: 0.97, Median: 0.97, Max: 0.97, CILow: 0.97, CIHigh: 0.97}) {
		t.Errorf("one value: got %+v", one)
	}
	xs := []float64{0.92, 1.01, 0.97, 0.99, 0.98, 1.00, 0.96}
	s := spreadOf(xs)
	if s.N != 7 || s.Min != 0.92 || s.Max != 1.01 || s.Median != 0.98 {
		t.Errorf("got %+v, want n 7, min 0.92, median 0.98, max 1.01", s)
	}
	if s.CILow < s.Min || s.CILow > s.Median || s.CIHigh < s.Median || s.CIHigh > s.Max || s.CILow == s.CIHigh {
		t.Errorf("interval %v-%v: want a non-empty interval around the median %v within [%v, %v]", s.CILow, s.CIHigh, s.Median, s.Min, s.Max)
	}
	if again := spreadOf(xs); again != s {
		t.Errorf("not deterministic: %+v then %+v", s, again)
	}
	// Tight repeats give a tight interval.
	tight := spreadOf([]float64{0.99, 0.991, 0.989, 0.99, 0.992, 0.988})
	if w := tight.CIHigh - tight.CILow; w > 0.004 {
		t.Errorf("tight repeats: interval %v-%v, want narrower than 0.004", tight.CILow, tight.CIHigh)
	}
}

// TestParseCalls: commandstats' calls= field, and a command never run.
func TestParseCalls(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"calls=1520,usec=3021,usec_per_call=1.99,rejected_calls=0,failed_calls=0", 1520, false},
		{"", 0, false},
		{"usec=3", 0, true},
		{"calls=x,usec=3", 0, true},
	} {
		got, err := parseCalls(tt.in)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("parseCalls(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}
