package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
)

// natsContext is how a context reaches NATS directly, for the operator commands (admin
// bootstrap, events tail, dlq, accounting reconcile): the servers' URL and the files of its
// identity. Files are saved as absolute paths, so that the context works from any directory.
type natsContext struct {
	URL     string `json:"url"`
	NKey    string `json:"nkey,omitempty"`     // nkey seed file
	Creds   string `json:"creds,omitempty"`    // JWT credentials file
	TLSCA   string `json:"tls_ca,omitempty"`   // CA the servers' certificates are checked against
	TLSCert string `json:"tls_cert,omitempty"` // client certificate, with TLSKey
	TLSKey  string `json:"tls_key,omitempty"`
}

// opsNATS is the NATS connection of an operator command: --nats-url and the credential flags
// (each also its WASMWIZ_ variable), and --context.
type opsNATS struct {
	url, context *string
	auth         *natsAuth
	getenv       func(string) string
	stderr       io.Writer
	from         string // the context the URL or credentials came from, once resolved
	refused      sync.Once
}

// opsNATSFlags adds --nats-url, the NATS credential and TLS flags and --context to fs.
func opsNATSFlags(fs *flagSet) *opsNATS {
	return &opsNATS{
		url:     fs.String("nats-url", "", "NATS server URL(s), comma separated (default: the context's, else "+nats.DefaultURL+")"),
		auth:    natsAuthFlags(fs),
		context: fs.String("context", "", "the saved context whose NATS URL and credentials to use (default: the current one; wasmwiz context list)"),
		getenv:  fs.getenv,
		stderr:  fs.Output(),
	}
}

// resolve fills in what the flags and environment left empty from the context named by
// --context (else the current one), and returns the URL to dial:
//
//  1. --nats-url, else the context's NATS URL, else nats://127.0.0.1:4222;
//  2. credentials given by flags (user and password, creds or nkey) are used alone; without
//     any, the context's nkey or creds, but only when the URL is the context's own, so that an
//     identity is never offered to servers other than the ones it was saved for; the same for
//     each TLS file.
func (o *opsNATS) resolve() (string, error) {
	url := *o.url
	dir, err := configDir(o.getenv)
	if err != nil {
		if *o.context != "" {
			return "", err
		}
		dir = ""
	}
	cfg := &cliConfig{Contexts: map[string]cliContext{}}
	if dir != "" {
		if cfg, err = loadConfig(dir); err != nil {
			return "", err
		}
	}
	name := *o.context
	if name != "" {
		if _, ok := cfg.Contexts[name]; !ok {
			return "", usageError{fmt.Sprintf("no context %q (wasmwiz context list)", name)}
		}
	} else {
		name = cfg.Current
	}
	c, ok := cfg.Contexts[name]
	switch {
	case ok && c.NATS != nil:
		if url == "" {
			url = c.NATS.URL
		}
		if sameNATSURLs(url, c.NATS.URL) {
			if o.auth.fillFrom(c.NATS) {
				o.from = name
			}
		}
	case *o.context != "" && url == "":
		return "", usageError{fmt.Sprintf("context %q has no NATS settings: give --nats-url (wasmwiz login --nats-url … saves them with a context)", name)}
	}
	if url == "" {
		url = nats.DefaultURL
	}
	return url, nil
}

// fillFrom takes c's identity when the flags give none (and says so), and each TLS file the
// flags leave empty.
func (a *natsAuth) fillFrom(c *natsContext) (identity bool) {
	if *a.user == "" && *a.password == "" && *a.creds == "" && *a.nkey == "" {
		*a.nkey, *a.creds = c.NKey, c.Creds
		identity = true
	}
	for _, f := range []struct {
		flag  *string
		saved string
	}{{a.tlsCA, c.TLSCA}, {a.tlsCert, c.TLSCert}, {a.tlsKey, c.TLSKey}} {
		if *f.flag == "" {
			*f.flag = f.saved
		}
	}
	return identity
}

