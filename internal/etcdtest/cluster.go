package etcdtest

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/arbor-fabric/arbor/internal/freeport"
)

const (
	// readyTimeout bounds how long Start waits for the cluster to be
	// healthy, and Member.Start for a member to come back.
	readyTimeout = 20 * time.Second
	// stopTimeout bounds a graceful Stop before it falls back to SIGKILL.
	stopTimeout = 10 * time.Second
	// startAttempts is how often Start retries when a port was taken
	// between picking it and the bind.
	startAttempts = 5
	// logTailLines is how much of a member's log a failed test prints.
	logTailLines = 40
	// etcdctlTimeout bounds one etcdctl run.
	etcdctlTimeout = 30 * time.Second
)

// clusterSeq makes cluster tokens unique within the process.
var clusterSeq atomic.Int64

// Cluster is a running etcd cluster of real etcd processes on loopback.
// Its methods taking a testing.TB belong on the test goroutine.
type Cluster struct {
	// Members are the cluster's members, in the order of their names
	// (m0, m1, ...).
	Members []*Member
	// TLS names the CA and client certificate files of a cluster started
	// with Options.TLS; nil otherwise.
	TLS *TLSFiles

	t         testing.TB
	bin       string
	ctl       string
	tlsConfig *tls.Config // nil without TLS
	token     string
	initial   string // --initial-cluster
}

// Member is one etcd server process of a Cluster.
type Member struct {
	// Name is the member's name (m0, m1, ...).
	Name string
	// ClientURL is where clients connect (http://127.0.0.1:port).
	ClientURL string
	// PeerURL is where the other members connect.
	PeerURL string
	// Dir holds the member's data directory (Dir/data) and its log
	// (Dir/etcd.log).
	Dir string

	c *Cluster

	mu   sync.Mutex
	proc *process // nil when not running
}

// process is one incarnation of a member.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once cmd.Wait returned
	err  error         // cmd.Wait's result, read after done
}

// Options configures StartWith.
type Options struct {
	// Members is the number of members (1 if 0).
	Members int
	// TLS serves clients over TLS with client certificates required
	// (--client-cert-auth); the cluster's TLS field names the files.
	TLS bool
}

// Start starts a cluster of n members (1 for most tests, 3 where a test
// needs a quorum) and returns once every member reports healthy. The
// cleanup registered on t kills every member and, if the test failed, logs
// the tail of each member's log.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	return StartWith(t, Options{Members: n})
}

// StartWith is Start with options.
func StartWith(t testing.TB, o Options) *Cluster {
	t.Helper()
	n := max(o.Members, 1)
	bin, ctl := EtcdBin(t), EtcdctlBin(t)
	var files *TLSFiles
	var tc *tls.Config
	scheme := "http://"
	if o.TLS {
		files = newTLSFiles(t, t.TempDir())
		tc = files.Config(t)
		scheme = "https://"
	}
	for attempt := 1; ; attempt++ {
		c := &Cluster{
			TLS:       files,
			t:         t,
			bin:       bin,
			ctl:       ctl,
			tlsConfig: tc,
			token:     fmt.Sprintf("arbor-etcdtest-%d-%d", os.Getpid(), clusterSeq.Add(1)),
		}
		var peers []string
		for i := range n {
			m := &Member{
				Name:      fmt.Sprintf("m%d", i),
				ClientURL: scheme + freeAddr(t),
				PeerURL:   "http://" + freeAddr(t),
				Dir:       t.TempDir(),
				c:         c,
			}
			c.Members = append(c.Members, m)
			peers = append(peers, m.Name+"="+m.PeerURL)
		}
		c.initial = strings.Join(peers, ",")
		t.Cleanup(c.cleanup)
		err := c.startAll()
		if err == nil {
			return c
		}
		c.kill()
		if attempt < startAttempts && c.logsContain("address already in use") {
			t.Logf("etcdtest: a port was taken, retrying: %v", err)
			continue
		}
		t.Fatalf("etcdtest: start %d-member cluster: %v\n%s", n, err, c.tails())
	}
}

// startAll launches every member and waits until all are healthy.
func (c *Cluster) startAll() error {
	for _, m := range c.Members {
		if err := m.launch(); err != nil {
			return err
		}
	}
	return c.waitHealthy(readyTimeout)
}

// freeAddr returns a loopback host:port for a member (see freeport: a
// 3-member cluster picks 6 ports before any member listens).
func freeAddr(t testing.TB) string {
	t.Helper()
	port, err := freeport.Get()
	if err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// Endpoints returns every member's client URL.
func (c *Cluster) Endpoints() []string {
	eps := make([]string, len(c.Members))
	for i, m := range c.Members {
		eps[i] = m.ClientURL
	}
	return eps
}

// Client returns a new client of the whole cluster, closed by the test's
// cleanup. It logs nothing and, like Arbor's own clients
// (topology.DialOptions), reconnects within about a second of a member
// coming back.
func (c *Cluster) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	return c.ClientOf(t, c.Endpoints()...)
}

