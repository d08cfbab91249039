package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/arbor-fabric/arbor/election"
	"github.com/arbor-fabric/arbor/internal/etcdbin"
	"github.com/arbor-fabric/arbor/topology"
)

// arborReadyTimeout bounds how long a fresh Arbor set-up may take until
// its master holds the election and every node streams.
const arborReadyTimeout = 60 * time.Second

// errNoElect means the arbor binary has no `node --elect`.
var errNoElect = errors.New("this arbor binary's node agent has no --elect")

// arborElects reports whether bin's node agent takes part in the election.
func arborElects(bin string) error {
	out, err := exec.Command(bin, "node", "--help").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s node --help: %w", bin, err)
	}
	if !bytes.Contains(out, []byte("--elect")) {
		return errNoElect
	}
	return nil
}

// arborEtcd is the one etcd member every Arbor run uses (each run under
// its own cluster name), with a client for the benchmark's own reads.
type arborEtcd struct {
	env *env
	url string
	cli *clientv3.Client
}

// startArborEtcd starts a one-member etcd with its default timing
// (heartbeat 100 ms, election timeout 1 s: the fast election profile needs
// at most 1333 ms) and no fsync (a throwaway cluster on one machine).
func (w *workspace) startArborEtcd(ctx context.Context) (*arborEtcd, error) {
	bin, err := etcdbin.Etcd(ctx, func() { w.progress("building etcd from tools/go.mod (once; about 90 s)") })
	if err != nil {
		return nil, err
	}
	e := w.newEnv("etcd")
	ae := &arborEtcd{env: e}
	cport, err := freePort()
	if err != nil {
		return nil, err
	}
	pport, err := freePort()
	if err != nil {
		return nil, err
	}
	ae.url = fmt.Sprintf("http://127.0.0.1:%d", cport)
	peer := fmt.Sprintf("http://127.0.0.1:%d", pport)
	dir := filepath.Join(e.dir, "etcd")
	if _, err := e.start("etcd", dir, bin, []string{"--name", "bench", "--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", ae.url, "--advertise-client-urls", ae.url,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "bench=" + peer,
		"--unsafe-no-fsync", "--log-level", "warn"}); err != nil {
		return nil, err
	}
	if err := poll(ctx, 30*time.Second, slowPoll, "etcd not ready", nil, func() (bool, error) {
		err := etcdbin.Healthy(ae.url)
		return err == nil, err
	}); err != nil {
		e.close()
		return nil, err
	}
	ae.cli, err = clientv3.New(clientv3.Config{Endpoints: []string{ae.url}, DialTimeout: 2 * time.Second,
		Logger: zap.NewNop(), DialOptions: topology.DialOptions()})
	if err != nil {
		e.close()
		return nil, err
	}
	w.progress("started etcd on %s", ae.url)
	return ae, nil
}

func (ae *arborEtcd) close() {
	ae.cli.Close()
	ae.env.close()
}

// arborSystem is Arbor: node agents with --elect beside every
// redis-server (the master and the backup are candidates, the replicas
// are not), one root relay under the control plane that every node
// follows, all in one etcd. A failover is the master's agent resigning
// when its Redis fails its checks, the backup's agent winning the
// election, catching up with the relay, promoting its Redis and writing
// the record the relay follows.
type arborSystem struct {
	etcd *arborEtcd
	bin  string
	fast bool
	runs atomic.Int64 // names each run's cluster
}

func (s *arborSystem) Name() string {
	if s.fast {
		return "arbor-fast"
	}
	return "arbor"
}

func (s *arborSystem) Settings() string {
	p := "default election profile"
	if s.fast {
		p = "--fast election profile"
	}
	return "node agents --elect, " + p + ", 1 root relay"
}

