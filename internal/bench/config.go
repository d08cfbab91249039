package bench

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Phase names, as --phases takes them.
const (
	// PhaseThroughput measures master write throughput at saturation with
	// a native replica versus a relay attached.
	PhaseThroughput = "throughput"
	// PhaseLag measures replica lag at a fixed write rate, and CPU per GiB
	// of stream, with a native replica and a relay attached at once.
	PhaseLag = "lag"
)

// AllPhases lists every phase in the order Run runs them.
var AllPhases = []string{PhaseThroughput, PhaseLag}

// Config configures a benchmark run. Build one with DefaultConfig and check
// it with Validate; Run does the latter.
type Config struct {
	// RedisServer is the redis-server binary (a path, or a name looked up
	// in PATH).
	RedisServer string
	// RelayBin is the arbor binary run as "arbor relay ..."; empty means
	// the running executable.
	RelayBin string
	// HelperBin is the arbor binary run as "arbor bench null-hop" for the
	// lag phase's null chain; empty means the running executable (which
	// must then be arbor: tests set it).
	HelperBin string
	// RelayArgs are extra arguments for the relay, e.g. "--fsync=no".
	RelayArgs []string
	// Phases are the phases to run, from AllPhases.
	Phases []string
	// Duration is how long each load runs: each throughput round, and the
	// fixed-rate load of the lag phase.
	Duration time.Duration
	// Rounds is how many throughput rounds each configuration (native,
	// relay) gets, at each client count: they run in pairs (one of each,
	// the first of a pair alternating), and each pair gives one ratio.
	Rounds int
	// Ops, when not 0, makes each throughput round write this many SETs
	// (in whole pipelines, spread over the clients) instead of loading
	// for Duration, so that every round does the same work; a round is
	// then bounded in time by countRoundLimit.
	Ops int
	// Concurrent runs each pair's native and relay rounds at once, each
	// master loaded by its own Clients connections, instead of one after
	// the other: both masters then share the machine's every moment (the
	// same CPU with Pin), so what the machine does meanwhile weighs on both
	// alike and each pair compares like with like.
	Concurrent bool
	// Control replaces the relay and its replica in the throughput phase
	// by a second native replica (an A/A run): what the pairs' ratios then
	// show is the method's own bias, the floor under what it can tell.
	Control bool
	// Rate is the write rate of the lag phase, in SETs per second.
	Rate int
	// RelayHops is how many relays the lag phase's relay path runs
	// through: the first follows the master, each next one the previous
	// over gRPC (relay to relay, --compression as the relays default), and
	// the relay's replica follows the last. 1 is the relay core alone.
	RelayHops int
	// NullChain pairs each lag round with a null round: the same load
	// through a chain of RelayHops null hops (nullhop.go) to a replica,
	// beside a native one, in fresh processes; it gives the floor this
	// machine sets per hop, which the relay hop is judged over (see
	// runner.lagRounds).
	NullChain bool
	// LagRounds is how many times the lag phase runs (each a fresh set of
	// processes); the report shows every round and takes the median one.
	LagRounds int
	// BatchInterval is how often the lag phase sends a batch of writes.
	BatchInterval time.Duration
	// LagSamples is how many lag probes per second the lag phase aims
	// for: each is a SET of a lag:<seq> key (counted in Rate) at the
	// start of a batch, every round(1s/LagSamples/BatchInterval)-th batch,
	// so at most one per batch.
	LagSamples int
	// ValueSize is the size in bytes of every SET value.
	ValueSize int
	// Pipeline is how many SETs each throughput client sends before it
	// reads their replies.
	Pipeline int
	// Clients are the numbers of throughput client connections: the
	// throughput phase runs its rounds at each, on the same servers.
	Clients []int
	// Keyspace is the number of distinct keys written (key:0 ... key:N-1);
	// it bounds the servers' memory.
	Keyspace int
	// Dir is where the temporary directory goes; empty means os.TempDir().
	Dir string
	// Keep keeps the temporary directory (server logs, relay store).
	Keep bool
	// Pin runs the masters and the load generator on CPU 0 and every
	// replication consumer on CPU 1, as if they were separate hosts.
	Pin bool
	// Progress receives one line per step; nil discards them.
	Progress io.Writer
}