// ClientOf is Client with only the given endpoints (for example one
// member's ClientURL).
func (c *Cluster) ClientOf(t testing.TB, endpoints ...string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 2 * time.Second,
		Logger:      zap.NewNop(),
		TLS:         c.tlsConfig,
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: 2 * time.Second,
		})},
	})
	if err != nil {
		t.Fatalf("etcdtest: client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// Etcdctl runs the real etcdctl against the cluster with args (for example
// "put", key, value) and returns its standard output. It fails the test if
// etcdctl fails.
func (c *Cluster) Etcdctl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := c.EtcdctlErr(args...)
	if err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	return out
}

// EtcdctlErr is Etcdctl returning the error (which includes etcdctl's
// standard error) instead of failing the test.
func (c *Cluster) EtcdctlErr(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), etcdctlTimeout)
	defer cancel()
	full := []string{
		"--endpoints=" + strings.Join(c.Endpoints(), ","),
		"--dial-timeout=2s",
		"--command-timeout=5s",
	}
	if c.TLS != nil {
		full = append(full, "--cacert="+c.TLS.CA, "--cert="+c.TLS.ClientCert, "--key="+c.TLS.ClientKey)
	}
	full = append(full, args...)
	cmd := exec.CommandContext(ctx, c.ctl, full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("etcdctl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Stop stops every running member gracefully.
func (c *Cluster) Stop() {
	for _, m := range c.Members {
		m.Stop()
	}
}

// Restart starts every stopped member again and waits until the cluster is
// healthy.
func (c *Cluster) Restart(t testing.TB) {
	t.Helper()
	for _, m := range c.Members {
		if !m.Running() {
			if err := m.launch(); err != nil {
				t.Fatalf("etcdtest: restart %s: %v\n%s", m.Name, err, m.tail())
			}
		}
	}
	if err := c.waitHealthy(readyTimeout); err != nil {
		t.Fatalf("etcdtest: restart: %v\n%s", err, c.tails())
	}
}

// WaitHealthy waits until every running member reports healthy (which
// needs a quorum) and fails the test after timeout.
func (c *Cluster) WaitHealthy(t testing.TB, timeout time.Duration) {
	t.Helper()
	if err := c.waitHealthy(timeout); err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
}

func (c *Cluster) waitHealthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var errs []error
		for _, m := range c.Members {
			if !m.Running() {
				if m.exited() {
					return fmt.Errorf("%s exited", m.Name)
				}
				continue
			}
			if err := m.health(); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", m.Name, err))
			}
		}
		err := errors.Join(errs...)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not healthy after %v: %w", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Leader returns the member that is the raft leader, or nil if no running
// member knows one.
func (c *Cluster) Leader(t testing.TB) *Member {
	t.Helper()
	for _, m := range c.Members {
		if !m.Running() {
			continue
		}
		cli, err := clientv3.New(clientv3.Config{
			Endpoints:   []string{m.ClientURL},
			DialTimeout: time.Second,
			Logger:      zap.NewNop(),
			TLS:         c.tlsConfig,
		})
		if err != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := cli.Status(ctx, m.ClientURL)
		cancel()
		cli.Close()
		if err != nil || st.Leader == 0 {
			continue
		}
		for _, other := range c.Members {
			if other.Running() && other.id(t) == st.Leader {
				return other
			}
		}
	}
	return nil
}

// Stop stops the member with SIGTERM and waits for it to exit, killing it
// after 10 s. It does nothing when the member is not running.
func (m *Member) Stop() {
	p := m.detach()
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		m.c.t.Logf("etcdtest: %s did not stop within %v; killing it", m.Name, stopTimeout)
		killGroup(p)
	}
}

// Kill SIGKILLs the member and waits for it to exit. It does nothing when
// the member is not running.
func (m *Member) Kill() {
	if p := m.detach(); p != nil {
		killGroup(p)
	}
}

// Start starts a stopped member again with the same name, ports and data.
// It returns once the member is healthy, or, when too few members run for a
// quorum, once it accepts connections.
func (m *Member) Start(t testing.TB) {
	t.Helper()
	if err := m.launch(); err != nil {
		t.Fatalf("etcdtest: start %s: %v\n%s", m.Name, err, m.tail())
	}
	running := 0
	for _, o := range m.c.Members {
		if o.Running() {
			running++
		}
	}
	var err error
	if running > len(m.c.Members)/2 {
		err = m.waitReady(readyTimeout, m.health)
	} else {
		err = m.waitReady(readyTimeout, m.dial)
	}
	if err != nil {
		t.Fatalf("etcdtest: start %s: %v\n%s", m.Name, err, m.tail())
	}
}

