package wan

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// requireNetns skips the test unless this process may create network
// namespaces.
func requireNetns(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("no ip command (apt-get install iproute2)")
	}
	var b [3]byte
	rand.Read(b[:])
	probe := "arbw-probe-" + hex.EncodeToString(b[:])
	if out, err := exec.Command("ip", "netns", "add", probe).CombinedOutput(); err != nil {
		t.Skipf("ip netns add fails here: %v: %s", err, out)
	}
	if out, err := exec.Command("ip", "netns", "del", probe).CombinedOutput(); err != nil {
		t.Fatalf("ip netns del %s: %v: %s", probe, err, out)
	}
}

func newNetwork(t *testing.T, sites ...string) *Network {
	t.Helper()
	requireNetns(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	n, err := NewNetwork(ctx, sites, NetworkOptions{})
	if err != nil {
		t.Fatalf("NewNetwork: %v", err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("Network.Close: %v", err)
		}
		out, err := exec.Command("ip", "netns", "list").Output()
		if err != nil {
			t.Errorf("ip netns list: %v", err)
		}
		if prefix := "arbw-" + n.ID() + "-"; strings.Contains(string(out), prefix) {
			t.Errorf("namespaces left after Close:\n%s", out)
		}
	})
	return n
}

// startSink runs this test binary as the sink helper inside site and
// returns the address it listens on.
func startSink(t *testing.T, n *Network, site string) string {
	t.Helper()
	s, _ := n.Site(site)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := n.Exec(site, exe)
	cmd.Env = append(os.Environ(), helperEnv+"=sink", "ARBOR_WAN_LISTEN="+s.IP+":0")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sink in %s: %v", site, err)
	}
	// Cleanups run last in, first out: the sink stops before Network.Close.
	t.Cleanup(func() {
		stdin.Close()
		waited := make(chan error, 1)
		go func() { waited <- cmd.Wait() }()
		select {
		case <-waited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-waited
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("read sink address: %v", err)
	}
	return strings.TrimSpace(line)
}

// sinkTransfer sends payload from site to the sink at addr and checks the
// sink's byte count and digest.
func sinkTransfer(ctx context.Context, n *Network, site, addr string, payload []byte) (time.Duration, error) {
	start := time.Now()
	c, err := n.DialContext(ctx, site, "tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if _, err := c.Write(payload); err != nil {
		return 0, err
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return 0, err
	}
	reply, err := readLine(c, 60*time.Second)
	if err != nil {
		return 0, fmt.Errorf("read reply: %w", err)
	}
	elapsed := time.Since(start)
	if want := fmt.Sprintf("%d %x\n", len(payload), sha256.Sum256(payload)); reply != want {
		return 0, fmt.Errorf("sink reply: got %q, want %q", reply, want)
	}
	return elapsed, nil
}

func TestNetwork(t *testing.T) {
	n := newNetwork(t, "a", "b")
	a, _ := n.Site("a")
	b, _ := n.Site("b")
	if a.IP == b.IP || !strings.HasPrefix(a.IP, "10.251.0.") {
		t.Fatalf("site IPs: got %s and %s, want distinct 10.251.0.x", a.IP, b.IP)
	}
	sink := startSink(t, n, "b")
	ctx := t.Context()

	tests := []struct {
		name    string
		shape   func() error
		size    int
		minTime time.Duration
	}{
		{name: "unlimited", shape: func() error { return nil }, size: 32 << 20},
		// 32 mbit/s is 4 MB/s: 4 MB takes about 1 s.
		{name: "a egress 32mbit", shape: func() error { return n.SetBandwidth("a", "32mbit") }, size: 4_000_000, minTime: 500 * time.Millisecond},
		{name: "b ingress 32mbit", shape: func() error { return n.SetIngressBandwidth("b", "32mbit") }, size: 4_000_000, minTime: 500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.shape(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := errors.Join(n.SetBandwidth("a", ""), n.SetIngressBandwidth("b", "")); err != nil {
					t.Errorf("clear shaping: %v", err)
				}
			}()
			elapsed, err := sinkTransfer(ctx, n, "a", sink, randomPayload(t, tt.size))
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d bytes a -> b in %v (%.1f MB/s)", tt.size, elapsed, float64(tt.size)/elapsed.Seconds()/1e6)
			if elapsed < tt.minTime {
				t.Errorf("elapsed: got %v, want at least %v", elapsed, tt.minTime)
			}
		})
	}

	t.Run("cut and restore", func(t *testing.T) {
		c, err := n.DialContext(ctx, "a", "tcp", sink)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := n.Cut("b"); err != nil {
			t.Fatal(err)
		}
		dctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		if c2, err := n.DialContext(dctx, "a", "tcp", sink); err == nil {
			c2.Close()
			t.Fatal("dial while b is cut: got nil error")
		}
		if err := n.Restore("b"); err != nil {
			t.Fatal(err)
		}
		// The connection made before the cut survived it.
		if _, err := c.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		c.(*net.TCPConn).CloseWrite()
		reply, err := readLine(c, 30*time.Second)
		if want := fmt.Sprintf("5 %x\n", sha256.Sum256([]byte("hello"))); err != nil || reply != want {
			t.Fatalf("reply after restore: got %q, %v; want %q", reply, err, want)
		}
	})

	t.Run("bridge adds latency between sites", func(t *testing.T) {
		ln, err := n.Listen("a", a.IP+":0")
		if err != nil {
			t.Fatal(err)
		}
		const d = 20 * time.Millisecond
		br := newBridge(t, sink, WithListener(ln), WithDialer(n.Dialer("a")), WithLatency(d))
		elapsed, err := sinkTransfer(ctx, n, "a", br.Addr(), []byte("ping"))
		if err != nil {
			t.Fatal(err)
		}
		if elapsed < 2*d {
			t.Errorf("round trip through the bridge: got %v, want at least %v", elapsed, 2*d)
		}
		// The bridge listens inside a, not on the host.
		if c, err := net.DialTimeout("tcp", br.Addr(), 200*time.Millisecond); err == nil {
			c.Close()
			t.Errorf("dial %s from the host: got nil error, want unreachable", br.Addr())
		}
	})
}

