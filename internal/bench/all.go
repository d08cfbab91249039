package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The benchmarks RunAll runs, in order.
const (
	BenchRelay    = "relay"
	BenchTree     = "tree"
	BenchFailover = "failover"
	// BenchSwitchover is the failover benchmark with a planned switchover
	// in each run instead of a kill (FailoverConfig.Switchover).
	BenchSwitchover = "switchover"
	// BenchRelayFailover kills a root relay under writes
	// (RunRelayFailover).
	BenchRelayFailover = "relay-failover"
)

// AllBenches are the benchmarks RunAll runs.
var AllBenches = []string{BenchRelay, BenchTree, BenchFailover, BenchSwitchover, BenchRelayFailover}

// AllConfig configures RunAll: one config per benchmark, run as given.
type AllConfig struct {
	Relay    Config
	Tree     TreeConfig
	Failover FailoverConfig
	// Switchover runs with Switchover set whatever it says.
	Switchover    FailoverConfig
	RelayFailover RelayFailoverConfig
	// Benches are the benchmarks to run (AllBenches' names).
	Benches []string
	// Commands are the equivalent command lines, by benchmark, for the
	// report (so a reader can rerun one).
	Commands map[string]string
	// Progress receives progress lines; nil discards them.
	Progress io.Writer
}

// AllReport is what RunAll measured. A benchmark that failed has its
// error and whatever part of its report it produced.
type AllReport struct {
	Machine  Machine           `json:"machine"`
	Commands map[string]string `json:"commands"`
	// Ran says when each benchmark ran and the load then, in order.
	Ran []BenchRun `json:"ran"`

	Relay       *Report         `json:"relay,omitempty"`
	RelayErr    string          `json:"relay_error,omitempty"`
	Tree        *TreeReport     `json:"tree,omitempty"`
	TreeErr     string          `json:"tree_error,omitempty"`
	Failover    *FailoverReport `json:"failover,omitempty"`
	FailoverErr string          `json:"failover_error,omitempty"`
	// Switchover is the failover benchmark with planned switchovers.
	Switchover    *FailoverReport `json:"switchover,omitempty"`
	SwitchoverErr string          `json:"switchover_error,omitempty"`
	// RelayFailover is the relay failover benchmark.
	RelayFailover    *RelayFailoverReport `json:"relay_failover,omitempty"`
	RelayFailoverErr string               `json:"relay_failover_error,omitempty"`
}

// BenchRun is when one benchmark of RunAll ran and the machine's load
// average (1, 5, 15 min) as it started and ended.
type BenchRun struct {
	Name      string     `json:"name"`
	Started   time.Time  `json:"started"`
	Ended     time.Time  `json:"ended"`
	LoadStart [3]float64 `json:"load_start"`
	LoadEnd   [3]float64 `json:"load_end"`
	// Commit is set on a benchmark measured again on its own, apart from
	// the run (its results put in results.json in place of the run's, and
	// the report redrawn with `arbor bench all --from`): the commit it
	// was measured at. Empty: the run's (Machine.Commit).
	Commit string `json:"commit,omitempty"`
}

// Machine is where the benchmarks ran.
type Machine struct {
	CPUModel   string `json:"cpu_model"`
	CPUs       int    `json:"cpus"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	Kernel     string `json:"kernel"`
	// LoadStart and LoadEnd are the 1, 5 and 15 minute load averages
	// when the run started and ended (the machine may be shared).
	LoadStart    [3]float64 `json:"load_start"`
	LoadEnd      [3]float64 `json:"load_end"`
	RedisVersion string     `json:"redis_version"`
	GoVersion    string     `json:"go_version"`
	// Commit is the arbor commit the binary was built from (with
	// "-dirty" for uncommitted changes), if known.
	Commit  string    `json:"commit"`
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended"`
}