// Running reports whether the member's process runs.
func (m *Member) Running() bool {
	m.mu.Lock()
	p := m.proc
	m.mu.Unlock()
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

// exited reports whether the member's process exited on its own.
func (m *Member) exited() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.proc == nil {
		return false
	}
	select {
	case <-m.proc.done:
		return true
	default:
		return false
	}
}

// launch starts the member's process; it does not wait for it.
func (m *Member) launch() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.proc != nil {
		return errors.New("already running")
	}
	c := m.c
	args := []string{
		"--name", m.Name,
		"--data-dir", filepath.Join(m.Dir, "data"),
		"--listen-client-urls", m.ClientURL,
		"--advertise-client-urls", m.ClientURL,
		"--listen-peer-urls", m.PeerURL,
		"--initial-advertise-peer-urls", m.PeerURL,
		"--initial-cluster", c.initial,
		"--initial-cluster-state", "new",
		"--initial-cluster-token", c.token,
		"--heartbeat-interval", "10",
		"--election-timeout", "100",
		"--unsafe-no-fsync",
		"--log-level", "warn",
	}
	if c.TLS != nil {
		args = append(args,
			"--cert-file", c.TLS.serverCert,
			"--key-file", c.TLS.serverKey,
			"--trusted-ca-file", c.TLS.CA,
			"--client-cert-auth")
	}
	logf, err := os.OpenFile(filepath.Join(m.Dir, "etcd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close() // the child holds its own copy
	cmd := exec.Command(c.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	m.proc = p
	return nil
}

// waitReady polls check until it succeeds, the process exits or timeout
// passes.
func (m *Member) waitReady(timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		if m.exited() {
			return errors.New("etcd exited")
		}
		err := check()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %w", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dial checks that the member accepts TCP connections.
func (m *Member) dial() error {
	_, hostport, _ := strings.Cut(m.ClientURL, "://")
	conn, err := net.DialTimeout("tcp", hostport, time.Second)
	if err != nil {
		return err
	}
	return conn.Close()
}

// health asks the member's /health endpoint, which answers true only when
// the member has a leader and can serve a quorum read.
func (m *Member) health() error {
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: m.c.tlsConfig}}
	resp, err := hc.Get(m.ClientURL + "/health")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var body struct {
		Health string `json:"health"`
		Reason string `json:"reason"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return fmt.Errorf("/health: %w", err)
	}
	if body.Health != "true" {
		return fmt.Errorf("/health: %s %s", body.Health, body.Reason)
	}
	return nil
}

// id returns the member's raft ID.
func (m *Member) id(t testing.TB) uint64 {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.ClientURL}, DialTimeout: time.Second, Logger: zap.NewNop(), TLS: m.c.tlsConfig})
	if err != nil {
		return 0
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := cli.Status(ctx, m.ClientURL)
	if err != nil {
		return 0
	}
	return st.Header.MemberId
}

// detach takes the running process out of m, so the cleanup no longer
// treats its exit as a crash.
func (m *Member) detach() *process {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.proc
	m.proc = nil
	return p
}

func killGroup(p *process) {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// kill kills every member.
func (c *Cluster) kill() {
	for _, m := range c.Members {
		m.Kill()
	}
}

// cleanup is registered by Start.
func (c *Cluster) cleanup() {
	for _, m := range c.Members {
		p := m.detach()
		if p == nil {
			continue
		}
		select {
		case <-p.done:
			c.t.Logf("etcdtest: %s exited on its own: %v", m.Name, p.err)
		default:
			killGroup(p)
		}
	}
	if c.t.Failed() {
		c.t.Logf("etcdtest: member logs:\n%s", c.tails())
	}
}

func (c *Cluster) logsContain(s string) bool {
	for _, m := range c.Members {
		b, err := os.ReadFile(filepath.Join(m.Dir, "etcd.log"))
		if err == nil && bytes.Contains(b, []byte(s)) {
			return true
		}
	}
	return false
}

func (c *Cluster) tails() string {
	var b strings.Builder
	for _, m := range c.Members {
		b.WriteString(m.tail())
	}
	return b.String()
}

// tail returns the last lines of the member's log.
func (m *Member) tail() string {
	data, err := os.ReadFile(filepath.Join(m.Dir, "etcd.log"))
	if err != nil || len(data) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > logTailLines {
		lines = lines[len(lines)-logTailLines:]
	}
	return fmt.Sprintf("--- %s %s (last %d lines) ---\n%s\n", m.Name, m.ClientURL, len(lines), strings.Join(lines, "\n"))
}
