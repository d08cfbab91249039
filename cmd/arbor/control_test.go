package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/arbor-fabric/arbor/internal/etcdtest"
	"github.com/arbor-fabric/arbor/internal/redistest"
	"github.com/arbor-fabric/arbor/internal/statusview"
	"github.com/arbor-fabric/arbor/topology"
)

// arbor runs the command in-process with args and returns its standard
// output and error.
func arbor(ctx context.Context, args ...string) (string, error) {
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

// noLeaks checks, after every other cleanup of the test, that no goroutine
// outlived it.
func noLeaks(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
}

func TestTopologyCommands(t *testing.T) {
	noLeaks(t)
	c := etcdtest.Start(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	eflags := []string{"--etcd", strings.Join(c.Endpoints(), ","), "--cluster", "cmd"}
	seedFile := filepath.Join("..", "..", "deploy", "topology.yaml")

	out, err := arbor(ctx, "topology", "validate", "-f", seedFile)
	if err != nil || !strings.Contains(out, "valid: 3 sites, 4 relays, 9 nodes, master A-Master") {
		t.Fatalf("validate the seed: %v\n%s", err, out)
	}
	if out, err = arbor(ctx, append([]string{"topology", "apply", "-f", seedFile}, eflags...)...); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	t.Logf("apply: %s", out)

	// get gives back the file's topology.
	out, err = arbor(ctx, append([]string{"topology", "get"}, eflags...)...)
	if err != nil {
		t.Fatalf("get: %v\n%s", err, out)
	}
	got, err := topology.ParseYAML([]byte(out))
	if err != nil {
		t.Fatalf("get printed an unreadable topology: %v\n%s", err, out)
	}
	b, _ := os.ReadFile(seedFile)
	want, _ := topology.ParseYAML(b)
	if !got.Equal(want) {
		t.Fatalf("get: got\n%s\nwant the seed", out)
	}
	if out, err = arbor(ctx, append([]string{"topology", "validate"}, eflags...)...); err != nil {
		t.Fatalf("validate from etcd: %v\n%s", err, out)
	}

	// A bad file is refused, every problem named, and nothing written.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	badYAML := strings.Replace(string(b), "upstream: relay-a1}", "upstream: relay-x}", 1)
	badYAML = strings.Replace(badYAML, "relay-a2: {site: A, grpc_addr: \"127.0.0.1:7501\", redis_addr: \"127.0.0.1:7101\", upstream: master}",
		"relay-a2: {site: A, grpc_addr: \"127.0.0.1:7501\", redis_addr: \"127.0.0.1:7101\", upstream: relay-a2}", 1)
	if err := os.WriteFile(bad, []byte(badYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	before := c.Etcdctl(t, "get", "--prefix", topology.Prefix("cmd"))
	_, err = arbor(ctx, append([]string{"topology", "apply", "-f", bad}, eflags...)...)
	if err == nil || !strings.Contains(err.Error(), `upstream "relay-x": no such relay`) || !strings.Contains(err.Error(), "cannot follow itself") {
		t.Fatalf("apply of a bad file: got %v, want both problems named", err)
	}
	if after := c.Etcdctl(t, "get", "--prefix", topology.Prefix("cmd")); after != before {
		t.Fatal("a refused apply changed etcd")
	}
	if _, err := arbor(ctx, "topology", "validate", "-f", bad); err == nil {
		t.Fatal("validate accepted a bad file")
	}
	unknown := filepath.Join(t.TempDir(), "unknown.yaml")
	os.WriteFile(unknown, []byte("sites: {A: {}}\nrelays: {r: {site: A, redis_addr: '127.0.0.1:1', upstream: master, colour: red}}\n"), 0o644)
	if _, err := arbor(ctx, "topology", "validate", "-f", unknown); err == nil || !strings.Contains(err.Error(), "colour") {
		t.Fatalf("validate of an unknown field: got %v", err)
	}

	// A bad etcdctl edit: get prints what it can and fails naming it.
	c.Etcdctl(t, "put", topology.RelayKey("cmd", "relay-c"), `{"site":"C","upstream":"relay-b","redis_addr":"127.0.0.1:7120","extra":1}`)
	out, err = arbor(ctx, append([]string{"topology", "get"}, eflags...)...)
	if err == nil || !strings.Contains(err.Error(), `unknown field "extra"`) || !strings.Contains(out, "relay-a1:") {
		t.Fatalf("get of a refused topology: %v\n%s", err, out)
	}
	if _, err := arbor(ctx, append([]string{"topology", "validate"}, eflags...)...); err == nil {
		t.Fatal("validate from etcd accepted a refused topology")
	}
	// apply repairs it.
	if out, err = arbor(ctx, append([]string{"topology", "apply", "-f", seedFile}, eflags...)...); err != nil {
		t.Fatalf("apply over a bad edit: %v\n%s", err, out)
	}
	if _, err := arbor(ctx, append([]string{"topology", "validate"}, eflags...)...); err != nil {
		t.Fatalf("validate after the repair: %v", err)
	}

	// Missing flags are named.
	if _, err := arbor(ctx, "topology", "get", "--etcd", ""); err == nil || !strings.Contains(err.Error(), "--etcd: required") {
		t.Fatalf("get without --etcd: %v", err)
	}
}

// TestEtcdAuth checks --etcd-user and --etcd-password against an etcd with
// authentication enabled (with the real etcdctl).
func TestEtcdAuth(t *testing.T) {
	noLeaks(t)
	c := etcdtest.Start(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c.Etcdctl(t, "user", "add", "root", "--new-user-password=rootpw")
	c.Etcdctl(t, "auth", "enable")
	seedFile := filepath.Join("..", "..", "deploy", "topology.yaml")
	eflags := []string{"--etcd", strings.Join(c.Endpoints(), ","), "--cluster", "auth"}
	if _, err := arbor(ctx, append([]string{"topology", "apply", "-f", seedFile}, eflags...)...); err == nil {
		t.Fatal("apply without credentials succeeded on an etcd with auth")
	}
	if out, err := arbor(ctx, append([]string{"topology", "apply", "-f", seedFile, "--etcd-user", "root", "--etcd-password", "wrong"}, eflags...)...); err == nil {
		t.Fatalf("apply with a wrong password succeeded: %s", out)
	}
	t.Setenv(etcdPasswordEnv, "rootpw")
	if out, err := arbor(ctx, append([]string{"topology", "apply", "-f", seedFile, "--etcd-user", "root"}, eflags...)...); err != nil {
		t.Fatalf("apply with credentials: %v\n%s", err, out)
	}
	if out := c.Etcdctl(t, "--user=root:rootpw", "get", "--print-value-only", topology.MasterKey("auth")); strings.TrimSpace(out) != `{"node":"A-Master"}` {
		t.Fatalf("master key: %q", out)
	}
}

// buildArborBinary builds this command for the process tests.
func buildArborBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "arbor")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// agentProcess is `arbor node` as a real child process.
type agentProcess struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func startAgent(t *testing.T, bin string, args ...string) *agentProcess {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "node.log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := &agentProcess{cmd: exec.Command(bin, append([]string{"node"}, args...)...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("arbor node %s log:\n%s", strings.Join(args, " "), b)
		}
	})
	return p
}

func (p *agentProcess) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// statusJSON runs `arbor status --json` in-process.
func statusJSON(ctx context.Context, eflags []string) (*statusview.Fabric, error) {
	out, err := arbor(ctx, append([]string{"status", "--json"}, eflags...)...)
	if err != nil {
		return nil, err
	}
	var v statusview.Fabric
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		return nil, fmt.Errorf("%v: %s", err, out)
	}
	return &v, nil
}

