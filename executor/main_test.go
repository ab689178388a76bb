package executor

import (
	"context"
	"os"
	"testing"

	"github.com/wasmwiz/wasmwiz/executor/worker"
)

// workerEnv makes the test binary act as a worker process: tests start os.Args[0] with it.
const workerEnv = "WASMWIZ_TEST_WORKER=1"

func TestMain(m *testing.M) {
	if os.Getenv("WASMWIZ_TEST_WORKER") == "1" {
		os.Exit(worker.Main(context.Background(), os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}
