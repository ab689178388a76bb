package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/wasmwiz/wasmwiz/gateway"
	"github.com/wasmwiz/wasmwiz/schemas"
)

func TestSecretsGenerate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "secrets")
	gen := func(extra ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		args := append([]string{"secrets", "generate", "--dir", dir, "--postgres-host", "db:5433"}, extra...)
		if code := run(context.Background(), args, func(string) string { return "" }, &out, &errb); code != 0 {
			t.Fatalf("exit %d: %s", code, errb.String())
		}
		return out.String()
	}
	read := func(name string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	gen()
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("dir: %v %v, want 0700", fi.Mode().Perm(), err)
	}
	for _, name := range []string{"postgres-password", "pgpass", "jwt-key.pem"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
	pw := read("postgres-password")
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(pw) {
		t.Errorf("password %q", pw)
	}
	if got, want := read("pgpass"), "db:5433:wasmwiz:wasmwiz:"+pw+"\n"; got != want {
		t.Errorf("pgpass %q, want %q", got, want)
	}
	if _, err := gateway.LoadSigner(filepath.Join(dir, "jwt-key.pem"), false); err != nil {
		t.Errorf("jwt key: %v", err)
	}
	jwt := read("jwt-key.pem")

	// Again: nothing is replaced.
	if out := gen(); !strings.Contains(out, "kept") || strings.Contains(out, "wrote") {
		t.Errorf("second run: %s", out)
	}
	if read("postgres-password") != pw || read("jwt-key.pem") != jwt {
		t.Error("second run changed a secret")
	}
	// --force rotates all of them.
	gen("--force")
	if read("postgres-password") == pw || read("jwt-key.pem") == jwt || !strings.Contains(read("pgpass"), read("postgres-password")) {
		t.Error("--force did not rotate the secrets consistently")
	}
}

func TestSecretsGenerate_NATS(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "secrets")
	wasmwiz := func(args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		if code := run(context.Background(), args, func(string) string { return "" }, &out, &errb); code != 0 {
			t.Fatalf("wasmwiz %v: exit %d: %s", args, code, errb.String())
		}
		return out.String()
	}
	read := func(name string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	wasmwiz("secrets", "generate", "--dir", dir)
	roles := read(natsRolesConf)
	seeds := map[string]string{}
	for _, role := range natsRoles {
		pub, err := readSeedPublic(filepath.Join(dir, natsRoleSeed(role)))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(roles, pub) {
			t.Errorf("%s does not list %s's key", natsRolesConf, role)
		}
		seeds[role] = read(natsRoleSeed(role))
	}
	for _, name := range []string{natsRolesConf, natsTenantsConf, natsCA, natsServerCert, natsServerKey, natsRoleSeed("gateway")} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 0600", name, fi, err)
		}
	}
	// The servers' certificate is the CA's, for compose's and the Helm chart's names, for
	// clients and (as a client certificate) routes.
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(read(natsCA))) {
		t.Fatal("no CA certificate")
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, natsServerCert), filepath.Join(dir, natsServerKey))
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	for _, name := range []string{"nats1", "nats3", "nats.nats.svc.cluster.local", "nats-2.nats-headless", "nats-0.nats-headless.nats.svc.cluster.local", "127.0.0.1"} {
		for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
			if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: pool, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
				t.Errorf("certificate for %s (usage %v): %v", name, usage, err)
			}
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "evil.example", Roots: pool}); err == nil {
		t.Error("the certificate is valid for any name")
	}

	// Again: kept. A tenant: its account, with permissions; removed again: gone.
	if out := wasmwiz("secrets", "generate", "--dir", dir); strings.Contains(out, "wrote") {
		t.Errorf("second run wrote: %s", out)
	}
	if out := wasmwiz("secrets", "nats-tenant", "--dir", dir, "acme"); !strings.Contains(out, "(and the CA "+filepath.Join(dir, natsCA)+")") {
		t.Errorf("nats-tenant beside a CA does not name it: %s", out)
	}
	pub, err := readSeedPublic(filepath.Join(dir, natsTenantSeed("acme")))
	if err != nil {
		t.Fatal(err)
	}
	if tc := read(natsTenantsConf); !strings.Contains(tc, `"TENANT_acme"`) || !strings.Contains(tc, pub) || !strings.Contains(tc, `publish: {allow: ["wasmwiz.api.v1.>"]}`) {
		t.Errorf("tenants conf: %s", tc)
	}
	wasmwiz("secrets", "nats-tenant", "--dir", dir, "--remove", "acme")
	if tc := read(natsTenantsConf); strings.Contains(tc, "acme") {
		t.Errorf("removed tenant still listed: %s", tc)
	}
	// dev's directory has no CA (its NATS speaks no TLS): none is named.
	devDir := t.TempDir()
	if _, err := devNATSConfig(devDir, schemas.DefaultTiers()); err != nil {
		t.Fatal(err)
	}
	if out := wasmwiz("secrets", "nats-tenant", "--dir", devDir, "acme"); strings.Contains(out, "CA") || !strings.Contains(out, "restart") {
		t.Errorf("nats-tenant without a CA: %s", out)
	}
	var errb bytes.Buffer
	if code := run(context.Background(), []string{"secrets", "nats-tenant", "--dir", dir, "../x"}, func(string) string { return "" }, &bytes.Buffer{}, &errb); code != 2 {
		t.Errorf("a bad tenant id: exit %d %s", code, errb.String())
	}
	// --force replaces every seed.
	wasmwiz("secrets", "generate", "--dir", dir, "--force")
	for role, old := range seeds {
		if read(natsRoleSeed(role)) == old {
			t.Errorf("--force kept %s's seed", role)
		}
	}
}

