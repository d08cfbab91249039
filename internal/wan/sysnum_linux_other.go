//go:build linux && !amd64 && !386

package wan

import "syscall"

const sysSetns = syscall.SYS_SETNS
