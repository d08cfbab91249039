package demo

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/arbor-fabric/arbor/internal/etcdbin"
	"github.com/arbor-fabric/arbor/topology"
)

// TestDemoConverges runs the whole seed topology, wired statically
// (--no-etcd), for a second of load and checks the demo's own verdict and
// table.
func TestDemoConverges(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not installed")
	}
	var out strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sum, err := Run(ctx, Options{
		Dir:      t.TempDir(),
		Duration: time.Second,
		Rate:     5000,
		Out:      &out,
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		NoEtcd:   true,
	})
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	if sum.FailedOver || !sum.DigestsEqual || sum.AckedChecked == 0 || sum.LostPromised != 0 || len(sum.Failures) != 0 {
		t.Errorf("summary %+v: want no failover, digests equal, acknowledged writes checked and none lost", sum)
	}
	for _, want := range []string{"OK: all 8 servers hold the master's data", "relay-b", "C-S-2"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "etcd") {
		t.Errorf("the static demo mentions etcd:\n%s", out.String())
	}
}

// TestDemoWithEtcd runs the demo as `arbor demo` does by default: its own
// etcd, the seed topology applied to it, relays and node agents following
// it, a live re-parenting of relay-c during the load, then the story: a
// kill -9 of A-Master's Redis and the failover to A-M-Backup, A-Master's
// return as a replica, the switchover back, and the fabric rendered at
// the end. Then etcd, every redis-server and every goroutine are gone.
func TestDemoWithEtcd(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not installed")
	}
	bin, err := exec.LookPath("etcd")
	if err != nil {
		bctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		bin, err = etcdbin.Etcd(bctx, func() { t.Log("building etcd from tools/go.mod (cached afterwards)") })
		cancel()
		if err != nil {
			t.Skipf("no etcd binary: %v", err)
		}
	}
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var out strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sum, err := Run(ctx, Options{
		Dir:      t.TempDir(),
		Duration: time.Second,
		Rate:     5000,
		Out:      &out,
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		EtcdBin:  bin,
	})
	text := out.String()
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, text)
	}
	switch {
	case !sum.Reparented:
		t.Errorf("summary: relay-c not re-parented")
	case !sum.FailedOver || sum.EpochAfter <= sum.EpochBefore:
		t.Errorf("summary: no failover (epoch %d → %d)", sum.EpochBefore, sum.EpochAfter)
	case sum.NewMaster != "A-M-Backup":
		t.Errorf("summary: failover to %q, want A-M-Backup", sum.NewMaster)
	case len(sum.Steps) == 0:
		t.Errorf("summary: the failover's history has no steps")
	case sum.FailoverFullSyncs != 0:
		t.Errorf("summary: %d full syncs across the failover, want 0", sum.FailoverFullSyncs)
	case !sum.Rejoined || sum.ReturnFullSyncs > 1:
		t.Errorf("summary: old master rejoined %v with %d full syncs, want it back with at most its own", sum.Rejoined, sum.ReturnFullSyncs)
	case !sum.SwitchedOver || sum.SwitchoverMaster != "A-Master":
		t.Errorf("summary: switchover %v to %q, want back to A-Master", sum.SwitchedOver, sum.SwitchoverMaster)
	case sum.AckedChecked == 0 || sum.LostPromised != 0:
		t.Errorf("summary: %d acknowledged writes checked, %d lost where none may be", sum.AckedChecked, sum.LostPromised)
	case !sum.DigestsEqual || len(sum.Failures) != 0:
		t.Errorf("summary: digests equal %v, failures %q", sum.DigestsEqual, sum.Failures)
	}
	if t.Failed() {
		t.Logf("summary %+v\n%s", sum, text)
	}
	for _, want := range []string{
		"Control plane: etcd at 127.0.0.1:",
		"--cluster demo --watch",
		"etcdctl --endpoints 127.0.0.1:",
		"relay-c follows relay-b",
		"arbor_upstream_full_syncs still 1",
		"relay relay-c [C] ← relay-b  link streaming",
		"node C-S-2 [C]  replica",
		"site C: relays relay-c · nodes 2 (2 live, 2 healthy)",
		"OK: all 8 servers hold the master's data",
		"OK: relay-c was re-parented live through etcd (to relay-b) with no full sync.",
		"new master A-M-Backup",
		"its agent had made it a replica of relay-a1",
		"arbor switchover --to A-Master",
		"All checks passed.",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q:\n%s", want, text)
		}
	}
	// The final table shows relay-c under relay-b with its one full sync.
	final := text[strings.LastIndex(text, "] final"):]
	if !regexp.MustCompile(`C\s+relay-c\s+relay\s+relay-b\s+\d+\s+0\s+1 full, 1 partial`).MatchString(final) {
		t.Errorf("final table does not show relay-c following relay-b with 1 full sync:\n%s", final)
	}
	// The demo's etcd is gone.
	ep := regexp.MustCompile(`etcd at (127\.0\.0\.1:\d+)`).FindStringSubmatch(text)
	if ep == nil {
		t.Fatal("no etcd endpoint in the output")
	}
	if c, err := net.DialTimeout("tcp", ep[1], time.Second); err == nil {
		c.Close()
		t.Errorf("etcd at %s still accepts connections after the demo", ep[1])
	}
}

// TestSeedShape checks that the demo's topology is deploy/topology.yaml's
// but for the addresses.
func TestSeedShape(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "topology.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := topology.ParseYAML(b)
	if err != nil {
		t.Fatal(err)
	}
	redisAddrs, grpcAddrs := map[string]string{}, map[string]string{}
	port := 9000
	next := func() string { port++; return fmt.Sprintf("127.0.0.1:%d", port) }
	for _, r := range seedRelays {
		redisAddrs[r.ID], grpcAddrs[r.ID] = next(), next()
	}
	for _, n := range seedNodes {
		redisAddrs[n.spec.ID] = next()
	}
	got := seedTopology(redisAddrs, grpcAddrs, redisAddrs)
	if err := topology.Validate(got); err != nil {
		t.Fatalf("the demo's topology does not validate: %v", err)
	}
	for _, top := range []*topology.Topology{want, got} {
		for id, r := range top.Relays {
			r.RedisAddr, r.GRPCAddr = "", ""
			top.Relays[id] = r
		}
		for id, n := range top.Nodes {
			n.RedisAddr = ""
			top.Nodes[id] = n
		}
	}
	if !got.Equal(want) {
		t.Errorf("the demo's seed topology differs from deploy/topology.yaml's (addresses aside):\ndemo: %+v\nfile: %+v", got, want)
	}
}
