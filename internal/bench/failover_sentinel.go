package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// sentinelName is the master's name in the sentinels' configuration.
const sentinelName = "arbor"

// sentinelSystem is Redis Sentinel: three sentinels (quorum 2) watch the
// master; the backup has replica-priority 10 and the two read replicas 0
// (never promoted), the same roles Arbor gives them.
type sentinelSystem struct {
	bin       string
	downAfter time.Duration
}

func (s *sentinelSystem) Name() string {
	if s.downAfter == SentinelDefaultDownAfter {
		return "sentinel-default"
	}
	return "sentinel"
}

func (s *sentinelSystem) Settings() string {
	return fmt.Sprintf("3 sentinels, quorum 2, down-after-milliseconds %d", s.downAfter.Milliseconds())
}

func (s *sentinelSystem) Start(ctx context.Context, e *env) (FailoverSetup, error) {
	master, err := e.startRedis(ctx, "master", "")
	if err != nil {
		return nil, err
	}
	set := &sentinelSetup{master: master}
	backup, err := e.startRedis(ctx, "backup", master.addr, "--replica-priority", "10")
	if err != nil {
		return nil, err
	}
	set.others = append(set.others, backup)
	for _, name := range []string{"replica-1", "replica-2"} {
		r, err := e.startRedis(ctx, name, master.addr, "--replica-priority", "0")
		if err != nil {
			return nil, err
		}
		set.others = append(set.others, r)
	}
	lctx, cancel := context.WithTimeout(ctx, linkTimeout)
	defer cancel()
	if _, err := waitStreaming(lctx, linkTimeout, master.addr, set.others); err != nil {
		return nil, err
	}
	mhost, mport, _ := net.SplitHostPort(master.addr)
	for i := range 3 {
		name := fmt.Sprintf("sentinel-%d", i+1)
		sv, err := e.startServer(ctx, name, s.bin, func(host, port string) ([]string, error) {
			dir := filepath.Join(e.dir, name)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, err
			}
			conf := filepath.Join(dir, "sentinel.conf")
			// Sentinel rewrites its configuration file: it must be
			// its own, writable, and given by an absolute path.
			text := fmt.Sprintf("bind %s\nport %s\ndaemonize no\nlogfile \"\"\ndir %s\n"+
				"sentinel monitor %s %s %s 2\nsentinel down-after-milliseconds %s %d\n",
				host, port, dir, sentinelName, mhost, mport, sentinelName, s.downAfter.Milliseconds())
			return []string{conf}, os.WriteFile(conf, []byte(text), 0o644)
		})
		if err != nil {
			return nil, err
		}
		set.sentinels = append(set.sentinels, sv)
	}
	// Ready once every sentinel knows the three replicas and the two other
	// sentinels: before that, a failover may not be possible.
	for _, sv := range set.sentinels {
		if err := waitSentinelReady(lctx, sv); err != nil {
			return nil, err
		}
	}
	return set, nil
}

// waitSentinelReady polls SENTINEL MASTER until the sentinel knows three
// replicas and two other sentinels.
func waitSentinelReady(ctx context.Context, sv *server) error {
	return poll(ctx, linkTimeout, slowPoll, sv.name+" not ready", []*server{sv}, func() (bool, error) {
		v, err := query(ctx, sv.addr, "SENTINEL", "MASTER", sentinelName)
		if err != nil {
			return false, err
		}
		f := map[string]string{}
		for i := 0; i+1 < len(v.Array); i += 2 {
			f[string(v.Array[i].Str)] = string(v.Array[i+1].Str)
		}
		if f["num-slaves"] == "3" && f["num-other-sentinels"] == "2" && f["flags"] == "master" {
			return true, nil
		}
		return false, fmt.Errorf("flags %s, %s replicas, %s other sentinels", f["flags"], f["num-slaves"], f["num-other-sentinels"])
	})
}

// sentinelSetup is one running Sentinel set-up. MasterAddr asks the first
// sentinel (SENTINEL GET-MASTER-ADDR-BY-NAME) on one kept connection, as a
// Sentinel-aware client does.
type sentinelSetup struct {
	master    *server
	others    []*server
	sentinels []*server

	mu sync.Mutex
	c  *conn // to sentinels[0]; nil until first used or after an error
}

func (s *sentinelSetup) Master() *server { return s.master }

// KillMaster kills the master's redis-server: nothing else of Sentinel
// runs on the master's host (the sentinels run apart).
func (s *sentinelSetup) KillMaster(bool)   { s.master.kill() }
func (s *sentinelSetup) Others() []*server { return s.others }

// Switchover sends SENTINEL FAILOVER to the first sentinel: a failover as
// if the master were down, without asking the others for agreement; the
// backup is the only replica of priority > 0. It returns once the sentinel
// accepted it (the failover itself runs on).
func (s *sentinelSetup) Switchover(ctx context.Context) error {
	_, err := query(ctx, s.sentinels[0].addr, "SENTINEL", "FAILOVER", sentinelName)
	return err
}

func (s *sentinelSetup) MasterAddr(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.c == nil {
		c, err := dial(ctx, s.sentinels[0].addr)
		if err != nil {
			return "", err
		}
		s.c = c
	}
	v, err := s.c.do("SENTINEL", "GET-MASTER-ADDR-BY-NAME", sentinelName)
	if err != nil {
		s.c.close()
		s.c = nil
		return "", err
	}
	if len(v.Array) != 2 {
		return "", fmt.Errorf("sentinel: get-master-addr-by-name: %d elements", len(v.Array))
	}
	port, err := strconv.Atoi(string(v.Array[1].Str))
	if err != nil {
		return "", fmt.Errorf("sentinel: get-master-addr-by-name: port %q", v.Array[1].Str)
	}
	return net.JoinHostPort(string(v.Array[0].Str), strconv.Itoa(port)), nil
}

func (s *sentinelSetup) FullSyncs(ctx context.Context, newMaster string) (int64, error) {
	return masterFullSyncs(ctx, newMaster)
}

func (s *sentinelSetup) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.c != nil {
		s.c.close()
		s.c = nil
	}
}
