package rdb

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/arbor-fabric/arbor/internal/freeport"
)

const (
	redisServer = "/usr/bin/redis-server"
	redisCLI    = "/usr/bin/redis-cli"
)

// waitForRedis waits up to a few minutes for the redis binaries (a package
// install may still be running) and skips the test if they do not appear.
func waitForRedis(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if exec.Command(redisServer, "--version").Run() == nil && exec.Command(redisCLI, "--version").Run() == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Skipf("%s or %s not available", redisServer, redisCLI)
		}
		time.Sleep(2 * time.Second)
	}
}

// freePort returns a loopback port for a test server (see freeport).
func freePort(t *testing.T) int {
	t.Helper()
	p, err := freeport.Get()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// cli runs redis-cli against port and returns its trimmed output.
func cli(t *testing.T, port int, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	all := append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(port)}, args...)
	out, err := exec.CommandContext(ctx, redisCLI, all...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// startRedis starts a redis-server on a free loopback port, stopped when the
// test ends, and returns the port.
func startRedis(t *testing.T) int {
	t.Helper()
	waitForRedis(t)
	dir := t.TempDir()
	for attempt := 0; ; attempt++ {
		port := freePort(t)
		cmd := exec.Command(redisServer,
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", dir,
			"--enable-debug-command", "local",
			"--repl-diskless-sync-delay", "0",
			"--logfile", filepath.Join(dir, "redis.log"))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-exited
		})
		if waitReady(port, exited) {
			return port
		}
		if attempt == 2 {
			log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			t.Fatalf("redis-server did not start: %s", log)
		}
	}
}

// waitReady polls port until redis answers PING, the server exits, or 10 s
// pass.
func waitReady(port int, exited <-chan error) bool {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		out, err := exec.Command(redisCLI, "-h", "127.0.0.1", "-p", strconv.Itoa(port), "PING").Output()
		if err == nil && strings.TrimSpace(string(out)) == "PONG" {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

func TestVerifierRealRDB(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	port := startRedis(t)
	cli(t, port, "DEBUG", "POPULATE", "5000", "key", "100")
	cli(t, port, "SET", "compressible", strings.Repeat("abcdefgh", 2000))
	cli(t, port, "RPUSH", "list", "a", "b", "c")
	cli(t, port, "HSET", "hash", "f1", "v1", "f2", "2")
	file := filepath.Join(t.TempDir(), "dump.rdb")
	cli(t, port, "--rdb", file)
	p, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("rdb: %d bytes, magic %q", len(p), p[:min(9, len(p))])

	sum, err := verify(p, 0)
	if err != nil {
		t.Fatalf("Finish: %v", err)
	}
	t.Logf("summary: size %d, version %d, crc %016x, checked %v, aux %v", sum.Size, sum.Version, sum.CRC, sum.CRCChecked, sum.Header.Aux)
	if sum.Size != int64(len(p)) || !sum.CRCChecked || sum.Version < 9 || sum.Version > SupportedMax {
		t.Errorf("got size %d, version %d, checked %v; want size %d, version 9..%d, checked", sum.Size, sum.Version, sum.CRCChecked, len(p), SupportedMax)
	}
	aux := sum.Header.Aux
	if !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(aux["redis-ver"]) {
		t.Errorf("got redis-ver %q, want a version", aux["redis-ver"])
	}
	if got := aux["redis-bits"]; got != "64" && got != "32" {
		t.Errorf("got redis-bits %q, want 64 or 32", got)
	}
	if _, err := strconv.ParseInt(aux["ctime"], 10, 64); err != nil {
		t.Errorf("got ctime %q, want an integer", aux["ctime"])
	}
	if id, ok := aux["repl-id"]; ok && len(id) != 40 {
		t.Errorf("got repl-id %q, want 40 characters", id)
	}
	for _, k := range []string{"repl-offset", "repl-stream-db"} {
		if v, ok := aux[k]; ok {
			if _, err := strconv.ParseInt(v, 10, 64); err != nil {
				t.Errorf("got %s %q, want an integer", k, v)
			}
		}
	}

	// Random chunking gives the same summary.
	rng := rand.New(rand.NewPCG(5, 6))
	v := NewVerifier()
	for start := 0; start < len(p); {
		end := min(len(p), start+1+rng.IntN(5000))
		if _, err := v.Write(p[start:end]); err != nil {
			t.Fatal(err)
		}
		start = end
	}
	if got, err := v.Finish(); err != nil || got.CRC != sum.CRC || got.Size != sum.Size {
		t.Errorf("random chunks: got (%+v, %v), want %+v", got, err, sum)
	}

	// One flipped byte in the middle is a checksum error.
	bad := bytes.Clone(p)
	bad[len(bad)/2] ^= 0x10
	if _, err := verify(bad, 4096); !errors.Is(err, ErrChecksum) {
		t.Errorf("flipped byte: got %v, want ErrChecksum", err)
	}
	// Truncations fail, whatever the cut.
	for _, n := range []int{0, 5, 9, 17, len(p) / 2, len(p) - 9, len(p) - 8, len(p) - 1} {
		if _, err := verify(p[:n], 1000); err == nil {
			t.Errorf("truncated to %d bytes: got nil error", n)
		} else {
			t.Logf("truncated to %d bytes: %v", n, err)
		}
	}
}

// TestRedisLoadsMinimal checks that a real server loads Minimal as an empty
// dataset.
func TestRedisLoadsMinimal(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	port := startRedis(t)
	dir := cli(t, port, "CONFIG", "GET", "dir")
	dir = strings.TrimSpace(strings.SplitN(dir, "\n", 2)[1])
	cli(t, port, "SET", "x", "1")
	if err := os.WriteFile(filepath.Join(dir, "dump.rdb"), Minimal(10), 0o600); err != nil {
		t.Fatal(err)
	}
	// DEBUG RELOAD NOSAVE loads dump.rdb without saving first.
	if out := cli(t, port, "DEBUG", "RELOAD", "NOSAVE"); out != "OK" {
		t.Fatalf("DEBUG RELOAD: got %q, want OK", out)
	}
	if got := cli(t, port, "DBSIZE"); got != "0" {
		t.Errorf("got DBSIZE %s after loading Minimal, want 0", got)
	}
}
