// Package etcdbin provides the real etcd server and etcdctl binaries: it
// builds them from the repository's tools module (tools/go.mod pins
// go.etcd.io/etcd/server/v3 and go.etcd.io/etcd/etcdctl/v3) the first time
// they are needed and caches them in the system temporary directory, under
// a name derived from tools/go.mod, tools/go.sum and the Go version
// ($TMPDIR/arbor-etcdtest-<hash>), so tests, `arbor demo` and later runs
// share one build. A cold build of the server takes about a minute and a
// half on two cores; a file lock keeps two processes from building the
// same binary at once.
package etcdbin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"time"
)

// The tools module packages the binaries are built from.
const (
	ServerPkg  = "go.etcd.io/etcd/server/v3"
	EtcdctlPkg = "go.etcd.io/etcd/etcdctl/v3"
)

// ErrUnavailable is wrapped by the errors of Etcd and Etcdctl when the
// binaries cannot be built here at all: no tools module, or no Go toolchain.
var ErrUnavailable = errors.New("cannot build etcd here")

const (
	// lockPoll is how often a process waiting for another's build checks
	// the lock.
	lockPoll = 200 * time.Millisecond
	// buildStopGrace is how long a cancelled build may take to stop after
	// SIGINT before its processes are killed.
	buildStopGrace = 3 * time.Second
)

// Etcd returns the path of the etcd server binary, building it first if
// it is not in the cache. building, if not nil, is called once before a
// build starts (or before waiting for another process's build), so the
// caller can say why it waits. ctx bounds the build; the go command and
// the compilers it started are killed when ctx ends.
func Etcd(ctx context.Context, building func()) (string, error) {
	return Build(ctx, "etcd", ServerPkg, building)
}

// Etcdctl is Etcd for the etcdctl binary.
func Etcdctl(ctx context.Context, building func()) (string, error) {
	return Build(ctx, "etcdctl", EtcdctlPkg, building)
}

// Build returns the cached binary name built from the tools module's
// package pkg, building it into the cache unless it is there. The binary
// is renamed into place once complete, so a reader never sees half a file.
func Build(ctx context.Context, name, pkg string, building func()) (string, error) {
	tools, err := ToolsDir()
	if err != nil {
		return "", err
	}
	dir, err := CacheDir(tools)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, name)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	gobin, err := goCommand()
	if err != nil {
		return "", err
	}
	if building != nil {
		building()
	}
	unlock, err := lock(ctx, filepath.Join(dir, name+".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Stat(bin); err == nil {
		return bin, nil // another process built it while we waited
	}
	tmp := fmt.Sprintf("%s.tmp%d", bin, os.Getpid())
	// The go command's work directory, removed even when a cancelled
	// build leaves it behind.
	work, err := os.MkdirTemp(dir, "gowork-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	cmd := exec.CommandContext(ctx, gobin, "build", "-o", tmp, pkg)
	cmd.Dir = tools
	cmd.Env = append(os.Environ(), "GOTMPDIR="+work)
	// The go command runs compilers and the linker as children: on
	// cancellation interrupt the whole process group, not only go (which
	// then removes its work directory), and kill it if it lingers.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		pgid := cmd.Process.Pid
		time.AfterFunc(buildStopGrace, func() { syscall.Kill(-pgid, syscall.SIGKILL) })
		return syscall.Kill(-pgid, syscall.SIGINT)
	}
	cmd.WaitDelay = 2 * buildStopGrace
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		if ctx.Err() != nil {
			return "", fmt.Errorf("go build %s: %w", pkg, ctx.Err())
		}
		return "", fmt.Errorf("go build %s (in %s): %w\n%s", pkg, tools, err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", err
	}
	return bin, nil
}

// lock takes an exclusive file lock on path, waiting for it until ctx ends,
// and returns its release.
func lock(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(lockPoll):
		}
	}
}

// ToolsDir finds the tools module (the directory of tools/go.mod): above
// the working directory (where tests and `go run` run), else above the
// directory this package's source was compiled from (a binary built from
// the repository and run elsewhere). The error wraps ErrUnavailable.
func ToolsDir() (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		starts = append(starts, filepath.Dir(file))
	}
	for _, dir := range starts {
		for {
			if _, err := os.Stat(filepath.Join(dir, "tools", "go.mod")); err == nil {
				return filepath.Join(dir, "tools"), nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", fmt.Errorf("%w: no tools/go.mod above the working directory or the source tree", ErrUnavailable)
}

// CacheDir returns the cache directory for the tools module at tools and
// the running Go version, creating it if needed.
func CacheDir(tools string) (string, error) {
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

// goCommand finds the go command: on PATH, else where Go is installed on
// this kind of machine (/usr/local/go). The error wraps ErrUnavailable.
func goCommand() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	const p = "/usr/local/go/bin/go"
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%w: no go command on PATH or at %s", ErrUnavailable, p)
	}
	return p, nil
}
