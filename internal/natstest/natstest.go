// Package natstest starts real embedded NATS servers with JetStream for tests: port -1 (a free
// port), the store in t.TempDir(), shut down when the test ends.
package natstest

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// MaxPayload is the largest message the test servers accept; WasmWiz results carry up to
// 1 MiB of stdout and 1 MiB of stderr.
const MaxPayload = 8 << 20

// RunJetStream starts a single JetStream-enabled server on a free port.
func RunJetStream(tb testing.TB) *server.Server {
	tb.Helper()
	return RunJetStreamWith(tb, nil)
}

// RunJetStreamWith starts a server as RunJetStream does, with options edited by edit first
// (users and their permissions, say).
func RunJetStreamWith(tb testing.TB, edit func(*server.Options)) *server.Server {
	tb.Helper()
	opts := &server.Options{
		Host:       "127.0.0.1",
		Port:       -1,
		JetStream:  true,
		StoreDir:   tb.TempDir(),
		MaxPayload: MaxPayload,
		NoLog:      true,
		NoSigs:     true,
	}
	if edit != nil {
		edit(opts)
	}
	return run(tb, opts)
}

func run(tb testing.TB, opts *server.Options) *server.Server {
	tb.Helper()
	s, err := server.NewServer(opts)
	if err != nil {
		tb.Fatalf("natstest: new server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		tb.Fatalf("natstest: server not ready")
	}
	tb.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// RunCluster starts a JetStream cluster of n servers on 127.0.0.1, all on free ports, and
// waits until it has a meta leader that counts all n servers as JetStream peers (online, with
// stats): a leader is elected by a quorum, and a stream of n replicas created before the last
// server has reported to it fails with "no suitable peers for placement".
func RunCluster(tb testing.TB, n int) []*server.Server {
	tb.Helper()
	ports := make([]int, n)
	for i := range ports {
		ports[i] = freePort(tb)
	}
	routes := ""
	for i, p := range ports {
		if i > 0 {
			routes += ","
		}
		routes += fmt.Sprintf("nats://127.0.0.1:%d", p)
	}
	servers := make([]*server.Server, n)
	for i := range servers {
		opts := &server.Options{
			ServerName: fmt.Sprintf("n%d", i),
			Host:       "127.0.0.1",
			Port:       -1,
			JetStream:  true,
			StoreDir:   tb.TempDir(),
			MaxPayload: MaxPayload,
			NoLog:      true,
			NoSigs:     true,
			Cluster: server.ClusterOpts{
				Name: "wasmwiz-test",
				Host: "127.0.0.1",
				Port: ports[i],
			},
			Routes: server.RoutesFromStr(routes),
		}
		servers[i] = run(tb, opts)
	}
	CheckFor(tb, 60*time.Second, 50*time.Millisecond, func() error {
		for _, s := range servers {
			if s.JetStreamIsLeader() {
				if peers := s.JetStreamClusterPeers(); len(peers) != n {
					return fmt.Errorf("natstest: meta leader %s sees JetStream peers %v, want %d", s.Name(), peers, n)
				}
				return nil
			}
		}
		return fmt.Errorf("natstest: cluster has no JetStream meta leader")
	})
	return servers
}

// Connect connects to s (with opts, say a user's credentials) and closes the connection when
// the test ends.
func Connect(tb testing.TB, s *server.Server, opts ...nats.Option) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(s.ClientURL(), append([]nats.Option{nats.Name(tb.Name())}, opts...)...)
	if err != nil {
		tb.Fatalf("natstest: connect: %v", err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// JetStream connects to s (see Connect) and returns the connection's JetStream context.
func JetStream(tb testing.TB, s *server.Server) jetstream.JetStream {
	tb.Helper()
	js, err := jetstream.New(Connect(tb, s))
	if err != nil {
		tb.Fatalf("natstest: jetstream: %v", err)
	}
	return js
}

// CheckFor calls check every `every` until it returns nil, and fails tb with the last error it
// returned if that has not happened within total (nats-server's checkFor). The error says what
// was still wrong when time ran out, so write checks that describe the state they saw.
func CheckFor(tb testing.TB, total, every time.Duration, check func() error) {
	tb.Helper()
	deadline := time.Now().Add(total)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("after %v: %v", total, err)
		}
		time.Sleep(every)
	}
}

func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("natstest: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
