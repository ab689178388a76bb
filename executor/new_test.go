package executor

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/wasmwiz/wasmwiz/internal/natstest"
)

// New prepares and checks; it touches neither the disk nor the server (Run does).
func TestNew_DoesNoIO(t *testing.T) {
	s := natstest.RunJetStream(t)
	nc := natstest.Connect(t, s)
	dir := filepath.Join(t.TempDir(), "cache")
	if _, err := New(Config{CacheDir: dir, WorkerCommand: []string{"/nonexistent/worker"}}, nc); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("New made %s (stat: %v)", dir, err)
	}
	js := natstest.JetStream(t, s)
	for range js.StreamNames(t.Context()).Name() {
		t.Fatal("New declared a stream")
	}
}