func (s *arborSystem) Start(ctx context.Context, e *env) (FailoverSetup, error) {
	cluster := fmt.Sprintf("bench-%s-%d", s.Name(), s.runs.Add(1))
	set := &arborSetup{cli: s.etcd.cli, cluster: cluster}
	names := []string{"master", "backup", "replica-1", "replica-2"}
	servers := map[string]*server{}
	for _, name := range names {
		sv, err := e.startRedis(ctx, name, "")
		if err != nil {
			return nil, err
		}
		servers[name] = sv
	}
	set.master = servers["master"]
	set.others = []*server{servers["backup"], servers["replica-1"], servers["replica-2"]}
	rport, err := freePort()
	if err != nil {
		return nil, err
	}
	relayAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(rport))
	top := topology.New()
	top.Sites["A"] = topology.Site{Name: "A"}
	id := arborNodeID
	top.Master = id("master")
	top.Relays["r1"] = topology.RelaySpec{ID: "r1", Site: "A", RedisAddr: relayAddr, Upstream: topology.UpstreamMaster}
	prio := map[string]int32{"master": 10, "backup": 5}
	for _, name := range names {
		top.Nodes[id(name)] = topology.NodeSpec{ID: id(name), Site: "A", RedisAddr: servers[name].addr,
			Candidate: prio[name] > 0, Priority: prio[name], Follow: "r1"}
	}
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err = topology.Apply(actx, s.etcd.cli, cluster, top)
	cancel()
	if err != nil {
		return nil, err
	}
	etcdArgs := []string{"--etcd", s.etcd.url, "--cluster", cluster, "--log-level", "warn"}
	rp, err := e.start("r1", filepath.Join(e.dir, "r1"), s.bin, append([]string{"relay", "--id", "r1", "--site", "A",
		"--data-dir", "data", "--redis-addr", relayAddr}, etcdArgs...))
	if err != nil {
		return nil, err
	}
	set.relay = &server{process: rp, addr: relayAddr}
	if err := waitReady(ctx, set.relay); err != nil {
		return nil, err
	}
	for _, name := range names {
		a := []string{"node", "--id", id(name), "--site", "A", "--redis", "redis://" + servers[name].addr, "--elect",
			"--status-interval", "100ms", "--status-ttl", "2s"}
		if prio[name] > 0 {
			a = append(a, "--candidate", "--priority", strconv.Itoa(int(prio[name])))
		}
		if s.fast {
			a = append(a, "--fast")
		}
		p, err := e.start("agent-"+name, filepath.Join(e.dir, "agent-"+name), s.bin, append(a, etcdArgs...))
		if err != nil {
			return nil, err
		}
		if name == "master" {
			set.masterAgent = p
		}
	}
	// Ready: the master holds the election, every other node streams the
	// master's history through the relay, and the backup's agent reports
	// it healthy (else it would not be eligible).
	err = poll(ctx, arborReadyTimeout, slowPoll, "arbor set-up not ready", append([]*server{set.master, set.relay}, set.others...), func() (bool, error) {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		st, err := election.ReadState(rctx, s.etcd.cli, cluster)
		if err != nil {
			return false, err
		}
		if st.Master == nil || st.Master.Node != id("master") || !st.Live() {
			return false, fmt.Errorf("election: record %+v, leader %q", st.Master, st.Leader)
		}
		if err := inHistory(rctx, set.master.addr, set.others); err != nil {
			return false, err
		}
		sts, err := topology.ReadStatus(rctx, s.etcd.cli, cluster)
		if err != nil {
			return false, err
		}
		if b := sts.Nodes[id("backup")]; b == nil || !b.GetHealthy() {
			return false, fmt.Errorf("backup's agent reports no healthy status yet")
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	if set.relayFull, err = relayFullSyncs(ctx, relayAddr); err != nil {
		return nil, err
	}
	return set, nil
}

// inHistory checks that every replica streams master's replication ID with
// its link up.
func inHistory(ctx context.Context, master string, replicas []*server) error {
	m, err := infoOn(ctx, master, "replication")
	if err != nil {
		return err
	}
	for _, r := range replicas {
		ri, err := infoOn(ctx, r.addr, "replication")
		if err != nil {
			return err
		}
		if ri["master_link_status"] != "up" || ri["master_replid"] != m["master_replid"] {
			return fmt.Errorf("%s: link %q replid %s, master's %s", r.name, ri["master_link_status"], ri["master_replid"], m["master_replid"])
		}
	}
	return nil
}

// relayFullSyncs is the full syncs a relay served and made.
func relayFullSyncs(ctx context.Context, addr string) (int64, error) {
	m, err := infoOn(ctx, addr, "all")
	if err != nil {
		return 0, err
	}
	served, _ := infoInt(m, "sync_full")
	made, _ := infoInt(m, "arbor_upstream_full_syncs")
	return served + made, nil
}

// arborSetup is one running Arbor set-up. MasterAddr reads the master
// record (as an Arbor-aware client would watch it).
type arborSetup struct {
	cli       *clientv3.Client
	cluster   string
	master    *server
	others    []*server
	relay     *server
	relayFull int64 // the relay's full syncs when the set-up was ready
	// masterAgent is the master's node agent.
	masterAgent *process
}

func (s *arborSetup) Master() *server { return s.master }

// KillMaster kills the master's redis-server and, with host, its node
// agent at the same moment (a dead host: the election learns it only when
// the agent's lease expires).
func (s *arborSetup) KillMaster(host bool) {
	if host {
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.masterAgent.kill()
		}()
		s.master.kill()
		<-done
		return
	}
	s.master.kill()
}
func (s *arborSetup) Others() []*server { return s.others }

// Switchover requests a switchover to the backup, as arbor switchover
// does, and waits for the new master's record.
func (s *arborSetup) Switchover(ctx context.Context) error {
	_, err := election.RequestSwitchover(ctx, s.cli, s.cluster, arborNodeID("backup"), arborSwitchoverTimeout)
	return err
}

// arborSwitchoverTimeout bounds the write pause of a benchmark switchover
// (arbor switchover's default).
const arborSwitchoverTimeout = 5 * time.Second

// arborNodeID is the topology id of a benchmark server ("master" is
// reserved in the topology).
func arborNodeID(name string) string { return "n-" + name }
func (s *arborSetup) Close()         {}

func (s *arborSetup) MasterAddr(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	resp, err := s.cli.Get(ctx, election.MasterKey(s.cluster))
	if err != nil {
		return "", err
	}
	if len(resp.Kvs) == 0 {
		return s.master.addr, nil
	}
	m, err := election.ParseMaster(resp.Kvs[0].Value)
	if err != nil {
		return "", err
	}
	return m.RedisAddr, nil
}

// FullSyncs adds the relay's full syncs since the set-up was ready to the
// new master's.
func (s *arborSetup) FullSyncs(ctx context.Context, newMaster string) (int64, error) {
	n, err := masterFullSyncs(ctx, newMaster)
	if err != nil {
		return 0, err
	}
	r, err := relayFullSyncs(ctx, s.relay.addr)
	if err != nil {
		return 0, err
	}
	return n + r - s.relayFull, nil
}

// masterFullSyncs is the full syncs a Redis master served.
func masterFullSyncs(ctx context.Context, addr string) (int64, error) {
	m, err := infoOn(ctx, addr, "stats")
	if err != nil {
		return 0, err
	}
	return infoInt(m, "sync_full")
}