// RunAll runs the benchmarks of cfg.Benches one after the other. A
// benchmark's failure is recorded in the report and the next one runs;
// RunAll returns an error only for a bad config or ctx ending.
func RunAll(ctx context.Context, cfg AllConfig) (*AllReport, error) {
	for _, b := range cfg.Benches {
		if !slices.Contains(AllBenches, b) {
			return nil, fmt.Errorf("bench config: unknown benchmark %q (want %v)", b, AllBenches)
		}
	}
	progress := func(format string, args ...any) {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, "bench all: "+format+"\n", args...)
		}
	}
	rep := &AllReport{Machine: readMachine(), Commands: cfg.Commands}
	rep.Machine.Started = time.Now().UTC()
	errText := func(err error) string {
		if err == nil {
			return ""
		}
		return err.Error()
	}
	for _, b := range cfg.Benches {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		progress("running %s: %s", b, cfg.Commands[b])
		ran := BenchRun{Name: b, Started: time.Now().UTC(), LoadStart: loadAverage()}
		var err error
		switch b {
		case BenchRelay:
			rep.Relay, err = Run(ctx, cfg.Relay)
			if err == nil {
				err = rep.Relay.Err()
			}
			rep.RelayErr = errText(err)
			if rep.Relay != nil {
				rep.Machine.RedisVersion = cmp.Or(rep.Machine.RedisVersion, rep.Relay.Host.RedisVersion)
			}
		case BenchTree:
			rep.Tree, err = RunTree(ctx, cfg.Tree)
			if err == nil {
				err = rep.Tree.Err()
			}
			rep.TreeErr = errText(err)
			if rep.Tree != nil {
				rep.Machine.RedisVersion = cmp.Or(rep.Machine.RedisVersion, rep.Tree.Host.RedisVersion)
			}
		case BenchFailover:
			rep.Failover, err = RunFailover(ctx, cfg.Failover)
			rep.FailoverErr = errText(err)
			if rep.Failover != nil {
				rep.Machine.RedisVersion = cmp.Or(rep.Machine.RedisVersion, rep.Failover.Host.RedisVersion)
			}
		case BenchSwitchover:
			sc := cfg.Switchover
			sc.Switchover, sc.KillHost = true, false
			rep.Switchover, err = RunFailover(ctx, sc)
			rep.SwitchoverErr = errText(err)
			if rep.Switchover != nil {
				rep.Machine.RedisVersion = cmp.Or(rep.Machine.RedisVersion, rep.Switchover.Host.RedisVersion)
			}
		case BenchRelayFailover:
			rep.RelayFailover, err = RunRelayFailover(ctx, cfg.RelayFailover)
			rep.RelayFailoverErr = errText(err)
		}
		ran.Ended, ran.LoadEnd = time.Now().UTC(), loadAverage()
		rep.Ran = append(rep.Ran, ran)
		if err != nil {
			progress("%s: %v", b, err)
			if errors.Is(err, context.Canceled) && ctx.Err() != nil {
				return rep, ctx.Err()
			}
		}
	}
	rep.Machine.Ended = time.Now().UTC()
	rep.Machine.LoadEnd = loadAverage()
	return rep, nil
}

// Failed lists the benchmarks that failed, with their errors.
func (r *AllReport) Failed() []string {
	var out []string
	for _, f := range []struct{ name, err string }{{BenchRelay, r.RelayErr}, {BenchTree, r.TreeErr}, {BenchFailover, r.FailoverErr}, {BenchSwitchover, r.SwitchoverErr}, {BenchRelayFailover, r.RelayFailoverErr}} {
		if f.err != "" {
			out = append(out, f.name+": "+f.err)
		}
	}
	return out
}

// readMachine describes this machine now (the Redis version comes from
// the benchmarks' servers).
func readMachine() Machine {
	m := Machine{
		CPUs:       runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		GoVersion:  runtime.Version(),
		LoadStart:  loadAverage(),
		Commit:     commit(),
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		m.CPUModel = cpuModel(string(b))
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = runtime.GOOS + " " + strings.TrimSpace(string(b))
	} else {
		m.Kernel = runtime.GOOS
	}
	return m
}

// cpuModel returns the first "model name" of /proc/cpuinfo's text.
func cpuModel(cpuinfo string) string {
	for _, line := range strings.Split(cpuinfo, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// loadAverage reads the 1, 5 and 15 minute load averages (zeros if
// unknown).
func loadAverage() [3]float64 {
	var out [3]float64
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return out
	}
	return parseLoadAvg(string(b))
}

func parseLoadAvg(s string) [3]float64 {
	var out [3]float64
	f := strings.Fields(s)
	for i := 0; i < 3 && i < len(f); i++ {
		out[i], _ = strconv.ParseFloat(f[i], 64)
	}
	return out
}

// commit returns the VCS revision stamped in the binary, or else what git
// says of the working directory.
func commit() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		var rev, dirty string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "-dirty"
				}
			}
		}
		if rev != "" {
			return rev + dirty
		}
	}
	out, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		return ""
	}
	rev := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(strings.TrimSpace(string(st))) > 0 {
		rev += "-dirty"
	}
	return rev
}
