package etcdtest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
)

// The tools module packages the binaries are built from.
const (
	serverPkg  = "go.etcd.io/etcd/server/v3"
	etcdctlPkg = "go.etcd.io/etcd/etcdctl/v3"
)

// binaries builds (or finds in the cache) both binaries once per process.
var binaries = sync.OnceValues(func() (binPaths, error) {
	dir, err := cacheDir()
	if err != nil {
		return binPaths{}, err
	}
	var b binPaths
	if b.etcd, err = build(dir, "etcd", serverPkg); err != nil {
		return binPaths{}, err
	}
	if b.etcdctl, err = build(dir, "etcdctl", etcdctlPkg); err != nil {
		return binPaths{}, err
	}
	return b, nil
})

type binPaths struct{ etcd, etcdctl string }

// EtcdBin returns the path of the etcd server binary, building it on first
// use. It fails the test if the build fails.
func EtcdBin(t testing.TB) string {
	t.Helper()
	b, err := binaries()
	if err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	return b.etcd
}

// EtcdctlBin returns the path of the etcdctl binary, building it on first
// use. It fails the test if the build fails.
func EtcdctlBin(t testing.TB) string {
	t.Helper()
	b, err := binaries()
	if err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	return b.etcdctl
}

// toolsDir finds the tools module by walking up from the working directory
// (a test runs in its package's directory).
func toolsDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "tools", "go.mod")); err == nil {
			return filepath.Join(dir, "tools"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no tools/go.mod above the working directory")
		}
		dir = parent
	}
}

// cacheDir returns the cache directory for the current tools module and Go
// version, creating it if needed.
func cacheDir() (string, error) {
	tools, err := toolsDir()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, name := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(tools, name))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", name, len(b))
		h.Write(b)
	}
	fmt.Fprintf(h, "%s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	dir := filepath.Join(os.TempDir(), "arbor-etcdtest-"+hex.EncodeToString(h.Sum(nil))[:16])
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return dir, nil
}

// build returns dir/name, building pkg from the tools module into it unless
// it is already there. A file lock keeps parallel test processes from
// building the same binary twice; the binary is renamed into place once
// complete, so a reader never sees half a file.
func build(dir, name, pkg string) (string, error) {
	bin := filepath.Join(dir, name)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	lock, err := os.OpenFile(filepath.Join(dir, name+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil // another process built it while we waited
	}
	tools, err := toolsDir()
	if err != nil {
		return "", err
	}
	gobin, err := goCommand()
	if err != nil {
		return "", err
	}
	tmp := fmt.Sprintf("%s.tmp%d", bin, os.Getpid())
	cmd := exec.Command(gobin, "build", "-o", tmp, pkg)
	cmd.Dir = tools
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("go build %s (in %s): %w\n%s", pkg, tools, err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", err
	}
	return bin, nil
}

// goCommand finds the go command: on PATH, else in the GOROOT the test was
// built with.
func goCommand() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("go command not found on PATH or in %s", runtime.GOROOT())
	}
	return p, nil
}
