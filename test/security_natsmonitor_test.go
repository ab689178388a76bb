package test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.yaml.in/yaml/v3"
)

// TestSecurity_NATSMonitoringNotExposed: NATS's monitoring port (8222) answers without
// authentication (connections with their addresses, accounts, streams and consumers), and the
// shipped compose configuration opened it on every interface of the NATS containers, where any
// container of the stack could read it. Now compose's nats.conf binds it to the container's
// loopback (a server run on it answers there and refuses the host's other addresses), and on
// Kubernetes a NetworkPolicy in namespace nats lets only KEDA's namespace reach it (the one
// reader, for consumer lag, at the port keda.yaml names), routes only from the NATS servers.
func TestSecurity_NATSMonitoringNotExposed(t *testing.T) {
	t.Run("compose", func(t *testing.T) {
		dir := t.TempDir()
		for _, f := range []string{"nats.conf", "wasmwiz-account.conf"} {
			b, err := os.ReadFile(filepath.Join("../deploy/nats", f))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if out, err := exec.Command(bin(), "secrets", "generate", "--dir", dir).CombinedOutput(); err != nil {
			t.Fatalf("wasmwiz secrets generate: %v\n%s", err, out)
		}
		t.Setenv("NATS_SERVER_NAME", "nats1")
		t.Chdir(dir) // TLS paths are relative to the working directory (compose: /etc/nats)
		opts, err := server.ProcessConfigFile("nats.conf")
		if err != nil {
			t.Fatalf("shipped nats.conf: %v", err)
		}
		if opts.HTTPPort != 8222 || !net.ParseIP(opts.HTTPHost).IsLoopback() {
			t.Fatalf("monitoring listens on %q port %d, want loopback port 8222", opts.HTTPHost, opts.HTTPPort)
		}
		// Run a server with the shipped monitoring host (a free port instead of 8222).
		run := &server.Options{Host: "127.0.0.1", Port: -1, HTTPHost: opts.HTTPHost, HTTPPort: -1, NoLog: true, NoSigs: true}
		srv, err := server.NewServer(run)
		if err != nil {
			t.Fatal(err)
		}
		go srv.Start()
		t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
		if !srv.ReadyForConnections(10 * time.Second) {
			t.Fatal("nats-server not ready")
		}
		addr := srv.MonitorAddr()
		if addr == nil || !addr.IP.IsLoopback() {
			t.Fatalf("monitoring listens on %v", addr)
		}
		if c, err := net.DialTimeout("tcp", addr.String(), 2*time.Second); err != nil {
			t.Fatalf("monitoring on loopback: %v", err)
		} else {
			c.Close()
		}
		// Another address of this host, as another container would reach the server.
		other := nonLoopbackIP()
		if other == nil {
			t.Log("this host has no other address to try")
			return
		}
		if c, err := net.DialTimeout("tcp", net.JoinHostPort(other.String(), fmt.Sprint(addr.Port)), 2*time.Second); err == nil {
			c.Close()
			t.Fatalf("monitoring answered on %s", other)
		}
	})

	t.Run("kubernetes", func(t *testing.T) {
		b, err := os.ReadFile("../deploy/k8s/nats/networkpolicy.yaml")
		if err != nil {
			t.Fatal(err)
		}
		var np obj
		if err := yaml.Unmarshal(b, &np); err != nil {
			t.Fatal(err)
		}
		if str(np, "kind") != "NetworkPolicy" || str(np, "metadata", "namespace") != "nats" ||
			str(np, "spec", "podSelector", "matchLabels", "app.kubernetes.io/name") != "nats" {
			t.Fatalf("not a policy for the NATS pods in namespace nats: %v", np)
		}
		if types, _ := get(np, "spec", "policyTypes").([]any); len(types) != 1 || types[0] != "Ingress" {
			t.Fatalf("policyTypes %v, want [Ingress]", types)
		}
		// Who may reach each port: "" = anyone.
		from := map[int][]string{}
		rules, _ := get(np, "spec", "ingress").([]any)
		for _, r := range rules {
			var peers []string
			for _, p := range asList(get(r, "from")) {
				switch {
				case get(p, "namespaceSelector") != nil && get(p, "podSelector") == nil:
					peers = append(peers, "ns:"+str(p, "namespaceSelector", "matchLabels", "kubernetes.io/metadata.name"))
				case get(p, "podSelector") != nil && get(p, "namespaceSelector") == nil:
					peers = append(peers, "pod:"+str(p, "podSelector", "matchLabels", "app.kubernetes.io/name"))
				default:
					peers = append(peers, fmt.Sprint(p))
				}
			}
			if len(peers) == 0 {
				peers = []string{""}
			}
			ports := asList(get(r, "ports"))
			if len(ports) == 0 {
				t.Fatalf("a rule opens every port: %v", r)
			}
			for _, p := range ports {
				port, _ := get(p, "port").(int)
				from[port] = append(from[port], peers...)
			}
		}
		want := map[int]string{4222: "", 7777: "", 6222: "pod:nats", 8222: "ns:keda"}
		for port, peers := range from {
			w, ok := want[port]
			if !ok {
				t.Errorf("port %d is open to %v", port, peers)
				continue
			}
			if strings.Join(peers, ",") != w {
				t.Errorf("port %d is open to %q, want %q", port, peers, w)
			}
		}
		for port := range want {
			if _, ok := from[port]; !ok {
				t.Errorf("port %d is closed", port)
			}
		}
		// KEDA, the one reader, reads the monitoring port of the servers in namespace nats.
		k, err := os.ReadFile("../deploy/k8s/overlays/production/keda.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(k), "natsServerMonitoringEndpoint: \"nats-headless.nats.svc.cluster.local:8222\""); n == 0 {
			t.Error("keda.yaml does not read nats:8222")
		}
	})
}

func asList(v any) []any { l, _ := v.([]any); return l }

// nonLoopbackIP is an IPv4 address of this host other than loopback, or nil.
func nonLoopbackIP() net.IP {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP
		}
	}
	return nil
}
