package redistest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/arbor-fabric/arbor/internal/freeport"
)

const (
	// readyTimeout bounds how long Start and Restart wait for PING to answer.
	readyTimeout = 10 * time.Second
	// stopTimeout bounds a graceful Stop before it falls back to SIGKILL.
	// Redis 7.0 may wait up to shutdown-timeout (10 s) for lagging replicas.
	stopTimeout = 15 * time.Second
	// logTailLines is how much of redis.log a failed test prints.
	logTailLines = 30
	// startAttempts is how often Start retries when the port was taken
	// between FreePort and the bind.
	startAttempts = 5
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago and
// that no other FreePort (or freeport.Get) of this process returned.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := freeport.Get()
	if err != nil {
		t.Fatalf("FreePort: %v", err)
	}
	return port
}

// Server is one real redis-server process on loopback. Its methods are safe
// for concurrent use, but those taking a testing.TB belong on the test
// goroutine.
type Server struct {
	// Port is the TCP port the server listens on; it survives Restart.
	Port int
	// Addr is "127.0.0.1:<Port>".
	Addr string
	// Dir is the server's working directory (--dir): dump.rdb, redis.log
	// and redis.out (the process's stdout and stderr) live there.
	Dir string

	bin      string
	args     []string // everything but --replicaof
	password string
	t        testing.TB // the test that started the server; used for logs

	mu        sync.Mutex
	proc      *process      // running process; nil when stopped
	client    *redis.Client // lazily created by Client
	replicaOf []string      // "host", "port" set by ReplicaOf, kept for Restart
}

// process is one incarnation of the server.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once cmd.Wait returned
	err  error         // cmd.Wait's result; read after done is closed
}

// Start starts redis-server on a free loopback port with its own
// t.TempDir(), no persistence, DEBUG enabled for local clients, a log file
// in Dir and repl-diskless-sync-delay 0, followed by extra (for example
// "--repl-diskless-sync", "no" or "--requirepass", "secret"; a later
// option overrides an earlier one). It returns once PING answers.
//
// The cleanup registered on t SIGKILLs the process group and waits for it,
// closes the cached client and, if the test failed, logs the last lines of
// redis.log. Start skips the test when redis-server is not installed.
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skipf("redistest: redis-server not found: %v", err)
	}
	s := &Server{Dir: t.TempDir(), bin: bin, t: t}
	for i := 0; i+1 < len(extra); i++ {
		if strings.EqualFold(extra[i], "--requirepass") {
			s.password = extra[i+1]
		}
	}
	t.Cleanup(s.cleanup)

	for attempt := 1; ; attempt++ {
		s.Port = FreePort(t)
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
		_ = os.Remove(filepath.Join(s.Dir, "redis.log")) // a failed attempt's log
		s.args = append([]string{
			"--port", strconv.Itoa(s.Port),
			"--bind", "127.0.0.1",
			"--dir", s.Dir,
			"--save", "",
			"--appendonly", "no",
			"--daemonize", "no",
			"--enable-debug-command", "local",
			"--logfile", filepath.Join(s.Dir, "redis.log"),
			"--repl-diskless-sync-delay", "0",
		}, extra...)
		err := s.launch()
		if err == nil {
			return s
		}
		if attempt < startAttempts && s.LogContains("Address already in use") {
			t.Logf("redistest: port %d was taken, retrying: %v", s.Port, err)
			continue
		}
		t.Fatalf("redistest: start redis-server on %s: %v\n%s", s.Addr, err, s.tail())
	}
}

