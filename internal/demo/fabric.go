package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/arbor-fabric/arbor/internal/fabric"
	"github.com/arbor-fabric/arbor/internal/statusview"
	"github.com/arbor-fabric/arbor/relay"
	"github.com/arbor-fabric/arbor/topology"
)

const (
	// relayStartTimeout bounds how long the demo waits for a relay to read
	// its spec from etcd and open its listeners.
	relayStartTimeout = 20 * time.Second
	// reparentTimeout bounds the live re-parenting: the edit in etcd until
	// the relay streams from its new parent.
	reparentTimeout = 15 * time.Second
	// fabricSettle bounds the wait for the published statuses to show the
	// final offsets before the fabric is printed.
	fabricSettle = 5 * time.Second
)

// The seed topology of DESIGN.md, in the shape of deploy/topology.yaml
// (TestSeedShape checks that they agree); only the addresses differ: the
// demo's free loopback ports.
var (
	seedSites = []topology.Site{
		{Name: "A", Description: "primary site: the master, writes"},
		{Name: "B", Description: "backup site: takes over if site A is lost"},
		{Name: "C", Description: "read-only site"},
	}
	seedRelays = []topology.RelaySpec{
		{ID: "relay-a1", Site: "A", Upstream: topology.UpstreamMaster},
		{ID: "relay-a2", Site: "A", Upstream: topology.UpstreamMaster},
		{ID: "relay-b", Site: "B", Upstream: "relay-a1"},
		{ID: "relay-c", Site: "C", Upstream: "relay-a1"},
	}
	seedMaster = "A-Master"
	seedNodes  = []struct {
		spec topology.NodeSpec
		role string // for the table
	}{
		{topology.NodeSpec{ID: "A-Master", Site: "A", Candidate: true, Priority: 100, Follow: "relay-a1"}, "master"},
		{topology.NodeSpec{ID: "A-M-Backup", Site: "A", Candidate: true, Priority: 100, Follow: "relay-a1"}, "backup"},
		{topology.NodeSpec{ID: "A-S-1", Site: "A", Follow: "relay-a1"}, "replica"},
		{topology.NodeSpec{ID: "A-S-2", Site: "A", Follow: "relay-a2"}, "replica"},
		{topology.NodeSpec{ID: "B-M-Backup", Site: "B", Candidate: true, Priority: 50, Follow: "relay-b"}, "backup"},
		{topology.NodeSpec{ID: "B-S-1", Site: "B", Follow: "relay-b"}, "replica"},
		{topology.NodeSpec{ID: "B-S-2", Site: "B", Follow: "relay-b"}, "replica"},
		{topology.NodeSpec{ID: "C-S-1", Site: "C", Follow: "relay-c"}, "replica"},
		{topology.NodeSpec{ID: "C-S-2", Site: "C", Follow: "relay-c"}, "replica"},
	}
	// The live edit: relay-c moves from relay-a1 to relay-b.
	reparentRelay, reparentTo = "relay-c", "relay-b"
)

// seedTopology returns the seed topology with the given addresses: the
// relays' (redis and grpc) and the nodes' (redis), by id.
func seedTopology(relayRedis, relayGRPC, nodeRedis map[string]string) *topology.Topology {
	t := topology.New()
	t.Master = seedMaster
	for _, s := range seedSites {
		t.Sites[s.Name] = s
	}
	for _, r := range seedRelays {
		r.RedisAddr, r.GRPCAddr = relayRedis[r.ID], relayGRPC[r.ID]
		t.Relays[r.ID] = r
	}
	for _, n := range seedNodes {
		s := n.spec
		s.RedisAddr = nodeRedis[s.ID]
		t.Nodes[s.ID] = s
	}
	return t
}

// fabricState is what the demo keeps of the control plane.
type fabricState struct {
	top      *topology.Topology // as applied
	revision int64
	// The live edit, once made.
	reparented bool
	reparent   error // why it failed, if it did
}

