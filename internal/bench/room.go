package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ErrNoRoom is what a RoomError is (errors.Is): the machine cannot hold a
// benchmark step, or ran low on memory during one.
var ErrNoRoom = errors.New("not enough room on this machine")

// RoomError refuses a dataset step the machine cannot hold: it would need
// Need bytes of Resource ("memory": MemAvailable; "disk": free space under
// the working directory) and Have are there. The step is refused before
// any process starts, so that the kernel's OOM killer, which could pick
// any process of the machine, never has to.
type RoomError struct {
	Step     string
	Resource string
	Need     int64
	Have     int64
	// Detail says how Need was estimated, and what would fit.
	Detail string
}

func (e *RoomError) Error() string {
	return fmt.Sprintf("%s: needs about %s of %s, the machine has %s: %s",
		e.Step, sizeString(e.Need), e.Resource, sizeString(e.Have), e.Detail)
}

// Is makes errors.Is(err, ErrNoRoom) true.
func (e *RoomError) Is(target error) bool { return target == ErrNoRoom }

const (
	// memReserve is the memory a dataset step leaves to the rest of the
	// machine (other processes, the page cache it needs to make progress).
	memReserve = 2 << 30
	// diskReserve is the free disk a dataset step leaves.
	diskReserve = 1 << 30
	// memFloor is the MemAvailable under which a running dataset step is
	// stopped (memWatch): the estimate was wrong or something else grew,
	// and the OOM killer is near.
	memFloor = 768 << 20
	// mixMemFactor is a redis-server's resident set per byte of data of
	// the realistic mix: used_memory was 1.33× the data from 256 MiB to
	// 4 GiB, and the allocator holds more than it uses.
	mixMemFactor = 1.5
	// keyOverhead is a key's memory in a redis-server besides its value's
	// allocation: the dict entry, the object, the key's string, the
	// table's slot, with room to spare.
	keyOverhead = 160
)

// datasetNeeds is what a dataset step needs of the machine at its peak.
type datasetNeeds struct {
	// copy is one redis-server holding the dataset (resident); copies how
	// many hold it at once.
	copy   int64
	copies int
	// memory is the peak: the copies, the master's fork while it sends
	// the RDB, the relay.
	memory int64
	// rdb is the RDB's size on disk, disk what the step writes: the
	// relay's store and each replica's received RDB (a replica that loads
	// from disk keeps it).
	rdb  int64
	disk int64
}

// estimateDataset estimates a dataset step of size bytes of data: the
// realistic mix (valueSize 0) or valueSize-byte values. With native, a
// native replica loads from the master while the master holds the data
// (two copies at once); without, the master is stopped before the replica
// loads from the relay, so one copy is resident at a time.
func estimateDataset(size int64, valueSize int, native bool) datasetNeeds {
	var n datasetNeeds
	if valueSize <= 0 {
		n.copy = int64(float64(size) * mixMemFactor)
		n.rdb = size
	} else {
		keys := (size + int64(valueSize) - 1) / int64(valueSize)
		// The value is an sds string: a header of up to 9 bytes and a
		// terminating NUL, in the allocator's size class. The resident set
		// was 1.07× that at 1 GiB of 65,000-byte values (the allocator's
		// spare pages, buffers): a sixth more covers it.
		n.copy = keys * (allocClass(int64(valueSize)+10) + keyOverhead) * 7 / 6
		n.rdb = size + keys*32
	}
	n.copies = 1
	replicas := int64(1)
	if native {
		n.copies, replicas = 2, 2
	}
	// The master forks to send the RDB; with no writes during the sync
	// its child copies few pages, but the kernel's and allocator's
	// background work touches some: an eighth of a copy covers it. The
	// relay streams the RDB through its disk: a small constant.
	n.memory = int64(n.copies)*n.copy + n.copy/8 + 256<<20
	n.disk = n.rdb * (1 + replicas)
	return n
}

// allocClass rounds n up to about jemalloc's size class: four classes
// per doubling (…, 64 KiB, 80 KiB, 96 KiB, 112 KiB, 128 KiB, 160 KiB, …);
// exact for the large values the estimate is for, within 8 bytes for
// small ones.
func allocClass(n int64) int64 {
	if n <= 16 {
		return 16
	}
	// The largest power of two below n, and a quarter of it as the step.
	p := int64(1)
	for p*2 < n {
		p *= 2
	}
	step := max(p/4, 8)
	return (n + step - 1) / step * step
}

