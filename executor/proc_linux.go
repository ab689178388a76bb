package executor

import (
	"bytes"
	"errors"
	"os"
	"strconv"
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

// limitWorker sets a started worker's resource limits, before its handshake and so before
// any guest runs. RLIMIT_DATA: an allocation past it fails, and the Go runtime in the worker
// dies of it, which the node sees as a crashed worker; a backstop for memory wazero does not
// count (tables, compiled code, the runtime itself); see Config.WorkerMemoryLimit for why not
// RLIMIT_AS. RLIMIT_CORE 0: a crashing worker must not write guest memory to disk.
// RLIMIT_NOFILE: a worker needs its three pipes and a few cache files.
func limitWorker(pid int, memory int64) error {
	var errs []error
	if memory > 0 {
		rl := unix.Rlimit{Cur: uint64(memory), Max: uint64(memory)}
		errs = append(errs, unix.Prlimit(pid, unix.RLIMIT_DATA, &rl, nil))
	}
	errs = append(errs, unix.Prlimit(pid, unix.RLIMIT_CORE, &unix.Rlimit{}, nil))
	errs = append(errs, unix.Prlimit(pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: 256, Max: 256}, nil))
	return errors.Join(errs...)
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

var pageSize = int64(os.Getpagesize())

// residentBytes is the resident memory of process pid (/proc/<pid>/statm, second field).
func residentBytes(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0, err
	}
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0, errors.New("statm: short")
	}
	pages, err := strconv.ParseInt(string(f[1]), 10, 64)
	return pages * pageSize, err
}