// startFabric starts the topology under the control plane: every
// redis-server, the seed topology applied to etcd, the relays taking their
// upstreams from it and a node agent beside every redis-server.
func (d *demo) startFabric(ctx context.Context) error {
	rctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	d.rerunRelay = func(rn *relayNode) { d.runRelay(rctx, rn) }
	nodeRedis := map[string]string{}
	for _, n := range seedNodes {
		var extra []string
		if n.spec.ID == seedMaster {
			extra = []string{"--repl-backlog-size", "64mb"}
		}
		// Every redis-server starts as a plain master: its node agent
		// points it where the topology says.
		s, err := d.startRedis(ctx, n.spec.ID, n.spec.Site, n.role, extra...)
		if err != nil {
			return err
		}
		s.follows = n.spec.Follow
		if n.spec.ID == seedMaster {
			d.master = s
			s.follows = ""
		}
		nodeRedis[n.spec.ID] = s.addr()
	}
	relayRedis, relayGRPC := map[string]string{}, map[string]string{}
	var cfgs []relay.Config
	for _, r := range seedRelays {
		cfg, err := d.relayConfig(r.ID, r.Site)
		if err != nil {
			return err
		}
		cfgs = append(cfgs, cfg)
		relayRedis[r.ID], relayGRPC[r.ID] = cfg.RedisAddr, d.advertiseGRPC(r.ID, cfg.GRPCAddr)
	}
	top := seedTopology(relayRedis, relayGRPC, nodeRedis)
	actx, acancel := context.WithTimeout(ctx, 10*time.Second)
	rev, err := topology.Apply(actx, d.cli, d.o.Cluster, top)
	acancel()
	if err != nil {
		return fmt.Errorf("apply the seed topology: %w", err)
	}
	d.ctl = &fabricState{top: top, revision: rev}
	how := "given with --etcd"
	if d.etcd != nil {
		how = "run by the demo, data in " + d.etcd.dir
	}
	fmt.Fprintf(d.o.Out, "\nControl plane: etcd at %s (%s).\n", strings.Join(d.endpoints, ","), how)
	fmt.Fprintf(d.o.Out, "The seed topology (the shape of deploy/topology.yaml) is applied under %s at revision %d;\n",
		topology.ClusterPrefix(d.o.Cluster), rev)
	fmt.Fprintf(d.o.Out, "the relays take their upstreams from it and a node agent beside every redis-server points it\n"+
		"at its site's relay (%s stays the master).\n", seedMaster)

	// The relays: upstreams from etcd, status on a lease. A relay starts
	// once its parent holds data, so none starts with a refused
	// subscription to show in its status.
	for i, r := range seedRelays {
		if parent, ok := top.Relays[r.Upstream]; ok {
			if err := d.waitSynced(ctx, d.relay(parent.ID)); err != nil {
				return err
			}
		}
		cfg := cfgs[i]
		rn := newRelayNode(cfg, r.Upstream)
		if r.Upstream == topology.UpstreamMaster {
			rn.follows = seedMaster
		}
		d.relays = append(d.relays, rn)
		rn.cfg = cfg
		d.runRelay(rctx, rn)
	}
	for _, rn := range d.relays {
		if err := d.waitSynced(ctx, rn); err != nil {
			return err
		}
	}
	// A node agent beside every redis-server.
	for _, n := range d.nodes {
		if err := d.startAgent(rctx, n); err != nil {
			return err
		}
	}
	fmt.Fprintf(d.o.Out, "\nWhile it runs, look at it from another terminal (arbor = go run ./cmd/arbor):\n")
	fmt.Fprintf(d.o.Out, "  arbor status --etcd %s --cluster %s --watch\n", strings.Join(d.endpoints, ","), d.o.Cluster)
	fmt.Fprintf(d.o.Out, "  arbor dashboard --etcd %s --cluster %s --listen 127.0.0.1:8080   # then open http://127.0.0.1:8080/\n", strings.Join(d.endpoints, ","), d.o.Cluster)
	fmt.Fprintf(d.o.Out, "  arbor topology get --etcd %s --cluster %s\n", strings.Join(d.endpoints, ","), d.o.Cluster)
	return nil
}

// runRelay runs relay rn under the control plane until ctx ends or the
// relay is stopped (its own cancel, kept in rn).
func (d *demo) runRelay(ctx context.Context, rn *relayNode) {
	ctx, rn.cancel = context.WithCancel(ctx)
	started, exited := make(chan struct{}), make(chan struct{})
	rn.started, rn.exited = started, exited
	f := fabric.Relay{
		Config: rn.cfg, Etcd: d.cli, Cluster: d.o.Cluster, Logger: d.o.Logger.With("relay", rn.cfg.ID),
		Started: func(r *relay.Relay) { rn.r = r; close(started) },
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer close(exited)
		if err := f.Run(ctx); err != nil {
			d.o.Logger.Error("relay stopped with an error", "relay", rn.cfg.ID, "err", err)
		}
	}()
}

