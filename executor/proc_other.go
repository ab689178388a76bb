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

// limitMemory is Linux-only (prlimit); elsewhere workers run without the OS backstop.
func limitMemory(pid int, limit int64) error { return nil }

func waitExited(pid int) {}
