package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/arbor-fabric/arbor/internal/freeport"
)

const (
	// readyTimeout bounds how long a new process may take to answer PING.
	readyTimeout = 15 * time.Second
	// startAttempts is how often a start is tried on a fresh port when the
	// process exits before it answers (another process took the port).
	startAttempts = 3
)

// process is one child process in its own process group.
type process struct {
	name string
	dir  string
	log  string // file receiving its stdout and stderr
	cmd  *exec.Cmd
	done chan struct{} // closed when it has exited and been reaped
	err  error         // exit status; read after done
}

func (p *process) pid() int { return p.cmd.Process.Pid }

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill SIGKILLs the process group and waits for the process to be reaped.
func (p *process) kill() {
	// The negative pid addresses the group, which also holds fork
	// children (a master's diskless-sync child).
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	<-p.done
}

// tail returns the end of the process's log, for error messages.
func (p *process) tail() string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return ""
	}
	const max = 2000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(bytes.TrimSpace(b))
}

// exitError describes a process that exited while it was needed.
func (p *process) exitError() error {
	return fmt.Errorf("%s exited (%v); log %s:\n%s", p.name, p.err, p.log, p.tail())
}

// server is a started process that speaks RESP on addr: a redis-server or
// a relay.
type server struct {
	*process
	addr string
}

// env is the set of processes of one phase, under one directory. Its
// methods are called from one goroutine.
type env struct {
	dir      string
	redisBin string
	relayBin string
	relayArg []string
	// helperBin runs the null hops (nullhop.go).
	helperBin string
	progress  func(format string, args ...any)
	procs     []*process
	pin       placement // nil: no pinning (see pin.go)
}

// close kills every process of the env, newest first.
func (e *env) close() {
	for i := len(e.procs) - 1; i >= 0; i-- {
		e.procs[i].kill()
	}
	e.procs = nil
}

// start starts bin with args in dir, in its own process group, with its
// output appended to dir/name.log.
func (e *env) start(name, dir, bin string, args []string) (*process, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, name+".log")
	out, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer out.Close() // the child has its own copy
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own group: a terminal's SIGINT reaches only us, and kill
		// reaches fork children too.
		Setpgid: true,
		// Should this process die without running its cleanup, the
		// kernel kills the child.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	if e.pin != nil {
		if err := pinProcess(cmd.Process.Pid, e.pin(name)); err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			return nil, err
		}
	}
	p := &process{name: name, dir: dir, log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	e.procs = append(e.procs, p)
	return p, nil
}

// startServer starts a process listening on a free loopback port (args
// builds its arguments from the address) and waits until it answers PING.
// It retries on a new port when the process exits before answering.
func (e *env) startServer(ctx context.Context, name, bin string, args func(host, port string) ([]string, error)) (*server, error) {
	dir := filepath.Join(e.dir, name)
	var lastErr error
	for range startAttempts {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		argv, err := args("127.0.0.1", strconv.Itoa(port))
		if err != nil {
			return nil, err
		}
		p, err := e.start(name, dir, bin, argv)
		if err != nil {
			return nil, err
		}
		s := &server{process: p, addr: addr}
		err = waitReady(ctx, s)
		if err == nil {
			e.progress("started %s on %s (pid %d)", name, addr, p.pid())
			return s, nil
		}
		if ctx.Err() != nil || !p.exited() {
			return nil, err
		}
		// It exited on its own, most likely because the port was taken
		// since freePort: forget it and try another port.
		e.procs = e.procs[:len(e.procs)-1]
		lastErr = err
	}
	return nil, lastErr
}

// startRedis starts a redis-server for benchmarking: no persistence, DEBUG
// allowed from loopback, diskless sync without delay. replicaOf, when set,
// is its master's address; extra are more configuration arguments
// ("--name", "value"...), which win over the defaults.
func (e *env) startRedis(ctx context.Context, name, replicaOf string, extra ...string) (*server, error) {
	return e.startServer(ctx, name, e.redisBin, func(host, port string) ([]string, error) {
		a := []string{
			"--bind", host, "--port", port,
			"--dir", ".", "--logfile", "",
			"--daemonize", "no",
			"--save", "", "--appendonly", "no",
			"--enable-debug-command", "local",
			"--repl-diskless-sync-delay", "0",
		}
		if replicaOf != "" {
			h, p, _ := net.SplitHostPort(replicaOf)
			a = append(a, "--replicaof", h, p)
		}
		return append(a, extra...), nil
	})
}

// relaySpec describes one "arbor relay" process.
type relaySpec struct {
	// upstream is the --upstream URL: redis://host:port or
	// arbor://host:port.
	upstream string
	// site is its --site; empty leaves it out.
	site string
	// grpc gives it a gRPC service (for child relays) on a free loopback
	// port.
	grpc bool
	// args are more arguments, before the env's relay arguments.
	args []string
}

// relayServer is a started relay.
type relayServer struct {
	*server
	// grpcAddr is the address of its gRPC service; empty without one.
	grpcAddr string
}

// startRelay starts "arbor relay" following the Redis master at upstream
// (host:port) with its store in its own data directory and warn-level logs.
func (e *env) startRelay(ctx context.Context, name, upstream string) (*server, error) {
	rs, err := e.startRelayWith(ctx, name, relaySpec{upstream: "redis://" + upstream})
	if err != nil {
		return nil, err
	}
	return rs.server, nil
}

// startRelayWith starts "arbor relay" as spec describes, with its store in
// its own data directory and warn-level logs. A relay that follows a parent
// relay, or serves gRPC, runs its gRPC links in plaintext.
func (e *env) startRelayWith(ctx context.Context, name string, spec relaySpec) (*relayServer, error) {
	var grpcAddr string
	s, err := e.startServer(ctx, name, e.relayBin, func(host, port string) ([]string, error) {
		a := []string{"relay",
			"--id", name,
			"--data-dir", "data",
			"--upstream", spec.upstream,
			"--redis-addr", net.JoinHostPort(host, port),
			"--log-level", "warn",
		}
		if spec.site != "" {
			a = append(a, "--site", spec.site)
		}
		if spec.grpc {
			gp, err := freePort()
			if err != nil {
				return nil, err
			}
			grpcAddr = net.JoinHostPort(host, strconv.Itoa(gp))
			a = append(a, "--grpc-addr", grpcAddr)
		}
		if spec.grpc || strings.HasPrefix(spec.upstream, "arbor://") {
			a = append(a, "--plaintext")
		}
		a = append(a, spec.args...)
		return append(a, e.relayArg...), nil
	})
	if err != nil {
		return nil, err
	}
	if !spec.grpc {
		grpcAddr = ""
	}
	return &relayServer{server: s, grpcAddr: grpcAddr}, nil
}

// waitReady polls PING until s answers, its process exits, ctx ends or
// readyTimeout passes.
func waitReady(ctx context.Context, s *server) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for {
		if s.exited() {
			return s.exitError()
		}
		c, err := dial(ctx, s.addr)
		if err == nil {
			_, err = c.do("PING")
			c.close()
			if err == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s on %s: not answering PING: %w", s.name, s.addr, errors.Join(ctx.Err(), err))
		case <-s.done:
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// freePort returns a loopback TCP port for a benchmark process (see
// freeport).
func freePort() (int, error) { return freeport.Get() }
