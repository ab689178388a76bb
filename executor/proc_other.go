//go:build !linux

package executor

import (
	"errors"
	"os"
	"syscall"
	"time"
)

// Elsewhere than Linux, workers are plain child processes: no process group, no parent-death
// signal and no resource limits (those need prlimit). The node targets Linux; this keeps the
// package building for development on other systems.

func sysProcAttr() *syscall.SysProcAttr { return nil }

func killGroup(pid int) {
	if p, err := os.FindProcess(pid); err == nil {
		_ = p.Kill()
	}
}

func limitWorker(pid int, memory int64) error { return nil }

func waitExited(pid int) {}

func residentBytes(pid int) (int64, error) { return 0, errors.ErrUnsupported }

func processCPU(pid int) (time.Duration, error) { return 0, errors.ErrUnsupported }
