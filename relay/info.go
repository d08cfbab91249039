package relay

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/arbor-fabric/arbor/internal/resp"
)

// protocolVersion is the Redis version whose replication protocol the relay
// speaks; INFO reports it as redis_version for tools that check it.
const protocolVersion = "7.0.0"

// Version is Arbor's version, set at build time with -ldflags.
var Version = "dev"

func sortReplicas(rs []*replica) {
	slices.SortFunc(rs, func(a, b *replica) int { return int(a.id - b.id) })
}

// info renders INFO in Redis' format. Sections: server, clients,
// replication, stats, arbor; "default", "all" and "everything" give all.
func (r *Relay) info(section string) string {
	var b strings.Builder
	all := section == "default" || section == "all" || section == "everything"
	add := func(name string, fn func(*strings.Builder)) {
		if all || section == name {
			if b.Len() > 0 {
				b.WriteString("\r\n")
			}
			fmt.Fprintf(&b, "# %s\r\n", strings.ToUpper(name[:1])+name[1:])
			fn(&b)
		}
	}
	add("server", r.infoServer)
	add("clients", r.infoClients)
	add("replication", r.infoReplication)
	add("stats", r.infoStats)
	add("arbor", r.infoArbor)
	return b.String()
}

func kv(b *strings.Builder, key string, val any) {
	fmt.Fprintf(b, "%s:%v\r\n", key, val)
}

func (r *Relay) infoServer(b *strings.Builder) {
	_, port, _ := net.SplitHostPort(r.ln.Addr().String())
	kv(b, "redis_version", protocolVersion)
	kv(b, "redis_mode", "standalone")
	kv(b, "arbor_version", Version)
	kv(b, "arbor_role", "relay")
	kv(b, "os", runtime.GOOS+" "+runtime.GOARCH)
	kv(b, "process_id", os.Getpid())
	kv(b, "run_id", r.runID)
	kv(b, "tcp_port", port)
	kv(b, "uptime_in_seconds", int64(time.Since(r.started).Seconds()))
}

func (r *Relay) infoClients(b *strings.Builder) {
	kv(b, "connected_clients", r.stats.connectedClients.Load())
	kv(b, "maxclients", r.cfg.MaxClients)
}

// infoReplication describes the relay as Redis describes a replica that has
// replicas of its own: the upstream link, then its replicas, then the
// replication IDs and offsets (which are the upstream master's).
func (r *Relay) infoReplication(b *strings.Builder) {
	st := r.store.State()
	host, port, _ := net.SplitHostPort(r.currentUpstream().Addr)
	r.link.mu.Lock()
	state, downSince := r.link.state, r.link.downSince
	syncBytes, syncTotal, syncStarted := r.link.syncBytes, r.link.syncTotal, r.link.syncStarted
	r.link.mu.Unlock()
	kv(b, "role", "slave")
	kv(b, "master_host", host)
	kv(b, "master_port", port)
	linkUp := state == "connected"
	kv(b, "master_link_status", map[bool]string{true: "up", false: "down"}[linkUp])
	lastIOSecs := int64(-1)
	if idle, ok := r.link.idle(); ok {
		lastIOSecs = int64(idle.Seconds())
	}
	kv(b, "master_last_io_seconds_ago", lastIOSecs)
	inSync := state == "sync"
	kv(b, "master_sync_in_progress", boolInt(inSync))
	if inSync {
		kv(b, "master_sync_total_bytes", syncTotal)
		kv(b, "master_sync_read_bytes", syncBytes)
		kv(b, "master_sync_last_io_seconds_ago", lastIOSecs)
		kv(b, "master_sync_elapsed_seconds", int64(time.Since(syncStarted).Seconds()))
	}
	kv(b, "slave_read_repl_offset", st.End)
	kv(b, "slave_repl_offset", st.End)
	if !linkUp {
		kv(b, "master_link_down_since_seconds", int64(time.Since(downSince).Seconds()))
	}
	// A relay must never be promoted by Sentinel or similar tools.
	kv(b, "slave_priority", 0)
	kv(b, "slave_read_only", 1)
	kv(b, "replica_announced", 1)
	rs := r.replicas.list()
	kv(b, "connected_slaves", len(rs))
	now := time.Now()
	for i, rp := range rs {
		ack := rp.ackOffset.Load()
		lag := int64(now.Sub(time.Unix(0, rp.ackTime.Load())).Seconds())
		fmt.Fprintf(b, "slave%d:ip=%s,port=%d,state=%s,offset=%d,lag=%d,arbor_lag_bytes=%d\r\n",
			i, rp.addr, rp.listeningPort, rp.state.Load(), ack, lag, max(0, st.End-ack))
	}
	kv(b, "master_failover_state", "no-failover")
	replid, replid2 := st.Replid, st.Replid2
	if replid == "" {
		replid = strings.Repeat("0", 40)
	}
	if replid2 == "" {
		replid2 = strings.Repeat("0", 40)
	}
	kv(b, "master_replid", replid)
	kv(b, "master_replid2", replid2)
	kv(b, "master_repl_offset", st.End)
	kv(b, "second_repl_offset", st.SecondOffset)
	kv(b, "repl_backlog_active", boolInt(st.HasData()))
	kv(b, "repl_backlog_size", r.cfg.BacklogSize)
	kv(b, "repl_backlog_first_byte_offset", st.Start+1)
	kv(b, "repl_backlog_histlen", st.End-st.Start)
}

