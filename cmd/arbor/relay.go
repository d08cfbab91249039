package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/arbor-fabric/arbor/internal/fabric"
	"github.com/arbor-fabric/arbor/relay"
	"github.com/arbor-fabric/arbor/topology"
)

const (
	redisPasswordEnv          = "ARBOR_REDIS_PASSWORD"
	snapshotSourcePasswordEnv = "ARBOR_SNAPSHOT_SOURCE_PASSWORD"
)

func newRelayCmd() *cobra.Command {
	def := relay.DefaultConfig()
	cmd := &cobra.Command{
		Use:   "relay",
		Short: "Run a relay: follow a Redis master and serve its replicas",
		Long: `Run a relay. It connects to the upstream Redis master as a replica (PSYNC),
stores the RDB and the command stream under --data-dir, and serves stock
redis-server replicas that run REPLICAOF <relay host> <relay port>.

Settings come from flags, from a YAML file given with --config (keys are the
flag names, e.g. "data-dir: /var/lib/arbor"), and for the passwords from the
` + redisPasswordEnv + ` and ` + snapshotSourcePasswordEnv + ` environment variables. A flag given on the command line
wins over the file. SIGINT or SIGTERM stop the relay gracefully, with the store
flushed.`,
		Example: `  arbor relay --id relay-a1 --site A --data-dir /var/lib/arbor/relay-a1 \
    --upstream redis://127.0.0.1:6379 --redis-addr 0.0.0.0:6380`,
		Args: cobra.NoArgs,
	}
	f := cmd.Flags()
	addConfigFlag(f)
	f.String("id", "", "relay ID (required)")
	f.String("site", "", "site (datacenter) the relay runs in (with --etcd and no --upstream, default: the relay's site in the topology)")
	f.String("data-dir", "", "directory of the relay's store (required, not shared)")
	f.String("upstream", "", "what to follow: a Redis master, redis://[user:password@]host:port, or a parent relay, arbor://host:port (its --grpc-addr); required without --etcd, where the topology says it (and this is used until the topology is read). Without --etcd, a comma-separated list in preference order (arbor://b1:7480,arbor://b2:7480): the relay moves to the next that answers when its link stays down past --move-after-down or silent past --move-after, and back after --hold-down")
	f.String("redis-addr", def.RedisAddr, "address the Redis master side listens on, for REPLICAOF")
	f.String("grpc-addr", "", "address of the gRPC service for child relays, Status, health and reflection (empty: none)")
	f.String("tls-cert", "", "certificate (PEM) this relay presents on gRPC, as server and as client")
	f.String("tls-key", "", "key (PEM) of --tls-cert")
	f.String("tls-ca", "", "CA (PEM) that signs every relay's certificate; peers without one are refused (mutual TLS)")
	f.String("tls-server-name", "", "name to check in the parent relay's certificate (default: its host)")
	f.Bool("plaintext", false, "run relay-to-relay gRPC without TLS (must be explicit)")
	f.String("compression", def.Compression, "preferred compression for child relay links: auto (s2 to a child relay of this relay's --site, zstd to one of another site or when either site is unknown), or zstd, s2 or none on every link")
	f.String("compression-level", def.CompressionLevel, "how hard zstd works on child relay links: fastest, default, better or best (fewer bytes on the link for more CPU per byte, see docs/benchmarks.md)")
	f.Duration("batch-delay", def.BatchDelay, "how long stream bytes may wait to be batched into one frame for a child relay")
	f.Duration("slow-consumer-timeout", def.SlowConsumerTimeout, "cut a child relay whose link accepts nothing for this long")
	f.Duration("subscribe-timeout", def.SubscribeTimeout, "end a Sync stream that sends no subscription within this long")
	f.String("max-child-lag", "512MiB", "cut a child relay that falls this far behind (it resumes from the backlog)")
	f.String("redis-password", "", "password Redis clients and replicas must AUTH with (or $"+redisPasswordEnv+")")
	f.StringSlice("snapshot-source", nil, "Redis server (host:port) trusted to serve a fresher snapshot when the snapshot pins the backlog over --backlog-size, e.g. the site's backup nodes; repeat or comma-separate; none: the upstream is asked (under --etcd: the topology's nodes of this relay's site)")
	f.String("snapshot-source-user", "", "user the relay AUTHs with at its snapshot sources")
	f.String("snapshot-source-password", "", "password the relay AUTHs with at its snapshot sources (or $"+snapshotSourcePasswordEnv+"); the upstream's is never sent to them")
	f.String("backlog-size", "1GiB", "bound on the stream kept on disk (e.g. 512MiB, 4GiB)")
	f.String("fsync", def.Fsync, "when to flush the stream to disk, and so what the relay's acks upstream mean: always (flush every write before it counts: acks survive a power loss, slowest), everysec (acks what was flushed, at most about 1s behind), no (never flush: acks mean only \"written to the OS\", lost with the host)")
	f.String("ack-policy", def.AckPolicy, "what a root relay (redis:// upstream) acks to its master: local (what it durably stored) or remote (only what a relay in another site durably stored, so WAIT 1 on the master means \"survives the loss of this site\"); a relay following a parent relay acks its own durable offset whatever the policy")
	f.Duration("repl-timeout", def.ReplTimeout, "drop a replication link silent for this long")
	f.Duration("upstream-coalesce", def.UpstreamCoalesce, "let a Redis master's stream gather in the relay's socket up to 32 KiB or this long (at most 100ms) before reading it, while it flows: fewer wakeups of the relay, which a master on the same host pays for in its writes, for up to this much more lag per hop (0: read each arrival at once)")
	f.Duration("future-offset-wait", def.FutureOffsetWait, "how long a replica asking for an offset not yet received waits before a full sync")
	f.Duration("handshake-timeout", def.HandshakeTimeout, "close a Redis connection that has not sent PSYNC or SYNC and sends no complete command for this long")
	f.Int("max-clients", def.MaxClients, "cap on Redis connections, replicas included; one more gets \"-ERR max number of clients reached\"")
	f.Duration("trace-every", def.TraceEvery, "how often a root relay samples a stream frame per child relay link for tracing (0: never); spans go to OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set")
	f.Duration("move-after", topology.DefaultSilence, "move to another parent when the link to the parent is up but silent this long, at least 500ms: an idle parent heartbeats every 250 ms (with --etcd, or a list of --upstream URLs)")
	f.Duration("move-after-down", topology.DefaultDown, "move to another parent when the link to the parent, once up, is down (EOF, reset, refused, dial timeout) this long, at least 200ms; not derived from --move-after: raise it above a redial's time (100ms plus about three round trips) on a slow WAN, or to wait out a parent's restart (with --etcd, or a list of --upstream URLs)")
	f.Duration("hold-down", topology.DefaultHoldDown, "return to the declared (or first listed) parent only after it has been healthy this long (with --etcd, or a list of --upstream URLs)")
	f.String("debug-addr", "", "address of an HTTP endpoint with /debug/pprof and Prometheus /metrics (empty: none)")
	f.String("log-level", "info", "log level: debug, info, warn or error")
	f.String("log-format", "text", "log format: text or json")
	ef := addEtcdFlags(f)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := applyConfigFile(cmd.Flags()); err != nil {
			return err
		}
		cfg, logger, err := relayConfig(cmd.Flags())
		if err != nil {
			return err
		}
		ha, err := relayHAConfig(cmd.Flags())
		if err != nil {
			return err
		}
		// A list of upstreams, in preference order: the relay moves along
		// it on its own (without etcd; with it, the topology chooses).
		var upstreams []string
		if strings.Contains(cfg.Upstream, ",") {
			if upstreams, err = fabric.ParseUpstreams(cfg.Upstream); err != nil {
				return fmt.Errorf("--upstream: %w", err)
			}
			if ef.enabled() {
				return errors.New("--upstream: a list of upstreams is for running without --etcd; with it, the topology names the parent and the relay moves by it")
			}
			cfg.Upstream = upstreams[0]
		}
		logger.Info("arbor relay starting", "version", relay.Version)
		debugAddr, _ := cmd.Flags().GetString("debug-addr")
		tel, err := startTelemetry(cmd.Context(), relayServiceName, cfg.ID, debugAddr, logger)
		if err != nil {
			return err
		}
		defer tel.shutdown(cmd.Context(), logger)
		tel.configure(&cfg)
		if ef.enabled() {
			if err := ef.validate(); err != nil {
				return err
			}
			return runRelayWithEtcd(cmd.Context(), cfg, ha, ef, logger.With("relay", cfg.ID))
		}
		if len(upstreams) > 1 {
			return fabric.StaticRelay{Config: cfg, Upstreams: upstreams, Silence: ha.moveAfter, Down: ha.moveAfterDown, HoldDown: ha.holdDown,
				Logger: logger.With("relay", cfg.ID)}.Run(cmd.Context())
		}
		r, err := relay.New(cfg)
		if err != nil {
			return err
		}
		return r.Run(cmd.Context())
	}
	return cmd
}