// machineRoom is what the machine offers a step: MemAvailable and the
// free disk under the working directory.
type machineRoom struct {
	memAvailable int64
	diskFree     int64
}

// readMachineRoom reads MemAvailable from /proc/meminfo and the space
// free to this user under dir.
func readMachineRoom(dir string) (machineRoom, error) {
	var r machineRoom
	var err error
	if r.memAvailable, err = memAvailable(); err != nil {
		return r, err
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return r, fmt.Errorf("statfs %s: %w", dir, err)
	}
	r.diskFree = int64(st.Bavail) * st.Bsize
	return r, nil
}

// memAvailable returns MemAvailable from /proc/meminfo, in bytes: what
// the kernel can give new allocations without swapping (free memory and
// the page cache it can drop).
func memAvailable() (int64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	// Its lines are like /proc/<pid>/status's: "MemAvailable:   123 kB".
	return parseStatusKB(b, "MemAvailable")
}

// checkRoom refuses (a *RoomError) a dataset step whose estimate does not
// fit the room, leaving memReserve and diskReserve.
func checkRoom(step string, n datasetNeeds, have machineRoom) error {
	if need := n.memory + memReserve; need > have.memAvailable {
		copies, without := "a redis-server of about "+sizeString(n.copy), ""
		if n.copies > 1 { // a native replica loads too (--dataset-native)
			copies = fmt.Sprintf("%d redis-servers of about %s each at once", n.copies, sizeString(n.copy))
			without = "; without --dataset-native only one copy is resident at a time (the master is stopped before the replica loads from the relay)"
		}
		detail := fmt.Sprintf("%s, the master's fork and the relay, and %s left to the rest of the machine%s", copies, sizeString(memReserve), without)
		return &RoomError{Step: step, Resource: "memory", Need: need, Have: have.memAvailable, Detail: detail}
	}
	if need := n.disk + diskReserve; need > have.diskFree {
		return &RoomError{Step: step, Resource: "disk", Need: need, Have: have.diskFree,
			Detail: fmt.Sprintf("an RDB of about %s in the relay's store and in each replica's directory, and %s to spare; --dir puts the work elsewhere",
				sizeString(n.rdb), sizeString(diskReserve))}
	}
	return nil
}

// memWatch watches a dataset step: every memWatchEvery it reads the
// machine's MemAvailable and the resident set of the process it is told
// to watch (the relay), keeping the lowest and the highest; should
// MemAvailable fall under memFloor it cancels the step (with a
// *RoomError) before the OOM killer acts.
type memWatch struct {
	// floor is memFloor, or a test's.
	floor    int64
	pid      atomic.Int64
	maxRSS   atomic.Int64
	minAvail atomic.Int64
}

// lowest is the lowest MemAvailable sampled so far (-1 before the first
// sample).
func (w *memWatch) lowest() int64 { return w.minAvail.Load() }

// memWatchEvery is memWatch's sampling period.
const memWatchEvery = 200 * time.Millisecond

// watch starts sampling until ctx ends; stop waits for the sampler.
func (w *memWatch) watch(ctx context.Context, step string, cancel context.CancelCauseFunc) (stop func()) {
	w.minAvail.Store(-1)
	floor := cmp.Or(w.floor, memFloor)
	ctx, done := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(memWatchEvery)
		defer t.Stop()
		for {
			if pid := w.pid.Load(); pid > 0 {
				if rss, _, err := residentSet(int(pid)); err == nil && rss > w.maxRSS.Load() {
					w.maxRSS.Store(rss)
				}
			}
			if avail, err := memAvailable(); err == nil {
				if m := w.minAvail.Load(); m < 0 || avail < m {
					w.minAvail.Store(avail)
				}
				if avail < floor {
					cancel(&RoomError{Step: step, Resource: "memory", Need: floor, Have: avail,
						Detail: "MemAvailable fell under the floor during the step, which was stopped before the OOM killer could act"})
					return
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	return func() {
		done()
		wg.Wait()
	}
}
