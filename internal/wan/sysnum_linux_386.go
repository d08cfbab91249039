package wan

// sysSetns is setns(2); package syscall lacks it on 386.
const sysSetns = 346
