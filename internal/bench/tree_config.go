package bench

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
)

// Phases of "arbor bench tree", as --phases takes them.
const (
	// TreePhaseBytes measures inter-site bytes per MiB of master stream
	// under a steady fixed-rate load.
	TreePhaseBytes = "bytes"
	// TreePhaseLag measures the lag of S-2 in site B on both paths at a
	// fixed rate.
	TreePhaseLag = "lag"
	// TreePhaseFullSync times a full sync of a filled master over the
	// limited link, native and through a relay.
	TreePhaseFullSync = "fullsync"
)

// AllTreePhases lists every tree phase in the order RunTree runs them.
var AllTreePhases = []string{TreePhaseBytes, TreePhaseLag, TreePhaseFullSync}

// ParseTreePhases parses a comma-separated tree phase list; "all" means
// AllTreePhases.
func ParseTreePhases(s string) ([]string, error) { return parsePhaseList(s, AllTreePhases) }

// TreeConfig configures a tree benchmark run. Build one with
// DefaultTreeConfig and check it with Validate; RunTree does the latter.
type TreeConfig struct {
	// RedisServer is the redis-server binary (a path, or a name looked up
	// in PATH).
	RedisServer string
	// RelayBin is the arbor binary run as "arbor relay ..."; empty means
	// the running executable.
	RelayBin string
	// RelayArgs are extra arguments for every relay.
	RelayArgs []string
	// Phases are the phases to run, from AllTreePhases.
	Phases []string
	// Bandwidth is the rate of each direction of each inter-site link, in
	// bytes per second; 0 means unlimited.
	Bandwidth int64
	// Latency is the one-way latency each inter-site link adds.
	Latency time.Duration
	// Compression is the relays' --compression: zstd, s2, none or auto
	// (every link of the tree crosses sites, so auto is zstd; zstd is the
	// default so that --relay-bin may run relays from before auto).
	Compression string
	// ReplicaDisklessLoad is the repl-diskless-load of the replicas the
	// fullsync phase times (native and Arbor alike): disabled (they load
	// from disk once the RDB is whole), on-empty-db or swapdb (they load it
	// as it arrives).
	ReplicaDisklessLoad string
	// Mix weights the kinds of writes of every load and of the fill.
	Mix Mix
	// Keyspace is the number of keys of each kind the steady loads
	// write; it bounds the servers' memory.
	Keyspace int
	// Duration is how long each fixed-rate load lasts.
	Duration time.Duration
	// BytesRate is the write rate of the bytes phase, per second.
	BytesRate int
	// LagRate is the write rate of the lag phase, per second; the lag
	// target is checked at it.
	LagRate int
	// LagSweep are more rates the lag phase measures after LagRate, so
	// that a machine too small for LagRate still shows where lag stops
	// being queueing for CPU or bandwidth.
	LagSweep []int
	// BatchInterval is how often the fixed-rate loads send a batch.
	BatchInterval time.Duration
	// LagSamples is how many lag probes per second the lag phase aims
	// for (part of LagRate, at most one per batch).
	LagSamples int
	// DatasetSize is how many bytes of keys and values the fill writes
	// before the full syncs.
	DatasetSize int64
	// FillWindow is how many fill commands may await their reply.
	FillWindow int
	// Seed seeds the workload generator.
	Seed uint64
	// Dir is where the temporary directory goes; empty means os.TempDir().
	Dir string
	// Keep keeps the temporary directory (server logs, relay stores).
	Keep bool
	// Pin puts the relays on CPU 1 and everything else (master, replicas,
	// the load generator with its link bridges) on CPU 0, as if the relays
	// ran on hosts of their own.
	Pin bool
	// Progress receives one line per step; nil discards them.
	Progress io.Writer
}