func TestNetworkValidation(t *testing.T) {
	tests := []struct {
		name  string
		sites []string
		want  string
	}{
		{"none", nil, "sites"},
		{"duplicate", []string{"a", "a"}, "duplicate"},
		{"reserved", []string{"hub"}, `"hub"`},
		{"bad name", []string{"A/b"}, "site"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := NewNetwork(t.Context(), tt.sites, NetworkOptions{})
			if err == nil {
				n.Close()
				t.Fatal("NewNetwork: got nil error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error: got %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestNetworkExecUnknownSite(t *testing.T) {
	n := newNetwork(t, "a")
	if err := n.Exec("nope", "true").Run(); err == nil || !strings.Contains(err.Error(), "unknown site") {
		t.Errorf("Exec in an unknown site: got %v, want unknown site", err)
	}
	if out, err := n.Exec("a", "ip", "-brief", "addr", "show", "wan0").CombinedOutput(); err != nil || !strings.Contains(string(out), "10.251.0.1") {
		t.Errorf("ip addr inside a: got %q, %v; want 10.251.0.1", out, err)
	}
}

// TestNetworkCleansUpAfterFailure makes NewNetwork fail half way, on a
// namespace that already exists, and checks that it deletes what it created
// and nothing else.
func TestNetworkCleansUpAfterFailure(t *testing.T) {
	requireNetns(t)
	var b [3]byte
	rand.Read(b[:])
	id := "f" + hex.EncodeToString(b[:])
	taken := "arbw-" + id + "-b"
	if out, err := exec.Command("ip", "netns", "add", taken).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", taken, err, out)
	}
	defer exec.Command("ip", "netns", "del", taken).Run()

	n, err := NewNetwork(t.Context(), []string{"a", "b", "c"}, NetworkOptions{ID: id})
	if err == nil {
		n.Close()
		t.Fatal("NewNetwork over an existing namespace: got nil error")
	}
	t.Logf("NewNetwork: %v", err)
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, line := range strings.Split(string(out), "\n") {
		if name, _, _ := strings.Cut(line, " "); strings.HasPrefix(name, "arbw-"+id+"-") {
			left = append(left, name)
		}
	}
	if len(left) != 1 || left[0] != taken {
		t.Errorf("namespaces left: got %q, want only the pre-existing %q", left, taken)
	}
}