// waitSynced waits until relay rn runs (it read its spec from etcd) and
// made its first sync with its upstream.
func (d *demo) waitSynced(ctx context.Context, rn *relayNode) error {
	timeout := time.After(relayStartTimeout)
	select {
	case <-rn.started:
	case <-rn.exited:
		return fmt.Errorf("relay %s stopped at start (see the log above)", rn.name)
	case <-timeout:
		return fmt.Errorf("relay %s did not start within %v", rn.name, relayStartTimeout)
	case <-ctx.Done():
		return ctx.Err()
	}
	for infoInt(ctx, rn.client, "stats", "arbor_upstream_full_syncs") < 1 {
		select {
		case <-rn.exited:
			return fmt.Errorf("relay %s stopped at start (see the log above)", rn.name)
		case <-timeout:
			return fmt.Errorf("relay %s made no first sync within %v", rn.name, relayStartTimeout)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// reparentDelay is when, after the load started, the live edit is made:
// halfway through the load, at most 5 s in; 3 s in for a load until
// Ctrl-C.
func reparentDelay(load time.Duration) time.Duration {
	if load <= 0 {
		return 3 * time.Second
	}
	return min(max(load/2, 300*time.Millisecond), 5*time.Second)
}

// reparent makes the live edit: relay-c's key, with upstream relay-b, put
// into etcd as `etcdctl put` would; then it waits until relay-c streams
// from relay-b and says whether it needed a full sync.
func (d *demo) reparent(ctx context.Context) {
	st := d.ctl
	rn := d.relay(reparentRelay)
	from := st.top.Relays[reparentRelay].Upstream
	// Wait for the relay's first sync, so the edit moves a working link.
	deadline := time.Now().Add(reparentTimeout)
	for infoInt(ctx, rn.client, "stats", "arbor_upstream_full_syncs") < 1 {
		if ctx.Err() != nil {
			return
		}
		if time.Now().After(deadline) {
			st.reparent = fmt.Errorf("%s had not synced from %s yet: no live edit", reparentRelay, from)
			fmt.Fprintf(d.o.Out, "\n%s\n", st.reparent)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	stats := infoMap(ctx, rn.client, "stats")
	full0, partial0 := infoField(stats, "arbor_upstream_full_syncs"), infoField(stats, "arbor_upstream_partial_syncs")

	next := st.top.Clone()
	spec := next.Relays[reparentRelay]
	spec.Upstream = reparentTo
	next.Relays[reparentRelay] = spec
	key := topology.RelayKey(d.o.Cluster, reparentRelay)
	enc, err := topology.Encode(next)
	if err != nil {
		st.reparent = err
		return
	}
	value := enc[strings.TrimPrefix(key, topology.Prefix(d.o.Cluster))]
	var compact bytes.Buffer
	if json.Compact(&compact, value) == nil {
		value = compact.Bytes()
	}
	fmt.Fprintf(d.o.Out, "\n[%s] Live re-parenting through etcd: %s moves from %s to %s, as this would do:\n  etcdctl --endpoints %s put %s '%s'\n",
		time.Now().Format("15:04:05"), reparentRelay, from, reparentTo, strings.Join(d.endpoints, ","), key, value)
	began := time.Now()
	pctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_, err = d.cli.Put(pctx, key, string(value))
	cancel()
	if err != nil {
		st.reparent = fmt.Errorf("put %s: %w", key, err)
		fmt.Fprintf(d.o.Out, "  FAILED: %v\n", st.reparent)
		return
	}
	st.top = next
	want := "arbor://" + d.relay(reparentTo).grpcAddr
	deadline = time.Now().Add(reparentTimeout)
	for {
		if ctx.Err() != nil {
			fmt.Fprintf(d.o.Out, "  (interrupted before %s followed %s)\n", reparentRelay, reparentTo)
			return
		}
		info := infoMap(ctx, rn.client, "all")
		full, partial := infoField(info, "arbor_upstream_full_syncs"), infoField(info, "arbor_upstream_partial_syncs")
		if info["arbor_upstream"] == want && partial > partial0 {
			took := time.Since(began).Round(time.Millisecond)
			if full != full0 {
				st.reparent = fmt.Errorf("%s needed a full sync to follow %s (arbor_upstream_full_syncs %d → %d)", reparentRelay, reparentTo, full0, full)
				fmt.Fprintf(d.o.Out, "  FAILED: %v\n", st.reparent)
				return
			}
			st.reparented = true
			fmt.Fprintf(d.o.Out, "  %s follows %s %v after the put, resumed with a partial resync: arbor_upstream_full_syncs still %d, partial syncs %d → %d.\n",
				reparentRelay, reparentTo, took, full, partial0, partial)
			return
		}
		if time.Now().After(deadline) {
			st.reparent = fmt.Errorf("%s did not follow %s within %v (upstream %s, partial syncs %d)", reparentRelay, reparentTo, reparentTimeout, info["arbor_upstream"], partial)
			fmt.Fprintf(d.o.Out, "  FAILED: %v\n", st.reparent)
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (d *demo) relay(name string) *relayNode {
	for _, rn := range d.relays {
		if rn.name == name {
			return rn
		}
	}
	panic("demo: no relay " + name)
}

// showFabric prints the fabric as `arbor status` shows it, once the
// published statuses caught up with the final offsets (or after a few
// seconds).
func (d *demo) showFabric(ctx context.Context) {
	var v *statusview.Fabric
	var err error
	deadline := time.Now().Add(fabricSettle)
	for {
		v, err = statusview.Read(ctx, d.cli, d.o.Cluster)
		if err == nil && settled(v) || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Fprintf(d.o.Out, "\nThe fabric as `arbor status --etcd %s --cluster %s` shows it:\n\n", strings.Join(d.endpoints, ","), d.o.Cluster)
	if err != nil {
		fmt.Fprintf(d.o.Out, "  (cannot read it: %v)\n", err)
		return
	}
	v.Render(d.o.Out)
}

// settled reports whether every component of v publishes a status and all
// stand at the same offset, with no problem.
func settled(v *statusview.Fabric) bool {
	var off int64 = -1
	same := func(o int64) bool {
		if off < 0 {
			off = o
		}
		return o == off
	}
	for _, r := range v.Relays {
		// (A relay's last error is the last since it started: history.)
		if !r.Live || r.Link != "streaming" || !same(r.StoredOffset) {
			return false
		}
	}
	for _, n := range v.Nodes {
		if !n.Live || !n.Healthy || n.LastError != "" || !same(n.Offset) {
			return false
		}
	}
	return v.TopologyValid
}

// fabricVerdict reports the re-parenting and how each remote site got the
// stream.
func (d *demo) fabricVerdict() {
	var raw, wire, shared uint64
	for _, rn := range d.relays {
		c := rn.r.Status().GetCompression()
		raw, wire, shared = raw+c.GetRawBytes(), wire+c.GetWireBytes(), shared+c.GetSharedRawBytes()
	}
	for _, rn := range d.relays {
		if rn.site == "A" {
			continue
		}
		from := rn.follows
		if rn.name == reparentRelay && d.ctl.reparented {
			from += ", then " + reparentTo
		}
		fmt.Fprintf(d.o.Out, "Site %s pulled the stream once over gRPC (from %s): %d bytes stored.\n", rn.site, from, rn.r.Status().GetStoredOffset())
	}
	fmt.Fprintf(d.o.Out, "Relay-to-relay links carried %d bytes on the wire for %d raw (zstd, %.1fx); %d raw bytes went out in frames compressed once for all of a relay's children.\n",
		wire, raw, ratio(raw, wire), shared)
	switch {
	case d.ctl.reparent != nil:
		d.sum.fail("live re-parenting: %v", d.ctl.reparent)
	case d.ctl.reparented:
		d.sum.Reparented = true
		fmt.Fprintf(d.o.Out, "OK: %s was re-parented live through etcd (to %s) with no full sync.\n", reparentRelay, reparentTo)
	}
}

// explore prints, with Options.Keep, the commands to look at the fabric
// left running.
func (d *demo) explore() {
	fmt.Fprintf(d.o.Out, "\n--keep: the fabric keeps running (no write load) until Ctrl-C. Explore it:\n")
	for _, n := range d.nodes {
		if n.name == seedMaster || n.name == failoverTarget || n.name == "C-S-1" {
			fmt.Fprintf(d.o.Out, "  redis-cli -p %d info replication      # %s\n", n.port, n.name)
		}
	}
	for _, rn := range d.relays {
		if rn.name == "relay-a1" || rn.name == reparentRelay {
			fmt.Fprintf(d.o.Out, "  redis-cli -p %d info arbor              # %s's Redis side\n", rn.port, rn.name)
			fmt.Fprintf(d.o.Out, "  grpcurl -plaintext %s arbor.v1.RelayService/Status   # %s's gRPC (reflection on)\n", rn.grpcAddr, rn.name)
		}
	}
	fmt.Fprintf(d.o.Out, "  (files: logs, relay data, etcd in %s)\n", d.o.Dir)
	if d.cli == nil {
		return
	}
	ep := strings.Join(d.endpoints, ",")
	fmt.Fprintf(d.o.Out, "  etcdctl --endpoints %s get --prefix %s\n", ep, topology.ClusterPrefix(d.o.Cluster))
	fmt.Fprintf(d.o.Out, "  arbor status --etcd %s --cluster %s --watch\n", ep, d.o.Cluster)
	fmt.Fprintf(d.o.Out, "  arbor dashboard --etcd %s --cluster %s --listen 127.0.0.1:8080   # then open http://127.0.0.1:8080/\n", ep, d.o.Cluster)
	fmt.Fprintf(d.o.Out, "  arbor switchover --to %s --etcd %s --cluster %s\n", failoverTarget, ep, d.o.Cluster)
}