// DefaultTreeConfig returns a TreeConfig with every default filled in.
func DefaultTreeConfig() TreeConfig {
	return TreeConfig{
		RedisServer:         "redis-server",
		Phases:              slices.Clone(AllTreePhases),
		Bandwidth:           100_000_000 / 8, // 100 Mbit/s
		Latency:             10 * time.Millisecond,
		Compression:         "zstd",
		ReplicaDisklessLoad: "disabled",
		Mix:                 DefaultMix(),
		Keyspace:            100000,
		Duration:            10 * time.Second,
		BytesRate:           20000,
		LagRate:             50000,
		LagSweep:            []int{20000, 5000},
		BatchInterval:       time.Millisecond,
		LagSamples:          1000,
		DatasetSize:         1 << 30,
		FillWindow:          10000,
		Seed:                1,
	}
}

// Validate checks every field and names each bad one.
func (c *TreeConfig) Validate() error {
	var errs []error
	if c.RedisServer == "" {
		errs = append(errs, errors.New("redis-server: required"))
	}
	if len(c.Phases) == 0 {
		errs = append(errs, errors.New("phases: at least one required"))
	}
	for _, p := range c.Phases {
		if !slices.Contains(AllTreePhases, p) {
			errs = append(errs, fmt.Errorf("phases: unknown phase %q", p))
		}
	}
	if c.Bandwidth < 0 || (c.Bandwidth > 0 && c.Bandwidth < 10_000) {
		errs = append(errs, fmt.Errorf("bandwidth %d B/s: must be 0 (unlimited) or at least 10000 B/s", c.Bandwidth))
	}
	if c.Latency < 0 || c.Latency > 10*time.Second {
		errs = append(errs, fmt.Errorf("latency %v: must be between 0 and 10s", c.Latency))
	}
	switch c.Compression {
	case "zstd", "s2", "none", "auto":
	default:
		errs = append(errs, fmt.Errorf("compression %q: want zstd, s2, none or auto", c.Compression))
	}
	switch c.ReplicaDisklessLoad {
	case "disabled", "on-empty-db", "swapdb":
	default:
		errs = append(errs, fmt.Errorf("replica diskless load %q: want disabled, on-empty-db or swapdb", c.ReplicaDisklessLoad))
	}
	if err := c.Mix.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Keyspace < 1 || c.Keyspace > maxKey {
		errs = append(errs, fmt.Errorf("keyspace %d: must be between 1 and %d", c.Keyspace, maxKey))
	}
	if c.Duration < 100*time.Millisecond || c.Duration > time.Hour {
		errs = append(errs, fmt.Errorf("duration %v: must be between 100ms and 1h", c.Duration))
	}
	if c.BytesRate < 1 || c.BytesRate > 10_000_000 {
		errs = append(errs, fmt.Errorf("bytes-rate %d: must be between 1 and 10000000", c.BytesRate))
	}
	if c.LagRate < 1 || c.LagRate > 10_000_000 {
		errs = append(errs, fmt.Errorf("lag-rate %d: must be between 1 and 10000000", c.LagRate))
	}
	for _, r := range c.LagSweep {
		if r < 1 || r > 10_000_000 {
			errs = append(errs, fmt.Errorf("lag-sweep rate %d: must be between 1 and 10000000", r))
		}
	}
	if len(c.LagSweep) > 10 {
		errs = append(errs, fmt.Errorf("lag-sweep: %d rates, at most 10", len(c.LagSweep)))
	}
	if c.BatchInterval < 100*time.Microsecond || c.BatchInterval > time.Second {
		errs = append(errs, fmt.Errorf("batch-interval %v: must be between 100µs and 1s", c.BatchInterval))
	}
	if c.LagSamples < 1 || c.LagSamples > c.LagRate {
		errs = append(errs, fmt.Errorf("lag-samples %d: must be between 1 and the lag rate (%d)", c.LagSamples, c.LagRate))
	}
	if c.DatasetSize < 1<<10 || c.DatasetSize > 1<<40 {
		errs = append(errs, fmt.Errorf("dataset-size %d: must be between 1 KiB and 1 TiB", c.DatasetSize))
	}
	if c.FillWindow < 1 || c.FillWindow > 1_000_000 {
		errs = append(errs, fmt.Errorf("fill-window %d: must be between 1 and 1000000", c.FillWindow))
	}
	return errors.Join(errs...)
}

func (c *TreeConfig) has(phase string) bool { return slices.Contains(c.Phases, phase) }
