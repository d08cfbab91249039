package main

import (
	"slices"
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
				if cfg.Duration != def.Duration || cfg.Rate != def.Rate || cfg.Pipeline != def.Pipeline || cfg.Clients != def.Clients {
					t.Errorf("got %+v, want the defaults %+v", cfg, def)
				}
				if !slices.Equal(cfg.Phases, bench.AllPhases) {
					t.Errorf("phases %q, want %q", cfg.Phases, bench.AllPhases)
				}
				if asJSON || cfg.Progress == nil {
					t.Errorf("json %v, progress %v: want text with progress", asJSON, cfg.Progress)
				}
			},
		},
		{
			name: "every flag",
			args: []string{"--duration=3s", "--rounds=5", "--rate=1000", "--lag-samples=100", "--value-size=64",
				"--pipeline=8", "--clients=2", "--keyspace=500", "--phases=lag", "--json", "--keep", "--quiet",
				"--relay-bin=/x/arbor", "--relay-arg=--fsync=no", "--relay-arg=--backlog-size=64MiB"},
			check: func(t *testing.T, cfg bench.Config, asJSON bool) {
				if cfg.Duration != 3*time.Second || cfg.Rounds != 5 || cfg.Rate != 1000 || cfg.LagSamples != 100 ||
					cfg.ValueSize != 64 || cfg.Pipeline != 8 || cfg.Clients != 2 || cfg.Keyspace != 500 {
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
		{name: "bad phase", args: []string{"--phases=cpu"}, wantErr: true},
		{name: "bad rate", args: []string{"--rate=0"}, wantErr: true},
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
