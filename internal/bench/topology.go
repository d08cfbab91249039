package bench

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/arbor-fabric/arbor/internal/resp"
)

// masterOffset returns the master_repl_offset of s.
func masterOffset(ctx context.Context, s *server) (int64, error) {
	m, err := infoOn(ctx, s.addr, "replication")
	if err != nil {
		return 0, err
	}
	return infoInt(m, "master_repl_offset")
}

// fullSyncs returns how many full syncs s has served (INFO stats
// sync_full), rdb-only snapshot requests of a relay included.
func fullSyncs(ctx context.Context, s *server) (int64, error) {
	m, err := infoOn(ctx, s.addr, "stats")
	if err != nil {
		return 0, err
	}
	return infoInt(m, "sync_full")
}

// replconfCalls returns how many REPLCONF commands s has served (its
// replicas' ACKs, mostly), from INFO commandstats.
func replconfCalls(ctx context.Context, s *server) (int64, error) {
	m, err := infoOn(ctx, s.addr, "commandstats")
	if err != nil {
		return 0, err
	}
	return parseCalls(m["cmdstat_replconf"])
}

// parseCalls reads calls=N from a commandstats value
// ("calls=3,usec=12,..."); 0 when the command never ran (no value).
func parseCalls(v string) (int64, error) {
	if v == "" {
		return 0, nil
	}
	for _, f := range strings.Split(v, ",") {
		if n, ok := strings.CutPrefix(f, "calls="); ok {
			return strconv.ParseInt(n, 10, 64)
		}
	}
	return 0, fmt.Errorf("commandstats %q: no calls=", v)
}

// poll calls check every interval until it reports done, one of procs
// exits, ctx ends or timeout passes; what names the wait in errors. An
// error of check does not end the wait: the last one is reported if it
// times out.
func poll(ctx context.Context, timeout, every time.Duration, what string, procs []*server, check func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		for _, p := range procs {
			if p.exited() {
				return fmt.Errorf("%s: %w", what, p.exitError())
			}
		}
		done, err := check()
		if done && err == nil {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("%s: %w (last: %v)", what, ctx.Err(), last)
			}
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-time.After(every):
		}
	}
}

// waitLinked waits until every replica (or relay) reports its master link
// up.
func waitLinked(ctx context.Context, replicas ...*server) error {
	for _, s := range replicas {
		c, err := dial(ctx, s.addr)
		if err != nil {
			return err
		}
		var status string
		err = poll(ctx, linkTimeout, pollInterval, s.name+" link", replicas, func() (bool, error) {
			m, err := c.info("replication")
			if err != nil {
				return false, err
			}
			status = m["master_link_status"]
			return status == "up", nil
		})
		c.close()
		if err != nil {
			return fmt.Errorf("%w; master_link_status %q", err, status)
		}
	}
	return nil
}

// waitCaughtUp reads the master's offset and waits until every replica (or
// relay) has reached it; it returns that offset.
func waitCaughtUp(ctx context.Context, master *server, replicas ...*server) (int64, error) {
	target, err := masterOffset(ctx, master)
	if err != nil {
		return 0, err
	}
	all := append([]*server{master}, replicas...)
	for _, s := range replicas {
		c, err := dial(ctx, s.addr)
		if err != nil {
			return 0, err
		}
		var off int64
		err = poll(ctx, catchUpTimeout, pollInterval, s.name+" catching up", all, func() (bool, error) {
			m, err := c.info("replication")
			if err != nil {
				return false, err
			}
			off, err = infoInt(m, "slave_repl_offset")
			return off >= target, err
		})
		c.close()
		if err != nil {
			return 0, fmt.Errorf("%w; offset %d, master's %d", err, off, target)
		}
	}
	return target, nil
}

// compareDigests compares the DEBUG DIGEST of each replica with its
// master's, read once. All must be quiet (caught up, no load).
func compareDigests(ctx context.Context, phase string, master *server, replicas ...*server) ([]DigestCheck, error) {
	md, err := digest(ctx, master.addr)
	if err != nil {
		return nil, err
	}
	out := make([]DigestCheck, 0, len(replicas))
	for _, r := range replicas {
		rd, err := digest(ctx, r.addr)
		if err != nil {
			return nil, err
		}
		out = append(out, DigestCheck{
			Phase:         phase,
			Replica:       r.name,
			Master:        master.name,
			ReplicaDigest: string(rd.Str),
			MasterDigest:  string(md.Str),
			Match:         string(rd.Str) == string(md.Str),
		})
	}
	return out, nil
}

// digest runs DEBUG DIGEST on addr, allowing for a large dataset (the
// server reads all of it); should ctx end first, it returns at once, so
// that an interrupted benchmark kills its processes without waiting.
func digest(ctx context.Context, addr string) (resp.Value, error) {
	c, err := dial(ctx, addr)
	if err != nil {
		return resp.Value{}, err
	}
	defer c.close()
	stop := context.AfterFunc(ctx, c.close)
	defer stop()
	c.timeout = digestTimeout
	v, err := c.do("DEBUG", "DIGEST")
	if err != nil && ctx.Err() != nil {
		return v, context.Cause(ctx)
	}
	return v, err
}
