package relay_test

import (
	"strings"
	"testing"
	"time"

	"github.com/arbor-fabric/arbor/relay"
)

// TestConfigValidateClientLimits: the Redis port's client limits are
// checked and a bad one is named.
func TestConfigValidateClientLimits(t *testing.T) {
	tests := []struct {
		name string
		edit func(*relay.Config)
		want string // "" for a valid config
	}{
		{"defaults", func(*relay.Config) {}, ""},
		{"zero handshake timeout", func(c *relay.Config) { c.HandshakeTimeout = 0 }, "handshake-timeout"},
		{"tiny handshake timeout", func(c *relay.Config) { c.HandshakeTimeout = time.Millisecond }, "handshake-timeout"},
		{"zero max clients", func(c *relay.Config) { c.MaxClients = 0 }, "max-clients"},
		{"one client", func(c *relay.Config) { c.MaxClients = 1 }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := relay.DefaultConfig()
			cfg.ID, cfg.DataDir, cfg.Upstream = "r", t.TempDir(), "redis://127.0.0.1:6379"
			tt.edit(&cfg)
			err := cfg.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("got %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("got %v, want an error naming %s", err, tt.want)
			}
		})
	}
}

// TestConfigValidateCompressionLevel: the zstd levels are accepted in any
// case, anything else is named.
func TestConfigValidateCompressionLevel(t *testing.T) {
	for _, tt := range []struct {
		level string
		ok    bool
	}{{"fastest", true}, {"default", true}, {"Better", true}, {"best", true}, {"", false}, {"9", false}, {"fast", false}} {
		cfg := relay.DefaultConfig()
		cfg.ID, cfg.DataDir, cfg.Upstream = "r", t.TempDir(), "redis://127.0.0.1:6379"
		cfg.CompressionLevel = tt.level
		err := cfg.Validate()
		if tt.ok && err != nil {
			t.Errorf("level %q: got %v, want nil", tt.level, err)
		}
		if !tt.ok && (err == nil || !strings.Contains(err.Error(), "compression-level")) {
			t.Errorf("level %q: got %v, want an error naming compression-level", tt.level, err)
		}
	}
}

// TestConfigValidateCompression: auto (the default) and the codecs are
// accepted in any case, anything else is named.
func TestConfigValidateCompression(t *testing.T) {
	if got := relay.DefaultConfig().Compression; got != relay.CompressionAuto {
		t.Errorf("default compression %q, want %q", got, relay.CompressionAuto)
	}
	for _, tt := range []struct {
		compression string
		ok          bool
	}{{"auto", true}, {"Auto", true}, {"zstd", true}, {"S2", true}, {"none", true}, {"lz4", false}, {"autos2", false}} {
		cfg := relay.DefaultConfig()
		cfg.ID, cfg.DataDir, cfg.Upstream = "r", t.TempDir(), "redis://127.0.0.1:6379"
		cfg.Compression = tt.compression
		err := cfg.Validate()
		if tt.ok && err != nil {
			t.Errorf("compression %q: got %v, want nil", tt.compression, err)
		}
		if !tt.ok && (err == nil || !strings.Contains(err.Error(), "compression")) {
			t.Errorf("compression %q: got %v, want an error naming compression", tt.compression, err)
		}
	}
}

// TestConfigValidateUpstreamCoalesce: the wait is from 0 (off) to 100ms;
// anything else is named.
func TestConfigValidateUpstreamCoalesce(t *testing.T) {
	for _, tt := range []struct {
		wait time.Duration
		ok   bool
	}{{0, true}, {time.Millisecond, true}, {100 * time.Millisecond, true}, {-time.Millisecond, false}, {101 * time.Millisecond, false}} {
		cfg := relay.DefaultConfig()
		cfg.ID, cfg.DataDir, cfg.Upstream = "r", t.TempDir(), "redis://127.0.0.1:6379"
		cfg.UpstreamCoalesce = tt.wait
		err := cfg.Validate()
		if tt.ok && err != nil {
			t.Errorf("wait %v: got %v, want nil", tt.wait, err)
		}
		if !tt.ok && (err == nil || !strings.Contains(err.Error(), "upstream-coalesce")) {
			t.Errorf("wait %v: got %v, want an error naming upstream-coalesce", tt.wait, err)
		}
	}
}
