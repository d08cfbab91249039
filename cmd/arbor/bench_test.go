package main

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/arbor-fabric/arbor/internal/bench"
)

func TestBenchConfigFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		check   func(t *testing.T, cfg bench.Config, asJSON bool)
		wantErr bool
	}{
		{
			name: "defaults",
			check: func(t *testing.T, cfg bench.Config, asJSON bool) {
				def := bench.DefaultConfig()
				if cfg.Duration != def.Duration || cfg.Rate != def.Rate || !cfg.Concurrent || cfg.Pipeline != def.Pipeline || !slices.Equal(cfg.Clients, def.Clients) {
					t.Errorf("got %+v, want the defaults %+v", cfg, def)
				}
				if !slices.Equal(cfg.Phases, bench.AllPhases) {
					t.Errorf("phases %q, want %q", cfg.Phases, bench.AllPhases)
				}
				if asJSON || cfg.Progress == nil {
					t.Errorf("json %v, progress %v: want text with progress", asJSON, cfg.Progress)
				}
				if cfg.NullChain {
					t.Error("null chain on for one relay by default, want off")
				}
			},
		},
		{
			name: "every flag",
			args: []string{"--duration=3s", "--rounds=5", "-n", "200000", "--concurrent=false", "--control", "--rate=1000", "--lag-samples=100", "--value-size=64",
				"--pipeline=8", "--clients=2,50", "--keyspace=500", "--phases=lag", "--json", "--keep", "--quiet",
				"--relay-bin=/x/arbor", "--relay-arg=--fsync=no", "--relay-arg=--backlog-size=64MiB"},
			check: func(t *testing.T, cfg bench.Config, asJSON bool) {
				if cfg.Duration != 3*time.Second || cfg.Rounds != 5 || cfg.Ops != 200000 || cfg.Concurrent || !cfg.Control || cfg.Rate != 1000 || cfg.LagSamples != 100 ||
					cfg.ValueSize != 64 || cfg.Pipeline != 8 || !slices.Equal(cfg.Clients, []int{2, 50}) || cfg.Keyspace != 500 {
					t.Errorf("numbers not taken from flags: %+v", cfg)
				}
				if !slices.Equal(cfg.Phases, []string{bench.PhaseLag}) || !asJSON || !cfg.Keep || cfg.Progress != nil {
					t.Errorf("phases %q json %v keep %v progress %v", cfg.Phases, asJSON, cfg.Keep, cfg.Progress)
				}
				if want := []string{"--fsync=no", "--backlog-size=64MiB"}; cfg.RelayBin != "/x/arbor" || !slices.Equal(cfg.RelayArgs, want) {
					t.Errorf("relay bin %q args %q, want /x/arbor and %q", cfg.RelayBin, cfg.RelayArgs, want)
				}
			},
		},
		{
			name: "a relay chain gets a null chain",
			args: []string{"--relay-hops=3"},
			check: func(t *testing.T, cfg bench.Config, _ bool) {
				if cfg.RelayHops != 3 || !cfg.NullChain {
					t.Errorf("relay hops %d, null chain %v: want 3 and on", cfg.RelayHops, cfg.NullChain)
				}
			},
		},
		{
			name: "null chain off for a chain",
			args: []string{"--relay-hops=3", "--null-chain=false"},
			check: func(t *testing.T, cfg bench.Config, _ bool) {
				if cfg.NullChain {
					t.Error("null chain on, want off (--null-chain=false)")
				}
			},
		},
		{
			name: "null chain for one relay",
			args: []string{"--null-chain"},
			check: func(t *testing.T, cfg bench.Config, _ bool) {
				if cfg.RelayHops != 1 || !cfg.NullChain {
					t.Errorf("relay hops %d, null chain %v: want 1 and on", cfg.RelayHops, cfg.NullChain)
				}
			},
		},
		{name: "bad phase", args: []string{"--phases=cpu"}, wantErr: true},
		{name: "bad rate", args: []string{"--rate=0"}, wantErr: true},
		{name: "too few ops", args: []string{"--ops=10"}, wantErr: true},
		{name: "bad client count", args: []string{"--clients=4,0"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := newBenchRelayCmd()
			if err := cmd.ParseFlags(tt.args); err != nil {
				t.Fatal(err)
			}
			cfg, asJSON, err := benchConfig(cmd)
			if (err != nil) != tt.wantErr {
				t.Fatalf("benchConfig error %v, want error %v", err, tt.wantErr)
			}
			if tt.check != nil {
				tt.check(t, cfg, asJSON)
			}
		})
	}
}

func TestBenchTreeConfigFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		check   func(t *testing.T, cfg bench.TreeConfig, asJSON bool)
		wantErr bool
	}{
		{
			name: "defaults",
			check: func(t *testing.T, cfg bench.TreeConfig, asJSON bool) {
				def := bench.DefaultTreeConfig()
				if cfg.Bandwidth != 12_500_000 || cfg.Latency != def.Latency || cfg.DatasetSize != 1<<30 ||
					cfg.BytesRate != def.BytesRate || cfg.LagRate != def.LagRate || !slices.Equal(cfg.LagSweep, def.LagSweep) || cfg.Compression != "zstd" ||
					cfg.Mix.String() != def.Mix.String() {
					t.Errorf("got %+v, want the defaults %+v", cfg, def)
				}
				if !slices.Equal(cfg.Phases, bench.AllTreePhases) || asJSON || cfg.Progress == nil {
					t.Errorf("phases %q json %v progress %v", cfg.Phases, asJSON, cfg.Progress)
				}
			},
		},
		{
			name: "every flag",
			args: []string{"--phases=lag,bytes", "--bandwidth=1Gbit", "--latency=30ms", "--compression=S2",
				"--mix=profile=1,log=1", "--keyspace=500", "--duration=3s", "--bytes-rate=1000", "--lag-rate=2000",
				"--batch-interval=2ms", "--lag-samples=50", "--lag-sweep=500, 100", "--dataset-size=256MiB", "--fill-window=100", "--seed=9",
				"--json", "--keep", "--quiet", "--relay-bin=/x/arbor", "--relay-arg=--fsync=no"},
			check: func(t *testing.T, cfg bench.TreeConfig, asJSON bool) {
				if cfg.Bandwidth != 125_000_000 || cfg.Latency != 30*time.Millisecond || cfg.Compression != "s2" ||
					cfg.Mix.String() != "profile=1,log=1" || cfg.Keyspace != 500 || cfg.Duration != 3*time.Second ||
					cfg.BytesRate != 1000 || cfg.LagRate != 2000 || cfg.BatchInterval != 2*time.Millisecond ||
					cfg.LagSamples != 50 || !slices.Equal(cfg.LagSweep, []int{500, 100}) || cfg.DatasetSize != 256<<20 || cfg.FillWindow != 100 || cfg.Seed != 9 {
					t.Errorf("not taken from flags: %+v", cfg)
				}
				if !slices.Equal(cfg.Phases, []string{bench.TreePhaseBytes, bench.TreePhaseLag}) || !asJSON || !cfg.Keep || cfg.Progress != nil {
					t.Errorf("phases %q json %v keep %v progress %v", cfg.Phases, asJSON, cfg.Keep, cfg.Progress)
				}
				if cfg.RelayBin != "/x/arbor" || !slices.Equal(cfg.RelayArgs, []string{"--fsync=no"}) {
					t.Errorf("relay bin %q args %q", cfg.RelayBin, cfg.RelayArgs)
				}
			},
		},
		{name: "bad phase", args: []string{"--phases=throughput"}, wantErr: true},
		{name: "bad bandwidth", args: []string{"--bandwidth=fast"}, wantErr: true},
		{name: "bad mix", args: []string{"--mix=blobs=1"}, wantErr: true},
		{name: "bad sweep", args: []string{"--lag-sweep=1000,fast"}, wantErr: true},
		{name: "no sweep", args: []string{"--lag-sweep="}, check: func(t *testing.T, cfg bench.TreeConfig, _ bool) {
			if len(cfg.LagSweep) != 0 {
				t.Errorf("sweep %v, want none", cfg.LagSweep)
			}
		}},
		{name: "bad dataset size", args: []string{"--dataset-size=huge"}, wantErr: true},
		{name: "bad compression", args: []string{"--compression=lz4"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := newBenchTreeCmd()
			if err := cmd.ParseFlags(tt.args); err != nil {
				t.Fatal(err)
			}
			cfg, asJSON, err := benchTreeConfig(cmd)
			if (err != nil) != tt.wantErr {
				t.Fatalf("benchTreeConfig error %v, want error %v", err, tt.wantErr)
			}
			if tt.check != nil {
				tt.check(t, cfg, asJSON)
			}
		})
	}
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]int64{
		"100Mbit": 12_500_000, "100mbps": 12_500_000, "1Gbit": 125_000_000, "2.5Gbit/s": 312_500_000,
		"500kbit": 62_500, "800bit": 100, "12500000": 12_500_000, "12MB": 12 << 20, "0": 0,
	} {
		got, err := parseRate(in)
		if err != nil || got != want {
			t.Errorf("parseRate(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "fast", "-1Mbit", "1.5", "Mbit"} {
		if _, err := parseRate(bad); err == nil {
			t.Errorf("parseRate(%q): no error", bad)
		}
	}
}

// TestBenchAllConfig: `bench all` runs every benchmark at its documented
// sizes with --pin where offered, --quick shrinks them, and the command
// lines it reports carry the sizes it runs.
func TestBenchAllConfig(t *testing.T) {
	parse := func(args ...string) (bench.AllConfig, string, error) {
		cmd := newBenchAllCmd()
		if err := cmd.ParseFlags(args); err != nil {
			t.Fatal(err)
		}
		return benchAllConfig(cmd)
	}
	cfg, out, err := parse()
	if err != nil {
		t.Fatal(err)
	}
	if out != "docs" || !slices.Equal(cfg.Benches, bench.AllBenches) {
		t.Errorf("out %q benches %q", out, cfg.Benches)
	}
	if cfg.Relay.Duration != 10*time.Second || cfg.Relay.Rounds != 3 || !cfg.Relay.Pin || !cfg.Tree.Pin ||
		cfg.Tree.DatasetSize != 256<<20 || cfg.Failover.Runs != 20 {
		t.Errorf("standard sizes: relay %+v tree %+v failover runs %d", cfg.Relay, cfg.Tree, cfg.Failover.Runs)
	}
	if rf := cfg.RelayFailover; rf.Runs != 20 || rf.Progress == nil || rf.MoveAfter != bench.DefaultRelayFailoverConfig().MoveAfter {
		t.Errorf("relay-failover config %+v: want 20 runs at the defaults, with progress", rf)
	}
	if !cfg.Switchover.Switchover || cfg.Failover.Switchover || cfg.Switchover.Runs != 20 {
		t.Errorf("switchover config %+v, failover's switchover %v", cfg.Switchover, cfg.Failover.Switchover)
	}
	for b, want := range map[string]string{
		bench.BenchRelay:         "arbor bench relay --duration 10s --rounds 3 --rate 50000 --lag-samples 1000 --pin",
		bench.BenchTree:          "arbor bench tree --duration 10s --dataset-size 256MiB",
		bench.BenchFailover:      "arbor bench failover --runs 20 --systems sentinel,arbor,arbor-fast",
		bench.BenchSwitchover:    "arbor bench failover --switchover --runs 20 --systems sentinel,arbor,arbor-fast",
		bench.BenchRelayFailover: "arbor bench relay-failover --runs 20",
	} {
		if !strings.HasPrefix(cfg.Commands[b], want) {
			t.Errorf("%s command %q, want it to start %q", b, cfg.Commands[b], want)
		}
	}

	cfg, out, err = parse("--quick", "--pin=false", "--out", "/tmp/x", "--benches", "tree,failover")
	if err != nil {
		t.Fatal(err)
	}
	if out != "/tmp/x" || !slices.Equal(cfg.Benches, []string{"tree", "failover"}) || cfg.Tree.Pin ||
		cfg.Tree.DatasetSize != 2<<20 || cfg.Tree.Duration != time.Second || cfg.Failover.Runs != 1 || cfg.Relay.Rounds != 1 {
		t.Errorf("--quick: out %q benches %q tree %+v failover runs %d", out, cfg.Benches, cfg.Tree, cfg.Failover.Runs)
	}
	if !strings.Contains(cfg.Commands[bench.BenchTree], "--dataset-size 2MiB") || strings.Contains(cfg.Commands[bench.BenchTree], "--pin") {
		t.Errorf("--quick tree command %q", cfg.Commands[bench.BenchTree])
	}
	if _, _, err := parse("--dataset-size", "lots"); err == nil {
		t.Error("a bad --dataset-size accepted")
	}
	if _, _, err := parse("--runs", "0"); err == nil {
		t.Error("--runs 0 accepted")
	}
}