// connect resolves the flags and context and dials NATS as client name, then opts. The first
// subject the servers refuse to this identity closes the connection (so that the command fails
// at once instead of waiting for answers that never come) and says which identity it was.
func (o *opsNATS) connect(name string, opts ...nats.Option) (*nats.Conn, error) {
	url, err := o.resolve()
	if err != nil {
		return nil, err
	}
	hint := ""
	if o.from != "" {
		hint = fmt.Sprintf(" (the NATS identity of context %s; operator commands need an operator's: beside wasmwiz dev, --context dev-admin)", o.from)
	}
	onErr := nats.ErrorHandler(func(nc *nats.Conn, _ *nats.Subscription, err error) {
		if !errors.Is(err, nats.ErrPermissionViolation) {
			fmt.Fprintf(o.stderr, "wasmwiz: NATS: %v\n", err)
			return
		}
		o.refused.Do(func() {
			fmt.Fprintf(o.stderr, "wasmwiz: NATS refused this identity%s: %v\n", hint, err)
			nc.Close()
		})
	})
	nc, err := o.auth.connect(url, name, append([]nats.Option{onErr}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("%w%s", err, hint)
	}
	return nc, nil
}

// sameNATSURLs compares two comma-separated lists of NATS URLs, ignoring spaces and a
// trailing slash.
func sameNATSURLs(a, b string) bool {
	norm := func(s string) string {
		parts := strings.Split(s, ",")
		for i, p := range parts {
			parts[i] = strings.TrimRight(strings.TrimSpace(p), "/")
		}
		return strings.Join(parts, ",")
	}
	return norm(a) == norm(b)
}

// natsContextFlags are login's flags that save a context's NATS settings.
type natsContextFlags struct {
	url, nkey, creds, tlsCA, tlsCert, tlsKey *string
}

func addNATSContextFlags(fs *flagSet) *natsContextFlags {
	return &natsContextFlags{
		url:     fs.String("nats-url", "", "also save this NATS URL (comma separated) for the operator commands (events tail, dlq, accounting reconcile, admin bootstrap)"),
		nkey:    fs.String("nats-nkey", "", "with --nats-url: the nkey seed file to connect with"),
		creds:   fs.String("nats-creds", "", "with --nats-url: the JWT credentials file to connect with"),
		tlsCA:   fs.String("nats-tls-ca", "", "with --nats-url: the CA the NATS servers' certificates are checked against"),
		tlsCert: fs.String("nats-tls-cert", "", "with --nats-url: a client certificate (with --nats-tls-key)"),
		tlsKey:  fs.String("nats-tls-key", "", "with --nats-url: the private key of --nats-tls-cert"),
	}
}

// context is the NATS settings the flags give, files made absolute; nil without --nats-url.
func (f *natsContextFlags) context() (*natsContext, error) {
	if *f.url == "" {
		if *f.nkey != "" || *f.creds != "" || *f.tlsCA != "" || *f.tlsCert != "" || *f.tlsKey != "" {
			return nil, usageError{"the --nats-* files go with --nats-url"}
		}
		return nil, nil
	}
	if *f.nkey != "" && *f.creds != "" {
		return nil, usageError{"give --nats-nkey or --nats-creds, not both"}
	}
	if (*f.tlsCert == "") != (*f.tlsKey == "") {
		return nil, usageError{"--nats-tls-cert and --nats-tls-key go together"}
	}
	c := &natsContext{URL: *f.url}
	for _, p := range []struct {
		dst *string
		src string
	}{{&c.NKey, *f.nkey}, {&c.Creds, *f.creds}, {&c.TLSCA, *f.tlsCA}, {&c.TLSCert, *f.tlsCert}, {&c.TLSKey, *f.tlsKey}} {
		if p.src == "" {
			continue
		}
		abs, err := filepath.Abs(p.src)
		if err != nil {
			return nil, err
		}
		*p.dst = abs
	}
	return c, nil
}

// check dials the servers with the settings, as login checks the API key.
func (c *natsContext) check() error {
	zero := ""
	a := &natsAuth{user: &zero, password: &zero, creds: &c.Creds, nkey: &c.NKey, tlsCA: &c.TLSCA, tlsCert: &c.TLSCert, tlsKey: &c.TLSKey}
	nc, err := a.connect(c.URL, "wasmwiz-login")
	if err != nil {
		return err
	}
	nc.Close()
	return nil
}

// contextForNATS is the saved context whose NATS URL is url (load --nats takes its key and NATS
// identity): the current one first, else the first by name.
func contextForNATS(getenv func(string) string, url string) (cliContext, bool) {
	dir, err := configDir(getenv)
	if err != nil {
		return cliContext{}, false
	}
	cfg, err := loadConfig(dir)
	if err != nil {
		return cliContext{}, false
	}
	for _, n := range append([]string{cfg.Current}, slices.Sorted(mapKeys(cfg.Contexts))...) {
		if c, ok := cfg.Contexts[n]; ok && c.NATS != nil && sameNATSURLs(c.NATS.URL, url) {
			return c, true
		}
	}
	return cliContext{}, false
}
