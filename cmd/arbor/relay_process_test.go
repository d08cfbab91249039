package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/arbor-fabric/arbor/internal/redistest"
	"github.com/arbor-fabric/arbor/internal/resp"
)

// buildArbor builds this command into a temporary directory.
func buildArbor(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "arbor")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// relayProcess is `arbor relay` as a real child process.
type relayProcess struct {
	t    *testing.T
	bin  string
	args []string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
}

func startRelayProcess(t *testing.T, bin string, args ...string) *relayProcess {
	p := &relayProcess{t: t, bin: bin, args: args, log: filepath.Join(t.TempDir(), "relay.log")}
	p.start()
	t.Cleanup(func() {
		p.signal(syscall.SIGKILL)
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			if len(b) > 8000 {
				b = b[len(b)-8000:]
			}
			t.Logf("relay log:\n%s", b)
		}
	})
	return p
}

func (p *relayProcess) start() {
	p.t.Helper()
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	defer f.Close()
	p.cmd = exec.Command(p.bin, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		p.t.Fatalf("start relay: %v", err)
	}
	p.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		cmd.Wait()
		close(done)
	}(p.cmd, p.done)
}

// signal sends sig and waits for the process to exit.
func (p *relayProcess) signal(sig syscall.Signal) {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.t.Errorf("relay did not exit after %v", sig)
		p.cmd.Process.Kill()
		<-p.done
	}
	p.cmd = nil
}

func relayInfoInt(addr, key string) (int64, error) {
	v, err := relayInfo(addr, key)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(v, 10, 64)
}

// relayInfoRaw reads a relay's whole INFO.
func relayInfoRaw(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprint(c, "*2\r\n$4\r\nINFO\r\n$3\r\nall\r\n")
	v, err := resp.NewReader(bufio.NewReader(c)).ReadReply()
	if err != nil {
		return "", err
	}
	if err := v.Err(); err != nil {
		return "", err
	}
	return string(v.Str), nil
}

func infoValue(text, key string) (string, bool) {
	for _, line := range strings.Split(text, "\r\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			return v, true
		}
	}
	return "", false
}

// TestRelaySIGKILLUnderLoad: the relay process is killed with SIGKILL while
// the master takes writes, and started again: it resumes from its store
// with a partial resync (the master's sync_full does not move), and its
// replicas converge to the master's digest without a full sync.
func TestRelaySIGKILLUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs a write load")
	}
	bin := buildArbor(t)
	master := redistest.Start(t, "--repl-backlog-size", "128mb")
	ctx := context.Background()
	if err := redistest.LoadAllTypes(ctx, master.Client(), redistest.LoadOptions{SmallKeys: 2000, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	port := redistest.FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	rp := startRelayProcess(t, bin, "relay", "--id", "relay-kill", "--site", "A", "--data-dir", t.TempDir(),
		"--upstream", "redis://"+master.Addr, "--redis-addr", addr, "--log-level", "debug")
	replicas := []*redistest.Server{redistest.Start(t), redistest.Start(t)}
	for _, r := range replicas {
		redistest.WaitFor(t, 10*time.Second, func() error { _, err := relayInfoInt(addr, "master_repl_offset"); return err })
		if err := r.ReplicaOf(ctx, "127.0.0.1", port); err != nil {
			t.Fatal(err)
		}
	}
	redistest.WaitInSync(t, 60*time.Second, master, replicas...)

	loadCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	loaded := make(chan error, 1)
	go func() {
		_, err := redistest.WriteLoad(loadCtx, master.Client(), 150000)
		loaded <- err
	}()
	// Kill the relay in the middle of the load, then start it again.
	redistest.WaitFor(t, 20*time.Second, func() error {
		n, err := relayInfoInt(addr, "arbor_stored_offset")
		if err != nil || n < 2<<20 {
			return fmt.Errorf("relay stored offset %d (%v), waiting for 2 MiB of stream", n, err)
		}
		return nil
	})
	rp.signal(syscall.SIGKILL)
	killedAt, _ := master.InfoInt(ctx, "replication", "master_repl_offset")
	time.Sleep(200 * time.Millisecond) // the master goes on writing meanwhile
	rp.start()
	if err := <-loaded; err != nil {
		t.Fatalf("write load: %v", err)
	}
	endAt, _ := master.InfoInt(ctx, "replication", "master_repl_offset")
	if endAt <= killedAt {
		t.Fatalf("the load ended before the kill (master offset %d at the kill, %d at the end)", killedAt, endAt)
	}
	t.Logf("relay killed at master offset %d; load ended at %d", killedAt, endAt)
	redistest.WaitInSync(t, 90*time.Second, master, replicas...)

	if n, _ := master.InfoInt(ctx, "stats", "sync_full"); n != 1 {
		t.Errorf("master sync_full: got %d, want 1 (the relay must resume with PSYNC)", n)
	}
	if n, _ := relayInfoInt(addr, "arbor_upstream_partial_syncs"); n != 1 {
		t.Errorf("relay arbor_upstream_partial_syncs after restart: got %d, want 1", n)
	}
	if n, _ := relayInfoInt(addr, "sync_full"); n != 0 {
		t.Errorf("relay sync_full after restart: got %d, want 0 (replicas resume)", n)
	}
	if n, _ := relayInfoInt(addr, "sync_partial_ok"); n != 2 {
		t.Errorf("relay sync_partial_ok after restart: got %d, want 2", n)
	}
}