// relayHA is how a relay moves off a failed parent: --move-after,
// --move-after-down and --hold-down.
type relayHA struct {
	moveAfter, moveAfterDown, holdDown time.Duration
}

func relayHAConfig(fs *pflag.FlagSet) (relayHA, error) {
	var h relayHA
	h.moveAfter, _ = fs.GetDuration("move-after")
	h.moveAfterDown, _ = fs.GetDuration("move-after-down")
	h.holdDown, _ = fs.GetDuration("hold-down")
	if h.moveAfter < topology.MinSilence {
		return h, fmt.Errorf("move-after %v: must be at least %v, or an idle but live link looks silent", h.moveAfter, topology.MinSilence)
	}
	if h.moveAfterDown < topology.MinDown {
		return h, fmt.Errorf("move-after-down %v: must be at least %v, or a relay leaves a parent that cut it before it can redial", h.moveAfterDown, topology.MinDown)
	}
	if h.holdDown < 0 {
		return h, fmt.Errorf("hold-down %v: must not be negative", h.holdDown)
	}
	return h, nil
}

func relayConfig(fs *pflag.FlagSet) (relay.Config, *slog.Logger, error) {
	str := func(name string) string { v, _ := fs.GetString(name); return v }
	dur := func(name string) time.Duration { v, _ := fs.GetDuration(name); return v }
	logger, err := newLogger(str("log-level"), str("log-format"))
	if err != nil {
		return relay.Config{}, nil, err
	}
	size, err := parseSize(str("backlog-size"))
	if err != nil {
		return relay.Config{}, nil, fmt.Errorf("backlog-size: %w", err)
	}
	cfg := relay.DefaultConfig()
	cfg.ID = str("id")
	cfg.Site = str("site")
	cfg.DataDir = str("data-dir")
	cfg.Upstream = str("upstream")
	cfg.RedisAddr = str("redis-addr")
	cfg.GRPCAddr = str("grpc-addr")
	cfg.TLS = relay.TLSConfig{CertFile: str("tls-cert"), KeyFile: str("tls-key"), CAFile: str("tls-ca"), ServerName: str("tls-server-name")}
	cfg.TLS.Plaintext, _ = fs.GetBool("plaintext")
	cfg.Compression = str("compression")
	cfg.CompressionLevel = str("compression-level")
	cfg.BatchDelay = dur("batch-delay")
	cfg.SlowConsumerTimeout = dur("slow-consumer-timeout")
	cfg.SubscribeTimeout = dur("subscribe-timeout")
	if cfg.MaxChildLag, err = parseSize(str("max-child-lag")); err != nil {
		return relay.Config{}, nil, fmt.Errorf("max-child-lag: %w", err)
	}
	cfg.RedisPassword = str("redis-password")
	if cfg.RedisPassword == "" {
		cfg.RedisPassword = os.Getenv(redisPasswordEnv)
	}
	cfg.SnapshotSources, _ = fs.GetStringSlice("snapshot-source")
	cfg.SnapshotSourceUser = str("snapshot-source-user")
	cfg.SnapshotSourcePassword = str("snapshot-source-password")
	if cfg.SnapshotSourcePassword == "" {
		cfg.SnapshotSourcePassword = os.Getenv(snapshotSourcePasswordEnv)
	}
	cfg.BacklogSize = size
	cfg.Fsync = str("fsync")
	cfg.AckPolicy = str("ack-policy")
	cfg.ReplTimeout = dur("repl-timeout")
	cfg.UpstreamCoalesce = dur("upstream-coalesce")
	cfg.FutureOffsetWait = dur("future-offset-wait")
	cfg.HandshakeTimeout = dur("handshake-timeout")
	cfg.MaxClients, _ = fs.GetInt("max-clients")
	cfg.TraceEvery = dur("trace-every")
	cfg.Logger = logger
	return cfg, logger, nil
}
