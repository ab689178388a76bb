package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/wasmwiz/wasmwiz/internal/natsroles"
	"github.com/wasmwiz/wasmwiz/internal/streams"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// The NATS credentials a deployment generates (`wasmwiz secrets generate`, and `wasmwiz dev` in
// its data dir), all in one directory:
//
//	nats-<role>.nk          the nkey seed of each role's user in account WASMWIZ (gateway,
//	                        executor, accounting, admin: bootstrap and operator tools)
//	nats-roles.conf         those users' public keys, included by wasmwiz-account.conf
//	nats-tenant-<id>.nk     a direct-NATS tenant's seed (`wasmwiz secrets nats-tenant <id>`)
//	nats-tenant-<id>.pub    its public key; nats-tenants.conf is rebuilt from these
//	nats-tenants.conf       one account per tenant that can reach only the API
//	nats-ca.pem             the CA that signed the servers' certificate (roles: --nats-tls-ca)
//	nats-server.pem, -key   the NATS servers' certificate (clients and routes)
var natsRoles = []string{"gateway", "executor", "accounting", "admin"}

const (
	natsRolesConf   = "nats-roles.conf"
	natsTenantsConf = "nats-tenants.conf"
	natsCA          = "nats-ca.pem"
	natsServerCert  = "nats-server.pem"
	natsServerKey   = "nats-server-key.pem"
)

func natsRoleSeed(role string) string { return "nats-" + role + ".nk" }

func natsTenantSeed(id string) string { return "nats-tenant-" + id + ".nk" }

// defaultNATSHosts are the names the servers' certificate is made for: docker-compose's nodes,
// the NATS Helm chart's Services and pods (release "nats" in namespace "nats"), and loopback.
const defaultNATSHosts = "nats1,nats2,nats3,nats,nats.nats.svc,nats.nats.svc.cluster.local," +
	"*.nats-headless,*.nats-headless.nats.svc,*.nats-headless.nats.svc.cluster.local,localhost,127.0.0.1"

// writeSecretFile writes content to path with mode 0600 whatever the umask, atomically.
func writeSecretFile(path string, content []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, content, 0o600); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// readSeedPublic reads an nkey seed file and returns its user public key.
func readSeedPublic(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	kp, err := nkeys.ParseDecoratedNKey(b)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return "", err
	}
	if !nkeys.IsValidPublicUserKey(pub) {
		return "", fmt.Errorf("%s: not a user nkey", path)
	}
	return pub, nil
}

// ensureUserSeed makes a user nkey seed at path unless a valid one is there (or force), and
// returns its public key.
func ensureUserSeed(path string, force bool, wrote func(string)) (string, error) {
	if !force && fileExists(path) {
		return readSeedPublic(path)
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		return "", err
	}
	seed, err := kp.Seed()
	if err != nil {
		return "", err
	}
	if err := writeSecretFile(path, append(seed, '\n')); err != nil {
		return "", err
	}
	wrote(path)
	return kp.PublicKey()
}

// natsRoleInbox is the inbox prefix of the roles whose users have permissions (natsroles.Inbox).
func natsRoleInbox(role string) (string, bool) { return natsroles.Inbox(role) }

// natsRolePermissions is what nats-roles.conf gives role's user ("": everything in WASMWIZ) in a
// deployment of tiers, as natsroles.For says.
func natsRolePermissions(role string, tiers map[string]schemas.Tier) string {
	p, ok := natsroles.For(role, streams.TierNames(tiers))
	if !ok {
		return ""
	}
	q := func(l []string) string {
		var b strings.Builder
		for i, x := range l {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%q", x)
		}
		return b.String()
	}
	pub := fmt.Sprintf("allow: [%s]", q(p.Publish))
	if len(p.PublishDeny) > 0 {
		pub += fmt.Sprintf(", deny: [%s]", q(p.PublishDeny))
	}
	s := fmt.Sprintf("permissions: {publish: {%s}, subscribe: {allow: [%s]}", pub, q(p.Subscribe))
	if p.Responses > 0 {
		s += fmt.Sprintf(", allow_responses: {max: 1, expires: %q}", p.Responses.String())
	}
	return s + "}"
}

// ensureNATSRoles makes each role's seed (keeping those that exist unless force) and writes
// nats-roles.conf with their public keys and permissions for a deployment of tiers: the
// executor's names each tier's queue (natsroles.For), so a tier added later needs the file
// written again.
func ensureNATSRoles(dir string, tiers map[string]schemas.Tier, force bool, wrote func(string)) error {
	var b strings.Builder
	b.WriteString("# Made by `wasmwiz secrets generate` (or `wasmwiz dev`): the WasmWiz roles' users in account\n# WASMWIZ, by nkey public key; each role holds its seed (nats-<role>.nk). The executor and\n# accounting may publish only what their work publishes, for the tiers of the tiers file it was\n# made with (SECURITY.md). Do not edit.\nusers: [\n")
	for _, role := range natsRoles {
		pub, err := ensureUserSeed(filepath.Join(dir, natsRoleSeed(role)), force, wrote)
		if err != nil {
			return err
		}
		if p := natsRolePermissions(role, tiers); p != "" {
			fmt.Fprintf(&b, "  {nkey: %q, %s} # %s\n", pub, p, role)
		} else {
			fmt.Fprintf(&b, "  {nkey: %q} # %s\n", pub, role)
		}
	}
	b.WriteString("]\n")
	return writeIfChanged(filepath.Join(dir, natsRolesConf), []byte(b.String()), wrote)
}

