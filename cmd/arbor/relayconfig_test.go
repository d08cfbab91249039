package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestRelayConfigSnapshotSources: --snapshot-source takes repeated flags,
// a comma-separated list, or a YAML list in --config; the source password
// comes from its own flag or environment variable, never from the
// upstream's.
func TestRelayConfigSnapshotSources(t *testing.T) {
	cfgFile := filepath.Join(t.TempDir(), "relay.yaml")
	if err := os.WriteFile(cfgFile, []byte("snapshot-source: [\"10.0.0.1:6379\", \"10.0.0.2:6379\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(snapshotSourcePasswordEnv, "from-env")
	for _, c := range []struct {
		args []string
		want []string
		pass string
	}{
		{[]string{"--snapshot-source", "10.0.0.1:6379", "--snapshot-source", "10.0.0.2:6379"}, []string{"10.0.0.1:6379", "10.0.0.2:6379"}, "from-env"},
		{[]string{"--snapshot-source", "10.0.0.1:6379,10.0.0.2:6379", "--snapshot-source-password", "flag"}, []string{"10.0.0.1:6379", "10.0.0.2:6379"}, "flag"},
		{[]string{"--config", cfgFile}, []string{"10.0.0.1:6379", "10.0.0.2:6379"}, "from-env"},
	} {
		cmd := newRelayCmd()
		fs := cmd.Flags()
		if err := fs.Parse(append([]string{"--upstream", "redis://:master-secret@127.0.0.1:1"}, c.args...)); err != nil {
			t.Fatal(err)
		}
		if err := applyConfigFile(fs); err != nil {
			t.Fatal(err)
		}
		cfg, _, err := relayConfig(fs)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(cfg.SnapshotSources, c.want) || cfg.SnapshotSourcePassword != c.pass {
			t.Errorf("%v: sources %v password %q, want %v %q", c.args, cfg.SnapshotSources, cfg.SnapshotSourcePassword, c.want, c.pass)
		}
	}
}
