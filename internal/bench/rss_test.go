package bench

import (
	"os/exec"
	"slices"
	"strconv"
	"testing"
)

// childPIDs finds a child process this process started, and only its children.
func TestChildPIDs(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skip("no sleep command:", err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	pids := childPIDs()
	if !slices.Contains(pids, strconv.Itoa(cmd.Process.Pid)) {
		t.Fatalf("children %v, want %d among them", pids, cmd.Process.Pid)
	}
	if len(pids) != 1 {
		t.Errorf("children %v, want only %d", pids, cmd.Process.Pid)
	}
}

// BenchmarkRSSNow is one sample of the bench's RSS sampler (this process and its children).
func BenchmarkRSSNow(b *testing.B) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		b.Skip("no sleep command:", err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	for b.Loop() {
		rssNow()
	}
}
