package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// replInfo is what INFO replication says of a Redis.
type replInfo struct {
	role       string // "master" or "slave"
	masterAddr string // host:port of its master; replicas only
	linkUp     bool   // master_link_status:up; replicas only
	syncing    bool   // master_sync_in_progress:1; replicas only
	replid     string
	replid2    string // master_replid2: the previous history, up to second_repl_offset
	offset     int64
	readOffset int64 // slave_read_repl_offset: stream bytes read, whole commands or not; replicas only (else offset)
	replicas   int   // connected_slaves
	loading    bool  // the Redis is loading its dataset
}

// newRedisClient returns a client for the agent's Redis: one connection,
// no retries (the next check is the retry), RESP2.
func newRedisClient(t redisTarget, timeout time.Duration) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:                  t.addr,
		Username:              t.user,
		Password:              t.password,
		Protocol:              2,
		DisableIdentity:       true,
		MaxRetries:            -1,
		DialerRetries:         1, // one dial per check: a dead Redis is seen at once
		DialTimeout:           timeout,
		ReadTimeout:           timeout,
		WriteTimeout:          timeout,
		ContextTimeoutEnabled: true,
		PoolSize:              1,
		MaintNotificationsConfig: &maintnotifications.Config{
			Mode: maintnotifications.ModeDisabled,
		},
	})
}

// probe reads INFO replication and persistence (for "loading").
func probe(ctx context.Context, c *redis.Client) (replInfo, error) {
	text, err := c.Info(ctx, "replication", "persistence").Result()
	if err != nil {
		return replInfo{}, err
	}
	return parseReplInfo(text)
}

// infoFields splits an INFO reply into its key:value fields.
func infoFields(text string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = v
		}
	}
	return m
}

// parseReplInfo parses the fields of INFO replication and persistence the
// agent needs.
func parseReplInfo(text string) (replInfo, error) {
	m := infoFields(text)
	var r replInfo
	r.role = m["role"]
	if r.role != "master" && r.role != "slave" {
		return replInfo{}, fmt.Errorf("INFO replication: role %q", r.role)
	}
	off, err := strconv.ParseInt(m["master_repl_offset"], 10, 64)
	if err != nil {
		return replInfo{}, fmt.Errorf("INFO replication: master_repl_offset %q", m["master_repl_offset"])
	}
	r.offset = off
	r.replid = m["master_replid"]
	r.replid2 = m["master_replid2"]
	r.replicas, _ = strconv.Atoi(m["connected_slaves"])
	r.loading = m["loading"] == "1"
	r.readOffset = r.offset
	if v, err := strconv.ParseInt(m["slave_read_repl_offset"], 10, 64); err == nil && v > r.offset {
		r.readOffset = v
	}
	if r.role == "slave" {
		r.masterAddr = net.JoinHostPort(m["master_host"], m["master_port"])
		r.linkUp = m["master_link_status"] == "up"
		r.syncing = m["master_sync_in_progress"] == "1"
	}
	return r, nil
}

// dataCount reads how many keys (all databases) and function libraries
// the Redis holds, from INFO keyspace and memory.
func dataCount(ctx context.Context, c *redis.Client) (keys, libraries int64, err error) {
	text, err := c.Info(ctx, "keyspace", "memory").Result()
	if err != nil {
		return 0, 0, err
	}
	for k, v := range infoFields(text) {
		switch {
		case k == "number_of_libraries":
			if libraries, err = strconv.ParseInt(v, 10, 64); err != nil {
				return 0, 0, fmt.Errorf("INFO memory: number_of_libraries %q", v)
			}
		case strings.HasPrefix(k, "db"):
			// db0:keys=12,expires=0,avg_ttl=0
			f, _, _ := strings.Cut(v, ",")
			n, ok := strings.CutPrefix(f, "keys=")
			if !ok {
				return 0, 0, fmt.Errorf("INFO keyspace: %s %q", k, v)
			}
			kn, err := strconv.ParseInt(n, 10, 64)
			if err != nil {
				return 0, 0, fmt.Errorf("INFO keyspace: %s %q", k, v)
			}
			keys += kn
		}
	}
	return keys, libraries, nil
}

// replicaOf points the Redis at addr (host:port), or makes it a master
// when addr is empty.
func replicaOf(ctx context.Context, c *redis.Client, addr string) error {
	if addr == "" {
		return c.Do(ctx, "REPLICAOF", "NO", "ONE").Err()
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	return c.Do(ctx, "REPLICAOF", host, port).Err()
}

// fenceRedis fences a Redis that must take no more writes (a master that
// lost the election): CLIENT PAUSE WRITE for pause, then REPLICAOF follow,
// then CLIENT UNPAUSE, the demoted Redis refusing writes itself. Each step
// is tried even if the one before failed (a pause an ACL refuses must not
// stop the demotion). Without a follow address, or if the demotion fails,
// the Redis stays paused: resumed, a master would take writes the new
// master never sees.
func fenceRedis(ctx context.Context, c *redis.Client, pause time.Duration, follow string) error {
	var errs []error
	if err := c.Do(ctx, "CLIENT", "PAUSE", strconv.FormatInt(pause.Milliseconds(), 10), "WRITE").Err(); err != nil {
		errs = append(errs, fmt.Errorf("CLIENT PAUSE WRITE: %w", err))
	}
	if follow == "" {
		return errors.Join(errs...)
	}
	if err := replicaOf(ctx, c, follow); err != nil {
		return errors.Join(append(errs, fmt.Errorf("demote to %s: %w", follow, err))...)
	}
	_ = c.Do(ctx, "CLIENT", "UNPAUSE").Err()
	return errors.Join(errs...)
}
