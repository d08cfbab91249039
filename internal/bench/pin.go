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

// placement picks the CPU a process of a phase runs on.
type placement func(name string) int

// consumersApart is "arbor bench relay --pin": masters on masterCPU, every
// replication consumer on consumerCPU.
func consumersApart(name string) int {
	if isMaster(name) {
		return masterCPU
	}
	return consumerCPU
}

// relaysApart is "arbor bench tree --pin": the relays on consumerCPU,
// everything else (master, every redis replica, the load generator with
// its link bridges) on masterCPU, so the relays' own cost per hop is
// measured without the 8 replicas and the master taking their CPU.
func relaysApart(name string) int {
	if strings.HasPrefix(name, "relay-") || name == "relay" {
		return consumerCPU
	}
	return masterCPU
}

// pinBy, when on, pins this process (the load generator, and in the tree
// benchmark the link bridges) to masterCPU and the workspace's processes
// as where places them; the returned function unpins this process. It
// fails on a machine with fewer than 2 CPUs.
func (w *workspace) pinBy(on bool, where placement) (func(), error) {
	if !on {
		return func() {}, nil
	}
	if runtime.NumCPU() < 2 {
		return nil, fmt.Errorf("--pin needs at least 2 CPUs, this machine has %d", runtime.NumCPU())
	}
	if err := pinProcess(os.Getpid(), masterCPU); err != nil {
		return nil, err
	}
	w.pin = where
	return unpinSelf, nil
}

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
