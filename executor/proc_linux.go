package executor

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// sysProcAttr puts a worker in its own process group, so that killing the group also kills
// anything it may have started, and asks the kernel to kill it if the node dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

func killGroup(pid int) {
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

// limitMemory sets RLIMIT_DATA on a started worker (before its handshake, so before any guest
// runs): an allocation past it fails, and the Go runtime in the worker dies of it, which the
// node sees as a crashed worker. It is a backstop for memory wazero does not count (tables,
// compiled code, the runtime itself). See Config.WorkerMemoryLimit for why not RLIMIT_AS.
func limitMemory(pid int, limit int64) error {
	if limit <= 0 {
		return nil
	}
	rl := unix.Rlimit{Cur: uint64(limit), Max: uint64(limit)}
	return unix.Prlimit(pid, unix.RLIMIT_DATA, &rl, nil)
}

// waitExited waits until pid has exited without reaping it.
func waitExited(pid int) {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			return
		}
	}
}