func (r *Relay) infoStats(b *strings.Builder) {
	kv(b, "total_connections_received", r.stats.totalConnections.Load())
	kv(b, "total_commands_processed", r.stats.totalCommands.Load())
	kv(b, "rejected_connections", r.stats.rejectedConnections.Load())
	kv(b, "sync_full", r.stats.fullSyncs.Load())
	kv(b, "sync_partial_ok", r.stats.partialOK.Load())
	kv(b, "sync_partial_err", r.stats.partialErr.Load())
	kv(b, "total_net_repl_input_bytes", r.stats.upstreamBytes.Load())
	kv(b, "total_net_repl_output_bytes", r.stats.replicaOutputByte.Load())
	kv(b, "arbor_upstream_full_syncs", r.stats.upstreamFull.Load())
	kv(b, "arbor_upstream_partial_syncs", r.stats.upstreamPartial.Load())
	kv(b, "arbor_parent_moves", r.stats.parentMoves.Load())
	kv(b, "arbor_upstream_rejected_streams", r.stats.rejectedStreams.Load())
	kv(b, "arbor_upstream_rejected_snapshots", r.stats.rejectedSnapshots.Load())
	kv(b, "arbor_cut_through_syncs", r.stats.cutThroughSyncs.Load())
	kv(b, "arbor_cut_through_early_bytes", r.stats.cutThroughEarly.Load())
	kv(b, "arbor_cut_through_cut", r.stats.cutThroughCut.Load())
}

func (r *Relay) infoArbor(b *strings.Builder) {
	st := r.store.State()
	kv(b, "arbor_id", r.cfg.ID)
	kv(b, "arbor_site", r.cfg.Site)
	kv(b, "arbor_upstream", r.currentUpstream().String())
	kv(b, "arbor_stored_offset", st.End)
	kv(b, "arbor_durable_offset", st.Durable)
	kv(b, "arbor_backlog_start", st.Start)
	kv(b, "arbor_backlog_bytes", st.BacklogBytes)
	kv(b, "arbor_fsync", r.cfg.Fsync)
	kv(b, "arbor_ack_policy", r.ackPolicy.String())
	kv(b, "arbor_acked_offset", r.upstreamAck(st, r.currentUpstream().Kind == UpstreamRedis))
	storeErr := ""
	if err := r.store.Err(); err != nil {
		storeErr = err.Error()
	}
	kv(b, "arbor_store_error", strings.ReplaceAll(storeErr, "\r\n", " "))
	if st.Snapshot != nil {
		kv(b, "arbor_snapshot_offset", st.Snapshot.Offset)
		kv(b, "arbor_snapshot_bytes", st.Snapshot.Size)
		kv(b, "arbor_snapshot_rdb_version", st.Snapshot.RDBVersion)
	}
	r.link.mu.Lock()
	lastErr := r.link.lastErr
	r.link.mu.Unlock()
	kv(b, "arbor_upstream_last_error", strings.ReplaceAll(lastErr, "\r\n", " "))
	// Root-to-here lag of the stream received from a parent relay over the
	// last seconds: what the relay tree adds, link latency included.
	p50, p99, mx, n := r.originLag.quantiles(time.Now())
	kv(b, "arbor_tree_lag_window_seconds", lagWindowSeconds)
	kv(b, "arbor_tree_lag_frames", n)
	kv(b, "arbor_tree_lag_p50_us", p50.Microseconds())
	kv(b, "arbor_tree_lag_p99_us", p99.Microseconds())
	kv(b, "arbor_tree_lag_max_us", mx.Microseconds())
	rev, refused := r.topology()
	kv(b, "arbor_topology_revision", rev)
	kv(b, "arbor_topology_error", strings.ReplaceAll(refused, "\r\n", " "))
}

// appendRole renders ROLE as a replica's: slave, master host, port, link
// state, offset.
func (r *Relay) appendRole(b []byte) []byte {
	host, port, _ := net.SplitHostPort(r.currentUpstream().Addr)
	r.link.mu.Lock()
	state := r.link.state
	r.link.mu.Unlock()
	b = resp.AppendArrayHeader(b, 5)
	b = resp.AppendBulkString(b, "slave")
	b = resp.AppendBulkString(b, host)
	var p int64
	fmt.Sscan(port, &p)
	b = resp.AppendInt(b, p)
	b = resp.AppendBulkString(b, state)
	return resp.AppendInt(b, r.store.End())
}

func boolInt(v bool) int {
	if v {
		return 1
	}
	return 0
}