// TestSecretsGenerate_TiersFile: nats-roles.conf names the tiers' queues one by one (a stream
// name is one subject token, no wildcard matches its prefix), so generate takes the tiers file
// the roles read: a tier it adds is the executor's to look up and pull, and without the file
// it is not.
func TestSecretsGenerate_TiersFile(t *testing.T) {
	tiers := filepath.Join(t.TempDir(), "tiers.json")
	if err := os.WriteFile(tiers, []byte(`{"team": {"memory_mb": 256, "wall_time_ms": 10000, "module_size": 26214400,
		"in_flight": 5, "stdin_max": 1048576, "stdout_max": 1048576, "priority": 2}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	team := []string{`"$JS.API.STREAM.INFO.WASMWIZ_EXEC_TEAM"`, `"$JS.API.CONSUMER.INFO.WASMWIZ_EXEC_TEAM.exec-team"`,
		`"$JS.API.CONSUMER.MSG.NEXT.WASMWIZ_EXEC_TEAM.exec-team"`, `"$JS.ACK.WASMWIZ_EXEC_TEAM.exec-team.>"`}
	for _, tc := range []struct {
		args     []string
		withTeam bool
	}{{nil, false}, {[]string{"--tiers-file", tiers}, true}} {
		dir := t.TempDir()
		var out, errb bytes.Buffer
		args := append([]string{"secrets", "generate", "--dir", dir}, tc.args...)
		if code := run(context.Background(), args, func(string) string { return "" }, &out, &errb); code != 0 {
			t.Fatalf("%v: exit %d: %s", tc.args, code, errb.String())
		}
		b, err := os.ReadFile(filepath.Join(dir, natsRolesConf))
		if err != nil {
			t.Fatal(err)
		}
		conf := string(b)
		for _, s := range team {
			if strings.Contains(conf, s) != tc.withTeam {
				t.Errorf("%v: nats-roles.conf has %s: %v, want %v", tc.args, s, !tc.withTeam, tc.withTeam)
			}
		}
		if !strings.Contains(conf, `"$JS.API.STREAM.INFO.WASMWIZ_EXEC_FREE"`) || strings.Contains(conf, `"$JS.API.STREAM.INFO.*"`) {
			t.Errorf("%v: the free tier's queue not named, or every stream's info allowed:\n%s", tc.args, conf)
		}
	}
	var errb bytes.Buffer
	if code := run(context.Background(), []string{"secrets", "generate", "--dir", t.TempDir(), "--tiers-file", filepath.Join(t.TempDir(), "none.json")},
		func(string) string { return "" }, &bytes.Buffer{}, &errb); code != 2 {
		t.Errorf("a missing tiers file: exit %d, want 2 (%s)", code, errb.String())
	}
}
