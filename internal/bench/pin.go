package bench

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Pinning models separate hosts on one machine: the masters and the load
// generator share CPU 0, and every replication consumer (native replica,
// relay, relay's replica) gets CPU 1, so a consumer's CPU use cannot slow
// the master down by taking its core; what remains is the relay's effect
// on the master itself.
const (
	masterCPU   = 0
	consumerCPU = 1
)

// isMaster tells which processes of a phase are masters.
func isMaster(name string) bool { return name == "master" || strings.HasSuffix(name, "-master") }

// pinProcess sets the CPU affinity of every thread of process pid.
func pinProcess(pid, cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return fmt.Errorf("pin %d: %w", pid, err)
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil {
			return fmt.Errorf("pin thread %d of %d to CPU %d: %w", tid, pid, cpu, err)
		}
	}
	return nil
}

// pinSelf pins this process (the load generator) to the masters' CPU.
func pinSelf() error { return pinProcess(os.Getpid(), masterCPU) }

// unpinSelf lets this process run anywhere again.
func unpinSelf() {
	var set unix.CPUSet
	for i := 0; i < runtime.NumCPU(); i++ {
		set.Set(i)
	}
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", os.Getpid()))
	for _, t := range tasks {
		if tid, err := strconv.Atoi(t.Name()); err == nil {
			unix.SchedSetaffinity(tid, &set)
		}
	}
}