// ensureNATSTenant makes a direct-NATS tenant's seed (kept if it exists, unless force) and
// rebuilds nats-tenants.conf.
func ensureNATSTenant(dir, id string, force bool, wrote func(string)) error {
	if !schemas.ValidToken(id) {
		return usageError{fmt.Sprintf("%q is not a tenant id", id)}
	}
	pub, err := ensureUserSeed(filepath.Join(dir, natsTenantSeed(id)), force, wrote)
	if err != nil {
		return err
	}
	if err := writeIfChanged(filepath.Join(dir, "nats-tenant-"+id+".pub"), []byte(pub+"\n"), wrote); err != nil {
		return err
	}
	return writeNATSTenants(dir, wrote)
}

// removeNATSTenant deletes a tenant's seed and public key and rebuilds nats-tenants.conf.
func removeNATSTenant(dir, id string, wrote func(string)) error {
	if !schemas.ValidToken(id) {
		return usageError{fmt.Sprintf("%q is not a tenant id", id)}
	}
	pub := filepath.Join(dir, "nats-tenant-"+id+".pub")
	if !fileExists(pub) {
		return usageError{fmt.Sprintf("tenant %s has no NATS account in %s", id, dir)}
	}
	for _, p := range []string{pub, filepath.Join(dir, natsTenantSeed(id))} {
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	return writeNATSTenants(dir, wrote)
}

// writeNATSTenants writes nats-tenants.conf: an account TENANT_<id> for each nats-tenant-<id>.pub
// in dir. A tenant's user may publish only to the API and subscribe only to inboxes; its account
// imports the API from WASMWIZ and has nothing else (no JetStream, no other subjects).
func writeNATSTenants(dir string, wrote func(string)) error {
	pubs, err := filepath.Glob(filepath.Join(dir, "nats-tenant-*.pub"))
	if err != nil {
		return err
	}
	slices.Sort(pubs)
	var b strings.Builder
	b.WriteString("# Made by `wasmwiz secrets nats-tenant <id>` from the nats-tenant-<id>.pub files beside it:\n" +
		"# one NATS account per direct-NATS tenant, included inside `accounts { }`. Do not edit; reload\n" +
		"# the servers after a change (nats-server --signal reload, or SIGHUP).\n")
	for _, p := range pubs {
		id := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), "nats-tenant-"), ".pub")
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		pub := strings.TrimSpace(string(raw))
		if !schemas.ValidToken(id) || !nkeys.IsValidPublicUserKey(pub) {
			return fmt.Errorf("%s: not a tenant's public nkey", p)
		}
		fmt.Fprintf(&b, `%q {
  users: [
    {nkey: %q, permissions: {publish: {allow: ["wasmwiz.api.v1.>"]}, subscribe: {allow: ["_INBOX.>"]}}}
  ]
  imports: [
    {service: {account: WASMWIZ, subject: "wasmwiz.api.v1.>"}}
  ]
}
`, "TENANT_"+id, pub)
	}
	return writeIfChanged(filepath.Join(dir, natsTenantsConf), []byte(b.String()), wrote)
}

func writeIfChanged(path string, content []byte, wrote func(string)) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, content) {
		return nil
	}
	if err := writeSecretFile(path, content); err != nil {
		return err
	}
	wrote(path)
	return nil
}

// ensureNATSTLS makes a CA and a certificate for the NATS servers signed by it (for clients and,
// as a client certificate too, for routes), unless all three files exist (or force). The CA's
// private key is not kept: adding a name means making all three anew (--force).
func ensureNATSTLS(dir string, hosts []string, force bool, wrote func(string)) error {
	if !force && fileExists(filepath.Join(dir, natsCA)) && fileExists(filepath.Join(dir, natsServerCert)) && fileExists(filepath.Join(dir, natsServerKey)) {
		return nil
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	ca := &x509.Certificate{
		SerialNumber:          randSerial(),
		Subject:               pkix.Name{CommonName: "WasmWiz NATS CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(5, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	srv := &x509.Certificate{
		SerialNumber: randSerial(),
		Subject:      pkix.Name{CommonName: "WasmWiz NATS server"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(5, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if h = strings.TrimSpace(h); h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			srv.IPAddresses = append(srv.IPAddresses, ip)
		} else {
			srv.DNSNames = append(srv.DNSNames, h)
		}
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srv, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name, typ string
		der       []byte
	}{{natsCA, "CERTIFICATE", caDER}, {natsServerCert, "CERTIFICATE", srvDER}, {natsServerKey, "PRIVATE KEY", keyDER}} {
		path := filepath.Join(dir, f.name)
		if err := writeSecretFile(path, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der})); err != nil {
			return err
		}
		wrote(path)
	}
	return nil
}

func randSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return n
}
