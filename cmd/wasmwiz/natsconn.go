package main

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/nats-io/nats.go"
)

// natsAuth holds the NATS credentials and TLS settings that every command dialling NATS takes
// (roles, admin bootstrap, events tail, reconcile, load --nats), each flag also set by its
// environment variable (WASMWIZ_NATS_NKEY, ...). Shipped deployments give each role an nkey
// seed file and the CA that signed the NATS servers' certificates.
type natsAuth struct {
	user, password, creds, nkey, tlsCA, tlsCert, tlsKey *string
}

// natsAuthFlags adds --nats-user, --nats-password, --nats-creds, --nats-nkey, --nats-tls-ca,
// --nats-tls-cert and --nats-tls-key to fs.
func natsAuthFlags(fs *flagSet) *natsAuth {
	return &natsAuth{
		user:     fs.String("nats-user", "", "NATS user name (with --nats-password)"),
		password: fs.String("nats-password", "", "NATS password"),
		creds:    fs.String("nats-creds", "", "NATS credentials file (JWT and nkey seed)"),
		nkey:     fs.String("nats-nkey", "", "NATS nkey seed file (wasmwiz secrets generate makes one per role)"),
		tlsCA:    fs.String("nats-tls-ca", "", "CA certificate(s) the NATS servers' certificates are checked against; turns on TLS"),
		tlsCert:  fs.String("nats-tls-cert", "", "client certificate for NATS TLS (with --nats-tls-key), when the servers ask for one"),
		tlsKey:   fs.String("nats-tls-key", "", "private key of --nats-tls-cert"),
	}
}

// options are the connect options the flags ask for.
func (a *natsAuth) options() ([]nats.Option, error) {
	var opts []nats.Option
	n := 0
	if *a.user != "" || *a.password != "" {
		if *a.user == "" || *a.password == "" {
			return nil, usageError{"--nats-user and --nats-password go together"}
		}
		opts = append(opts, nats.UserInfo(*a.user, *a.password))
		n++
	}
	if *a.creds != "" {
		opts = append(opts, nats.UserCredentials(*a.creds))
		n++
	}
	if *a.nkey != "" {
		o, err := nats.NkeyOptionFromSeed(*a.nkey)
		if err != nil {
			return nil, fmt.Errorf("--nats-nkey %s: %w", *a.nkey, err)
		}
		opts = append(opts, o)
		n++
	}
	if n > 1 {
		return nil, usageError{"give one of --nats-user/--nats-password, --nats-creds and --nats-nkey"}
	}
	if *a.tlsCA != "" {
		opts = append(opts, nats.RootCAs(*a.tlsCA))
	}
	if (*a.tlsCert == "") != (*a.tlsKey == "") {
		return nil, usageError{"--nats-tls-cert and --nats-tls-key go together"}
	}
	if *a.tlsCert != "" {
		opts = append(opts, nats.ClientCert(*a.tlsCert, *a.tlsKey))
	}
	return opts, nil
}

// connect dials url with the flags' credentials and TLS, then opts.
func (a *natsAuth) connect(urls, name string, opts ...nats.Option) (*nats.Conn, error) {
	auth, err := a.options()
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(urls, append(append(auth, nats.Name(name)), opts...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", redactURLs(urls), err)
	}
	return nc, nil
}

// redactURLs drops the password from NATS URLs (comma separated) before they are shown.
func redactURLs(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			parts[i] = u.Redacted()
		}
	}
	return strings.Join(parts, ",")
}