func findNode(v *statusview.Fabric, id string) *statusview.Node {
	for i := range v.Nodes {
		if v.Nodes[i].ID == id {
			return &v.Nodes[i]
		}
	}
	return nil
}

// TestNodeAgentsAndStatus runs real `arbor node` processes beside real
// redis-servers and checks that `arbor status --json` matches what runs,
// that an etcdctl edit re-points a node, and that a killed agent's status
// disappears when its lease expires.
func TestNodeAgentsAndStatus(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs processes")
	}
	noLeaks(t)
	bin := buildArborBinary(t)
	c := etcdtest.Start(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const cluster = "procs"
	eflags := []string{"--etcd", strings.Join(c.Endpoints(), ","), "--cluster", cluster}

	// The master, two Redis replicas of it standing in for two relays'
	// Redis sides, and a replica node.
	m := redistest.Start(t)
	r1 := redistest.Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(m.Port))
	r2 := redistest.Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(m.Port))
	n := redistest.Start(t)
	yaml := fmt.Sprintf(`master: m
sites: {A: {}, B: {}}
relays:
  r1: {site: A, grpc_addr: "127.0.0.1:1", redis_addr: %q, upstream: master}
  r2: {site: B, grpc_addr: "127.0.0.1:2", redis_addr: %q, upstream: r1}
nodes:
  m: {site: A, redis_addr: %q, candidate: true, priority: 10, follow: r1}
  n: {site: B, redis_addr: %q, follow: r1}
`, r1.Addr, r2.Addr, m.Addr, n.Addr)
	file := filepath.Join(t.TempDir(), "t.yaml")
	os.WriteFile(file, []byte(yaml), 0o644)
	if out, err := arbor(ctx, append([]string{"topology", "apply", "-f", file}, eflags...)...); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	common := append([]string{"--check-interval", "100ms", "--status-interval", "200ms", "--status-ttl", "1s", "--log-level", "debug"}, eflags...)
	startAgent(t, bin, append([]string{"--id", "m", "--site", "A", "--redis", "redis://" + m.Addr, "--candidate", "--priority", "10"}, common...)...)
	nAgent := startAgent(t, bin, append([]string{"--id", "n", "--site", "B", "--redis", "redis://" + n.Addr}, common...)...)

	if err := redistest.LoadAllTypes(ctx, m.Client(), redistest.LoadOptions{SmallKeys: 200, Seed: 2}); err != nil {
		t.Fatal(err)
	}
	redistest.WaitInSync(t, 30*time.Second, m, r1, n)

	// arbor status --json matches the running servers.
	redistest.WaitFor(t, 15*time.Second, func() error {
		v, err := statusJSON(ctx, eflags)
		if err != nil {
			return err
		}
		if !v.TopologyValid || v.Master != "m" {
			return fmt.Errorf("topology valid %v, master %q", v.TopologyValid, v.Master)
		}
		for _, s := range []struct {
			id   string
			srv  *redistest.Server
			role string
		}{{"m", m, "master"}, {"n", n, "replica"}} {
			nv := findNode(v, s.id)
			if nv == nil || !nv.Live || !nv.Healthy || nv.Role != s.role || nv.LastError != "" {
				return fmt.Errorf("node %s: %+v", s.id, nv)
			}
			info, err := s.srv.Info(ctx, "replication")
			if err != nil {
				return err
			}
			if strconv.FormatInt(nv.Offset, 10) != info["master_repl_offset"] || nv.Replid != info["master_replid"] {
				return fmt.Errorf("node %s: status offset %d replid %s, redis says %s %s", s.id, nv.Offset, nv.Replid, info["master_repl_offset"], info["master_replid"])
			}
		}
		if nv := findNode(v, "n"); nv.Link != "streaming" || nv.LagBytes != 0 || nv.Follow != "r1" {
			return fmt.Errorf("node n: %+v", nv)
		}
		return nil
	})
	out, err := arbor(ctx, append([]string{"status"}, eflags...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("arbor status:\n%s", out)
	for _, want := range []string{"node m [A] MASTER candidate p10  master", "└─ relay r1 [A] ← master", "relay r2 [B] ← r1", "node n [B]  replica"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q", want)
		}
	}

	// An etcdctl edit re-points n within a second (measured; asserted only
	// against a generous deadline).
	start := time.Now()
	c.Etcdctl(t, "put", topology.NodeKey(cluster, "n"), fmt.Sprintf(`{"site":"B","redis_addr":%q,"follow":"r2"}`, n.Addr))
	redistest.WaitFor(t, 10*time.Second, func() error {
		info, err := n.Info(ctx, "replication")
		if err != nil {
			return err
		}
		if info["master_port"] != strconv.Itoa(r2.Port) {
			return fmt.Errorf("n replicates from port %s", info["master_port"])
		}
		return nil
	})
	t.Logf("n re-pointed %v after the etcdctl put started", time.Since(start))

	// A killed agent's status disappears when its lease expires.
	nAgent.kill()
	killed := time.Now()
	redistest.WaitFor(t, 15*time.Second, func() error {
		v, err := statusJSON(ctx, eflags)
		if err != nil {
			return err
		}
		if nv := findNode(v, "n"); nv == nil || nv.Live {
			return fmt.Errorf("node n still live: %+v", nv)
		}
		return nil
	})
	t.Logf("the killed agent's status went %v after the kill (TTL 1s)", time.Since(killed))
	out, _ = arbor(ctx, append([]string{"status"}, eflags...)...)
	if !strings.Contains(out, "node n [B]  no status (agent down?)") {
		t.Errorf("status after the kill:\n%s", out)
	}
}