// launch starts a new process with s.args and waits until it answers PING.
func (s *Server) launch() error {
	s.mu.Lock()
	if s.proc != nil {
		s.mu.Unlock()
		return errors.New("already running")
	}
	args := append([]string(nil), s.args...)
	if s.replicaOf != nil {
		args = append(args, "--replicaof", s.replicaOf[0], s.replicaOf[1])
	}
	s.mu.Unlock()

	out, err := os.OpenFile(filepath.Join(s.Dir, "redis.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bin, args...)
	cmd.Dir = s.Dir
	cmd.Stdout = out
	cmd.Stderr = out
	// Its own process group, so a kill also reaches fork children
	// (BGSAVE, diskless sync) that would otherwise outlive the server.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	out.Close() // the child holds its own copy
	if err != nil {
		return err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()

	if err := waitReady(s.Addr, p, readyTimeout); err != nil {
		s.Kill()
		return err
	}
	return nil
}

// waitReady polls PING until the server answers, the process exits or the
// timeout passes.
func waitReady(addr string, p *process, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-p.done:
			return fmt.Errorf("redis-server exited: %v", p.err)
		default:
		}
		err := ping(addr)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no PING reply after %v: %w", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ping sends one inline PING on a fresh connection. A -NOAUTH reply counts
// as ready; -LOADING does not.
func ping(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(time.Second)); err != nil {
		return err
	}
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	line = strings.TrimSpace(line)
	if line == "+PONG" || strings.HasPrefix(line, "-NOAUTH") {
		return nil
	}
	return fmt.Errorf("PING reply %q", line)
}

// Client returns the server's cached go-redis client: RESP2, no CLIENT
// SETINFO, no retries (a retried write could apply twice) and no
// maintenance notifications. It survives Kill and Restart (broken pooled
// connections are dropped) and is closed by the cleanup; do not Close it.
func (s *Server) Client() *redis.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client == nil {
		s.client = redis.NewClient(&redis.Options{
			Addr:                  s.Addr,
			Password:              s.password,
			Protocol:              2,
			DisableIdentity:       true,
			MaxRetries:            -1,
			DialTimeout:           2 * time.Second,
			ReadTimeout:           10 * time.Second,
			WriteTimeout:          10 * time.Second,
			ContextTimeoutEnabled: true,
			PoolSize:              8,
			MaintNotificationsConfig: &maintnotifications.Config{
				Mode: maintnotifications.ModeDisabled,
			},
		})
	}
	return s.client
}

// Running reports whether the server process is running (as far as the
// harness knows: a crashed process counts as not running).
func (s *Server) Running() bool {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// detach takes the current process out of s, so the cleanup no longer
// treats its exit as a crash.
func (s *Server) detach() *process {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.proc
	s.proc = nil
	return p
}

// Kill SIGKILLs the server's process group and waits for the server to
// exit. It does nothing when the server is not running.
func (s *Server) Kill() {
	if p := s.detach(); p != nil {
		killGroup(p)
	}
}

// Pause SIGSTOPs the server's process group: the server keeps its
// sockets (the kernel still accepts connections and buffers what clients
// send) but answers nothing until Resume. It does nothing when the server
// is not running.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume SIGCONTs the server's process group after Pause.
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p != nil {
		_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	}
}

func killGroup(p *process) {
	// The negative pid addresses the group; ESRCH means it is gone.
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Stop shuts the server down with SHUTDOWN NOSAVE (SIGTERM if the command
// cannot be sent) and waits for it to exit, SIGKILLing it after 15 s. Like
// any Redis 7.0 shutdown it first waits up to shutdown-timeout (10 s) for
// lagging replicas. It does nothing when the server is not running.
func (s *Server) Stop() { s.shutdown("NOSAVE") }

// StopSave is Stop with SHUTDOWN SAVE: the server writes dump.rdb first,
// including its replication ID and offset, so that a Restart of a replica
// can continue with a partial resync.
func (s *Server) StopSave() { s.shutdown("SAVE") }

func (s *Server) shutdown(mode string) {
	p := s.detach()
	if p == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	// A successful SHUTDOWN has no reply: the connection just closes. A
	// reply means the server refused (for example a failed SAVE).
	err := s.Client().Do(ctx, "SHUTDOWN", mode).Err()
	var rerr redis.Error
	var operr *net.OpError
	if err == nil || errors.As(err, &rerr) || (errors.As(err, &operr) && operr.Op == "dial") {
		s.t.Logf("redistest: SHUTDOWN %s on %s: %v; sending SIGTERM", mode, s.Addr, err)
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-p.done:
		// The server is gone; kill leftover fork children too.
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	case <-ctx.Done():
		s.t.Logf("redistest: %s did not exit within %v; killing it", s.Addr, stopTimeout)
		killGroup(p)
	}
}

// Restart starts the server again with the same port, directory and
// arguments, so it loads dump.rdb if the directory has one. A replica set
// up with ReplicaOf is restarted as a replica of the same master. A running
// server is killed first. Restart returns once PING answers.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Kill()
	if err := s.launch(); err != nil {
		t.Fatalf("redistest: restart redis-server on %s: %v\n%s", s.Addr, err, s.tail())
	}
}

// LogContains reports whether redis.log contains substr.
func (s *Server) LogContains(substr string) bool {
	b, err := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
	return err == nil && strings.Contains(string(b), substr)
}

// cleanup is registered by Start.
func (s *Server) cleanup() {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	c := s.client
	s.client = nil
	s.mu.Unlock()

	if p != nil {
		select {
		case <-p.done:
			s.t.Logf("redistest: redis-server %s exited on its own: %v", s.Addr, p.err)
		default:
			killGroup(p)
		}
	}
	if c != nil {
		_ = c.Close()
	}
	if s.t.Failed() {
		s.t.Logf("redistest: redis-server %s (dir %s):\n%s", s.Addr, s.Dir, s.tail())
	}
}

// tail returns the last lines of redis.log and anything the process wrote
// to stdout or stderr.
func (s *Server) tail() string {
	var b strings.Builder
	for _, name := range []string{"redis.out", "redis.log"} {
		data, err := os.ReadFile(filepath.Join(s.Dir, name))
		if err != nil || len(data) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > logTailLines {
			lines = lines[len(lines)-logTailLines:]
		}
		fmt.Fprintf(&b, "--- %s (last %d lines) ---\n%s\n", name, len(lines), strings.Join(lines, "\n"))
	}
	return b.String()
}
