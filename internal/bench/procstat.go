package bench

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// clockTick is the unit of utime and stime in /proc/<pid>/stat (USER_HZ,
// 100 on every Linux this runs on).
const clockTick = 10 * time.Millisecond

// processCPU returns the user plus system CPU time of pid so far, all its
// threads included.
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(b)
}

// parseStatCPU reads utime and stime (fields 14 and 15) from the text of
// /proc/<pid>/stat. The command name (field 2) may hold spaces and
// parentheses, so fields are counted after its last ')'.
func parseStatCPU(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("proc stat: no command name in %q", b)
	}
	// After ')': field 3 (state) is the first.
	f := bytes.Fields(b[i+1:])
	const utime, stime = 14 - 3, 15 - 3
	if len(f) <= stime {
		return 0, fmt.Errorf("proc stat: %d fields after the name, want more than %d", len(f), stime)
	}
	u, err1 := strconv.ParseInt(string(f[utime]), 10, 64)
	s, err2 := strconv.ParseInt(string(f[stime]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("proc stat: utime %q, stime %q: not integers", f[utime], f[stime])
	}
	return time.Duration(u+s) * clockTick, nil
}

// peakRSS returns VmHWM, the peak resident set size of pid, in bytes.
func peakRSS(pid int) (int64, error) {
	_, peak, err := residentSet(pid)
	return peak, err
}

// residentSet returns VmRSS and VmHWM, the resident set size of pid now
// and at its peak, in bytes, from one read of its status.
func residentSet(pid int) (now, peak int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	if now, err = parseStatusKB(b, "VmRSS"); err != nil {
		return 0, 0, err
	}
	peak, err = parseStatusKB(b, "VmHWM")
	return now, peak, err
}

// parseStatusKB reads a "Key:   123 kB" line of /proc/<pid>/status and
// returns the value in bytes.
func parseStatusKB(b []byte, key string) (int64, error) {
	for line := range bytes.Lines(b) {
		rest, ok := bytes.CutPrefix(line, []byte(key+":"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, fmt.Errorf("proc status: %s line %q", key, bytes.TrimSpace(line))
		}
		n, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("proc status: %s: %w", key, err)
		}
		return n << 10, nil
	}
	return 0, fmt.Errorf("proc status: no %s", key)
}

// selfName names this process, the load generator, in CPU figures.
const selfName = "load-generator"

// cpuMeter measures the CPU time a set of processes, and this one, spend
// between begin and end.
type cpuMeter struct {
	names []string
	pids  []int
	start []time.Duration
	// host busy and total ticks at begin
	hostBusy, hostTotal int64
}

func newCPUMeter(procs ...*process) *cpuMeter {
	m := &cpuMeter{names: []string{selfName}, pids: []int{os.Getpid()}}
	for _, p := range procs {
		m.names = append(m.names, p.name)
		m.pids = append(m.pids, p.pid())
	}
	return m
}

func (m *cpuMeter) begin() error {
	var err error
	if m.hostBusy, m.hostTotal, err = hostCPU(); err != nil {
		return err
	}
	m.start = m.start[:0]
	for i, pid := range m.pids {
		t, err := processCPU(pid)
		if err != nil {
			return fmt.Errorf("cpu of %s: %w", m.names[i], err)
		}
		m.start = append(m.start, t)
	}
	return nil
}

// cpuUsage is what a cpuMeter measured.
type cpuUsage struct {
	procs map[string]time.Duration // by process name
	busy  time.Duration            // busy time of the whole machine
	total time.Duration            // all CPUs' time, busy or not
}

// busyFraction is the fraction of the machine's CPU time that was busy.
func (u cpuUsage) busyFraction() float64 {
	return ratio(float64(u.busy), float64(u.total))
}

// other is the machine's busy time that none of the measured processes
// account for: other processes, and interrupt time (loopback softirqs
// included) that the kernel charges to no process.
func (u cpuUsage) other() time.Duration {
	var ours time.Duration
	for _, d := range u.procs {
		ours += d
	}
	return max(0, u.busy-ours)
}

// end returns the CPU time each process, and the machine, spent since
// begin.
func (m *cpuMeter) end() (cpuUsage, error) {
	busy, total, err := hostCPU()
	if err != nil {
		return cpuUsage{}, err
	}
	u := cpuUsage{
		procs: make(map[string]time.Duration, len(m.pids)),
		busy:  time.Duration(busy-m.hostBusy) * clockTick,
		total: time.Duration(total-m.hostTotal) * clockTick,
	}
	for i, pid := range m.pids {
		t, err := processCPU(pid)
		if err != nil {
			return cpuUsage{}, fmt.Errorf("cpu of %s: %w", m.names[i], err)
		}
		u.procs[m.names[i]] = t - m.start[i]
	}
	return u, nil
}

// hostCPU returns the busy and total time of all CPUs from /proc/stat, in
// clock ticks. Idle and iowait count as not busy.
func hostCPU() (busy, total int64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	return parseHostCPU(b)
}

// parseHostCPU reads the aggregate "cpu" line of /proc/stat.
func parseHostCPU(b []byte) (busy, total int64, err error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) < 5 || string(f[0]) != "cpu" {
		return 0, 0, fmt.Errorf("proc stat: first line %q: want the cpu totals", line)
	}
	// user nice system idle iowait irq softirq steal (guest time is
	// already counted in user and nice).
	var idle int64
	for i, s := range f[1:min(len(f), 9)] {
		n, err := strconv.ParseInt(string(s), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("proc stat: cpu field %d %q: %w", i+1, s, err)
		}
		total += n
		if i == 3 || i == 4 {
			idle += n
		}
	}
	return total - idle, total, nil
}
