package executor

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"syscall"
	"time"

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

// clockTicks is the unit of /proc's CPU times: USER_HZ, 100 on every Linux the node runs on.
const clockTicks = 100

// processCPU is the CPU time process pid has used, user and system, all its threads
// (/proc/<pid>/stat, fields 14 and 15).
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces: count from its end.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("stat: no command name")
	}
	f := bytes.Fields(b[i+1:]) // from field 3, the state
	if len(f) < 13 {
		return 0, errors.New("stat: short")
	}
	utime, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	stime, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}
