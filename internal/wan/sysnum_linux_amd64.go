package wan

// sysSetns is setns(2); package syscall lacks it on amd64.
const sysSetns = 308
