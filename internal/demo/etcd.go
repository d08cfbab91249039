package demo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/arbor-fabric/arbor/internal/etcdbin"
	"github.com/arbor-fabric/arbor/internal/freeport"
	"github.com/arbor-fabric/arbor/topology"
)

const (
	// etcdReadyTimeout bounds how long the demo waits for etcd to serve.
	etcdReadyTimeout = 20 * time.Second
	// etcdStopTimeout bounds a graceful stop of the demo's etcd.
	etcdStopTimeout = 5 * time.Second
)

// startEtcd sets up the control plane's etcd: the one at Options.Etcd, or
// one the demo runs (Options.EtcdBin, etcd on PATH, or built from the
// tools module). When no etcd binary can be had, it says so and leaves
// d.cli nil: the demo then runs static.
func (d *demo) startEtcd(ctx context.Context) error {
	if len(d.o.Etcd) == 0 {
		bin, err := d.findEtcd(ctx)
		if err != nil || bin == "" {
			return err
		}
		p, err := launchEtcd(ctx, bin, filepath.Join(d.o.Dir, "etcd"))
		if err != nil {
			return err
		}
		d.etcd = p
		d.endpoints = []string{p.clientAddr}
	} else {
		d.endpoints = d.o.Etcd
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   d.endpoints,
		DialTimeout: 5 * time.Second,
		DialOptions: topology.DialOptions(),
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return fmt.Errorf("etcd client: %w", err)
	}
	d.cli = cli
	// An etcd given by --etcd must answer now.
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := cli.Get(cctx, topology.ClusterPrefix(d.o.Cluster), clientv3.WithCountOnly()); err != nil {
		return fmt.Errorf("etcd at %s: %w", strings.Join(d.endpoints, ","), err)
	}
	return nil
}

// findEtcd returns the etcd binary to run: --etcd-bin, else etcd on PATH,
// else the one built from tools/go.mod. It returns "" (and prints why)
// when there is none and none can be built.
func (d *demo) findEtcd(ctx context.Context) (string, error) {
	if d.o.EtcdBin != "" {
		p, err := exec.LookPath(d.o.EtcdBin)
		if err != nil {
			return "", fmt.Errorf("--etcd-bin: %w", err)
		}
		return p, nil
	}
	if p, err := exec.LookPath("etcd"); err == nil {
		return p, nil
	}
	p, err := etcdbin.Etcd(ctx, func() {
		fmt.Fprintln(d.o.Out, "building etcd from tools/go.mod (first run only, ~90 s)…")
	})
	if err == nil {
		return p, nil
	}
	if ctx.Err() != nil {
		return "", ctx.Err()
	}
	why := "it could not be built"
	if errors.Is(err, etcdbin.ErrUnavailable) {
		why = "it cannot be built here"
	}
	fmt.Fprintf(d.o.Out, "\nNote: no etcd binary (none given with --etcd-bin, none on PATH) and %s:\n  %s\n"+
		"Running the static demo instead: relays and replicas wired directly, no control plane.\n"+
		"(Give --etcd-bin, put etcd on PATH, or --etcd ENDPOINTS for the control plane; --no-etcd hides this note.)\n",
		why, clipLines(err.Error(), 8))
	return "", nil
}

// clipLines keeps the first n lines of s, indented for a note.
func clipLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = append(lines[:n], "…")
	}
	return strings.Join(lines, "\n  ")
}

// etcdProcess is the single-member etcd the demo runs.
type etcdProcess struct {
	cmd        *exec.Cmd
	done       chan struct{}
	clientAddr string // host:port
	dir        string
}

// launchEtcd starts a one-member etcd on free loopback ports with its data
// and log in dir, and waits until it serves.
func launchEtcd(ctx context.Context, bin, dir string) (*etcdProcess, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cport, err := freeport.Get()
	if err != nil {
		return nil, err
	}
	pport, err := freeport.Get()
	if err != nil {
		return nil, err
	}
	clientURL := fmt.Sprintf("http://127.0.0.1:%d", cport)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", pport)
	logPath := filepath.Join(dir, "etcd.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child holds its own copy
	cmd := exec.Command(bin,
		"--name", "demo",
		"--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", clientURL,
		"--advertise-client-urls", clientURL,
		"--listen-peer-urls", peerURL,
		"--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "demo="+peerURL,
		"--initial-cluster-state", "new",
		"--heartbeat-interval", "10",
		"--election-timeout", "100",
		"--unsafe-no-fsync", // a throwaway demo cluster
		"--log-level", "warn",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL} // as the redis-servers
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start etcd: %w", err)
	}
	p := &etcdProcess{cmd: cmd, done: make(chan struct{}), clientAddr: fmt.Sprintf("127.0.0.1:%d", cport), dir: dir}
	go func() { cmd.Wait(); close(p.done) }()
	deadline := time.Now().Add(etcdReadyTimeout)
	for {
		err := etcdbin.Healthy(clientURL)
		if err == nil {
			return p, nil
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("etcd not ready after %v: %w (see %s)", etcdReadyTimeout, err, logPath)
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("etcd exited at start (see %s)", logPath)
		case <-ctx.Done():
			p.stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stop stops etcd gracefully, killing it if it does not exit in time.
func (p *etcdProcess) stop() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(etcdStopTimeout):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}
