//go:build !linux

package executor

import (
	"os"
	"syscall"
)

func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

func killGroup(pid int) {
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	if p, err := os.FindProcess(pid); err == nil {
		_ = p.Kill()
	}
}

// limitWorker is Linux-only (prlimit); elsewhere workers run without the OS backstops.
func limitWorker(pid int, memory int64) error { return nil }

func waitExited(pid int) {}