// TestStatusWatch follows `arbor status --watch --json` while the topology
// changes.
func TestStatusWatch(t *testing.T) {
	noLeaks(t)
	c := etcdtest.Start(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	eflags := []string{"--etcd", strings.Join(c.Endpoints(), ","), "--cluster", "watch"}
	seedFile := filepath.Join("..", "..", "deploy", "topology.yaml")
	if _, err := arbor(ctx, append([]string{"topology", "apply", "-f", seedFile}, eflags...)...); err != nil {
		t.Fatal(err)
	}

	pr, pw := io.Pipe()
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		root := newRootCmd()
		root.SetOut(pw)
		root.SetErr(io.Discard)
		root.SetArgs(append([]string{"status", "--watch", "--json"}, eflags...))
		done <- root.ExecuteContext(wctx)
		pw.Close()
	}()
	lines := make(chan statusview.Fabric)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var v statusview.Fabric
			if json.Unmarshal(sc.Bytes(), &v) == nil {
				select {
				case lines <- v:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("status --watch: %v", err)
		}
		for range lines {
		}
	}()
	next := func(want func(*statusview.Fabric) bool) {
		t.Helper()
		for {
			select {
			case v, ok := <-lines:
				if !ok {
					t.Fatal("status --watch ended")
				}
				if want(&v) {
					return
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no matching redraw within 10s")
			}
		}
	}
	next(func(v *statusview.Fabric) bool { return v.TopologyValid && len(v.Relays) == 4 })
	c.Etcdctl(t, "put", topology.RelayKey("watch", "relay-c"), `{"site":"C","upstream":"relay-q","redis_addr":"127.0.0.1:7120"}`)
	next(func(v *statusview.Fabric) bool {
		return !v.TopologyValid && len(v.Refused) == 1 && strings.Contains(v.Refused[0].Problem, `"relay-q": no such relay`)
	})
	c.Etcdctl(t, "put", topology.RelayKey("watch", "relay-c"), `{"site":"C","upstream":"relay-b","grpc_addr":"127.0.0.1:7520","redis_addr":"127.0.0.1:7120"}`)
	next(func(v *statusview.Fabric) bool {
		for _, r := range v.Relays {
			if r.ID == "relay-c" {
				return v.TopologyValid && r.Upstream == "relay-b"
			}
		}
		return false
	})
}

// TestEtcdTLS checks --etcd-cacert, --etcd-cert and --etcd-key against an
// etcd that requires client certificates.
func TestEtcdTLS(t *testing.T) {
	noLeaks(t)
	c := etcdtest.StartWith(t, etcdtest.Options{TLS: true})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	seedFile := filepath.Join("..", "..", "deploy", "topology.yaml")
	eflags := []string{"--etcd", strings.Join(c.Endpoints(), ","), "--cluster", "tls", "--etcd-dial-timeout", "2s"}
	short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
	_, err := arbor(short, append([]string{"topology", "validate", "--etcd-cacert", c.TLS.CA}, eflags...)...)
	cancelShort()
	if err == nil {
		t.Fatal("served without a client certificate")
	}
	tlsFlags := append([]string{"--etcd-cacert", c.TLS.CA, "--etcd-cert", c.TLS.ClientCert, "--etcd-key", c.TLS.ClientKey}, eflags...)
	if out, err := arbor(ctx, append([]string{"topology", "apply", "-f", seedFile}, tlsFlags...)...); err != nil {
		t.Fatalf("apply over TLS: %v\n%s", err, out)
	}
	if out, err := arbor(ctx, append([]string{"status", "--json"}, tlsFlags...)...); err != nil || !strings.Contains(out, `"master":"A-Master"`) {
		t.Fatalf("status over TLS: %v\n%s", err, out)
	}
	if _, err := arbor(ctx, "topology", "get", "--etcd", "127.0.0.1:1", "--cluster", "x", "--etcd-cert", c.TLS.ClientCert); err == nil || !strings.Contains(err.Error(), "give both or neither") {
		t.Fatalf("--etcd-cert without --etcd-key: %v", err)
	}
}

// TestNodeWaitsForEtcd starts `arbor node` with --etcd-user while etcd is
// down (such a client cannot start without reaching etcd): the agent keeps
// trying and publishes once etcd is up.
func TestNodeWaitsForEtcd(t *testing.T) {
	noLeaks(t)
	c := etcdtest.Start(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c.Etcdctl(t, "user", "add", "root", "--new-user-password=pw")
	c.Etcdctl(t, "auth", "enable")
	c.Members[0].Kill()
	r := redistest.Start(t)

	actx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := arbor(actx, "node", "--elect=false", "--id", "n", "--redis", "redis://"+r.Addr, "--etcd", strings.Join(c.Endpoints(), ","),
			"--cluster", "late", "--etcd-user", "root", "--etcd-password", "pw", "--etcd-dial-timeout", "500ms", "--log-level", "error")
		done <- err
	}()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("arbor node: %v", err)
		}
	}()
	time.Sleep(1500 * time.Millisecond) // let it fail to connect at least once
	c.Members[0].Start(t)
	redistest.WaitFor(t, 15*time.Second, func() error {
		out, err := c.EtcdctlErr("--user=root:pw", "get", "--print-value-only", topology.StatusKey("late", topology.KindNode, "n"))
		if err != nil {
			return err
		}
		if !strings.Contains(out, "not in the topology") {
			return fmt.Errorf("status %q", out)
		}
		return nil
	})
}