// DefaultConfig returns a Config with every default filled in.
func DefaultConfig() Config {
	return Config{
		RedisServer:   "redis-server",
		Phases:        slices.Clone(AllPhases),
		Duration:      10 * time.Second,
		Rounds:        5,
		Concurrent:    true,
		Rate:          50000,
		BatchInterval: time.Millisecond,
		LagSamples:    1000,
		RelayHops:     1,
		LagRounds:     1,
		ValueSize:     100,
		Pipeline:      64,
		Clients:       []int{4},
		Keyspace:      100000,
	}
}

// ParsePhases parses a comma-separated phase list; "all" means AllPhases.
func ParsePhases(s string) ([]string, error) { return parsePhaseList(s, AllPhases) }

// parsePhaseList parses a comma-separated list of phases from all; "all"
// means every one. The result is in all's order whatever order was given.
func parsePhaseList(s string, all []string) ([]string, error) {
	var out []string
	for _, p := range strings.Split(s, ",") {
		p = strings.ToLower(strings.TrimSpace(p))
		switch {
		case p == "all":
			for _, a := range all {
				if !slices.Contains(out, a) {
					out = append(out, a)
				}
			}
		case slices.Contains(all, p):
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		default:
			return nil, fmt.Errorf("phase %q: want all or a list of %s", p, strings.Join(all, ", "))
		}
	}
	// Run them in the canonical order whatever order was given.
	slices.SortFunc(out, func(a, b string) int {
		return slices.Index(all, a) - slices.Index(all, b)
	})
	return out, nil
}

// Validate checks every field and names each bad one.
func (c *Config) Validate() error {
	var errs []error
	if c.RedisServer == "" {
		errs = append(errs, errors.New("redis-server: required"))
	}
	if len(c.Phases) == 0 {
		errs = append(errs, errors.New("phases: at least one required"))
	}
	for _, p := range c.Phases {
		if !slices.Contains(AllPhases, p) {
			errs = append(errs, fmt.Errorf("phases: unknown phase %q", p))
		}
	}
	if c.Duration < 100*time.Millisecond || c.Duration > time.Hour {
		errs = append(errs, fmt.Errorf("duration %v: must be between 100ms and 1h", c.Duration))
	}
	if c.Rounds < 1 || c.Rounds > 100 {
		errs = append(errs, fmt.Errorf("rounds %d: must be between 1 and 100", c.Rounds))
	}
	if c.Ops != 0 && (c.Ops < 1000 || c.Ops > maxRoundOps) {
		errs = append(errs, fmt.Errorf("ops %d: must be 0 (rounds of --duration) or between 1000 and %d", c.Ops, maxRoundOps))
	}
	if c.Rate < 1 || c.Rate > 10_000_000 {
		errs = append(errs, fmt.Errorf("rate %d: must be between 1 and 10000000", c.Rate))
	}
	if c.BatchInterval < 100*time.Microsecond || c.BatchInterval > time.Second {
		errs = append(errs, fmt.Errorf("batch-interval %v: must be between 100µs and 1s", c.BatchInterval))
	}
	if c.LagRounds < 1 || c.LagRounds > 25 {
		errs = append(errs, fmt.Errorf("lag-rounds %d: must be between 1 and 25", c.LagRounds))
	}
	if c.RelayHops < 1 || c.RelayHops > 8 {
		errs = append(errs, fmt.Errorf("relay-hops %d: must be between 1 and 8", c.RelayHops))
	}
	if c.LagSamples < 1 || c.LagSamples > c.Rate {
		errs = append(errs, fmt.Errorf("lag-samples %d: must be between 1 and the rate (%d)", c.LagSamples, c.Rate))
	}
	if c.ValueSize < 1 || c.ValueSize > 1<<20 {
		errs = append(errs, fmt.Errorf("value-size %d: must be between 1 and 1048576", c.ValueSize))
	}
	if c.Pipeline < 1 || c.Pipeline > 10000 {
		errs = append(errs, fmt.Errorf("pipeline %d: must be between 1 and 10000", c.Pipeline))
	}
	if len(c.Clients) == 0 {
		errs = append(errs, errors.New("clients: at least one count required"))
	}
	for _, n := range c.Clients {
		if n < 1 || n > 256 {
			errs = append(errs, fmt.Errorf("clients %d: must be between 1 and 256", n))
		}
	}
	if c.Keyspace < 1 || c.Keyspace > maxKey {
		errs = append(errs, fmt.Errorf("keyspace %d: must be between 1 and %d", c.Keyspace, maxKey))
	}
	return errors.Join(errs...)
}
