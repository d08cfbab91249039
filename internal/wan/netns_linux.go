package wan

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
)

// inNamespace runs fn on an OS thread that has joined the named network
// namespace. Sockets keep the namespace they were created in, so a listener
// or connection made by fn works from any goroutine afterwards. fn must not
// start goroutines that create sockets, and must not resolve names.
func inNamespace(ns string, fn func() error) error {
	target, err := os.Open(filepath.Join("/run/netns", ns))
	if err != nil {
		return err
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := setns(target); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		ferr := fn()
		if err := setns(orig); err != nil {
			// The thread is stuck in ns. Staying locked makes the runtime
			// throw the thread away when this goroutine returns.
			errc <- errors.Join(ferr, fmt.Errorf("setns back: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

func setns(f *os.File) error {
	_, _, errno := syscall.Syscall(sysSetns, f.Fd(), syscall.CLONE_NEWNET, 0)
	if errno != 0 {
		return errno
	}
	return nil
}
