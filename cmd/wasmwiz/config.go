package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Contexts: where the client commands send their requests, and with which key. A context is a
// named API URL and key, kept in config.json in the user's config directory
// ($WASMWIZ_CONFIG_DIR, else $XDG_CONFIG_HOME/wasmwiz, else os.UserConfigDir()/wasmwiz; the
// file is 0600 in a 0700 directory, since it holds keys). `wasmwiz login` adds one, `wasmwiz
// dev` keeps "dev" (tenant dev's key) and "dev-admin" (its admin key) up to date with the port
// it really listens on, and `wasmwiz context` lists, switches and removes them.

// cliConfig is config.json.
type cliConfig struct {
	Current  string                `json:"current,omitempty"`
	Contexts map[string]cliContext `json:"contexts"`
}

// cliContext is one API to talk to.
type cliContext struct {
	URL  string       `json:"url"`
	Key  string       `json:"key"`
	NATS *natsContext `json:"nats,omitempty"` // for the operator commands that dial NATS
}

const defaultAPIURL = "http://127.0.0.1:8080"

// configDir is the directory of config.json.
func configDir(getenv func(string) string) (string, error) {
	if d := getenv("WASMWIZ_CONFIG_DIR"); d != "" {
		return d, nil
	}
	if d := getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "wasmwiz"), nil
	}
	d, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("no config directory (set WASMWIZ_CONFIG_DIR): %w", err)
	}
	return filepath.Join(d, "wasmwiz"), nil
}

// loadConfig reads config.json from dir; a missing file is an empty configuration.
func loadConfig(dir string) (*cliConfig, error) {
	c := &cliConfig{Contexts: map[string]cliContext{}}
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "config.json"), err)
	}
	if c.Contexts == nil {
		c.Contexts = map[string]cliContext{}
	}
	return c, nil
}

// save writes config.json to dir (made 0700 if missing) as a whole new 0600 file renamed over
// the old one, so that a reader never sees half of it.
func (c *cliConfig) save(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".config-*.json") // CreateTemp makes it 0600
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), filepath.Join(dir, "config.json"))
}

// updateConfig loads the configuration, lets change alter it, and saves it.
func updateConfig(getenv func(string) string, change func(*cliConfig) error) (string, error) {
	dir, err := configDir(getenv)
	if err != nil {
		return "", err
	}
	c, err := loadConfig(dir)
	if err != nil {
		return "", err
	}
	if err := change(c); err != nil {
		return "", err
	}
	return filepath.Join(dir, "config.json"), c.save(dir)
}

// validContextName: letters, digits, '-', '_' and '.', at most 64.
func validContextName(n string) bool {
	if n == "" || len(n) > 64 {
		return false
	}
	for _, r := range n {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// target is where one client command sends its requests, and why there.
type target struct {
	URL, Key string
	Context  string // the context it came from, if any
}

// resolveTarget picks the API URL and key of a client command:
//
//  1. --url / $WASMWIZ_URL and --key / $WASMWIZ_KEY, each on its own;
//  2. the context named by --context / $WASMWIZ_CONTEXT, else the current context; when a URL
//     was given, only a context of that very URL lends its key (the current one first), so that
//     a key is never sent to an API other than the one it was saved for;
//  3. without a context: http://127.0.0.1:8080 and ./wasmwiz-data/dev-api-key (a dev system
//     started in this directory).
func resolveTarget(getenv func(string) string, urlFlag, keyFlag, contextFlag string) (target, error) {
	t := target{URL: urlFlag, Key: keyFlag}
	dir, err := configDir(getenv)
	if err != nil && contextFlag != "" {
		return t, err
	}
	cfg := &cliConfig{Contexts: map[string]cliContext{}}
	if err == nil {
		if cfg, err = loadConfig(dir); err != nil {
			return t, err
		}
	}
	name := contextFlag
	if name != "" {
		if _, ok := cfg.Contexts[name]; !ok {
			return t, usageError{fmt.Sprintf("no context %q (wasmwiz context list)", name)}
		}
	} else if t.URL == "" {
		name = cfg.Current
	} else if t.Key == "" {
		// A URL without a key: the key of a context saved for that URL.
		names := slices.Sorted(mapKeys(cfg.Contexts))
		if cur, ok := cfg.Contexts[cfg.Current]; ok && sameURL(cur.URL, t.URL) {
			name = cfg.Current
		} else {
			for _, n := range names {
				if sameURL(cfg.Contexts[n].URL, t.URL) {
					name = n
					break
				}
			}
		}
	}
	if c, ok := cfg.Contexts[name]; ok {
		if t.URL == "" {
			t.URL = c.URL
		}
		if t.Key == "" && sameURL(c.URL, t.URL) {
			t.Key = c.Key
		}
		t.Context = name
	}
	if t.URL == "" {
		t.URL = defaultAPIURL
	}
	if t.Key == "" && t.Context == "" {
		if b, err := os.ReadFile(filepath.Join("wasmwiz-data", "dev-api-key")); err == nil {
			t.Key = strings.TrimSpace(string(b))
		}
	}
	if t.Key == "" {
		return t, usageError{"no API key: run wasmwiz login --url URL --key KEY (or wasmwiz dev), or pass --key or set WASMWIZ_KEY"}
	}
	return t, nil
}

// sameURL compares API URLs without a trailing slash.
func sameURL(a, b string) bool { return strings.TrimRight(a, "/") == strings.TrimRight(b, "/") }

// saveContext adds or replaces a context; it becomes the current one when makeCurrent is set or
// there is none.
func saveContext(getenv func(string) string, name string, c cliContext, makeCurrent bool) (string, error) {
	return updateConfig(getenv, func(cfg *cliConfig) error {
		cfg.Contexts[name] = c
		if makeCurrent || cfg.Current == "" {
			cfg.Current = name
		}
		return nil
	})
}

// checkAPIURL refuses a URL that is not http(s)://host[:port][/path].
func checkAPIURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usageError{fmt.Sprintf("--url %q: want http://host:port or https://host", s)}
	}
	return nil
}

// keyHint shows enough of a key to tell keys apart, never the secret: its first 10 characters.
func keyHint(k string) string {
	if len(k) <= 10 {
		return "…"
	}
	return k[:10] + "…"
}

const contextUsage = `usage: wasmwiz context <command>

  list                 the saved contexts (--json for scripts); * marks the current one
  use <name>           make <name> the current context
  remove <name>        forget a context (and its key)
  show                 where the next client command goes: URL, context, key prefix

Contexts are saved by 'wasmwiz login' and 'wasmwiz dev', in config.json in the user's config
directory ($WASMWIZ_CONFIG_DIR, else $XDG_CONFIG_HOME/wasmwiz, else ~/.config/wasmwiz).
--url/--key (WASMWIZ_URL/WASMWIZ_KEY) override a context; --context (WASMWIZ_CONTEXT) picks one.
A context may keep a NATS URL and identity too (login --nats-url …; dev saves them): the operator
commands (events tail, dlq, accounting reconcile, admin bootstrap) connect with it unless
--nats-url or the --nats-* credential flags say otherwise.`

// runContext lists, switches and removes contexts.
func runContext(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(stdout, contextUsage)
		if len(args) == 0 {
			return usageError{"missing command"}
		}
		return nil
	}
	sub, rest := args[0], args[1:]
	fs := newFlagSet("context "+sub, getenv, stderr)
	var asJSON *bool
	var u, k, ctxName *string
	switch sub {
	case "list":
		asJSON = fs.Bool("json", false, "print the contexts as JSON (keys left out)")
	case "show":
		u, k, ctxName = clientFlags(fs)
		asJSON = fs.Bool("json", false, "print as JSON")
	}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: wasmwiz context %s%s\n", sub, map[string]string{"use": " <name>", "remove": " <name>"}[sub])
		fs.PrintDefaults()
	}
	pos, err := fs.parseInterspersed(rest)
	if err != nil {
		return err
	}
	switch sub {
	case "list":
		if len(pos) != 0 {
			return usageError{"usage: wasmwiz context list [--json]"}
		}
		dir, err := configDir(getenv)
		if err != nil {
			return err
		}
		cfg, err := loadConfig(dir)
		if err != nil {
			return err
		}
		type row struct {
			Name    string `json:"name"`
			URL     string `json:"url"`
			Key     string `json:"key_prefix"`
			NATS    string `json:"nats_url,omitempty"`
			Current bool   `json:"current"`
		}
		rows := []row{}
		for _, n := range slices.Sorted(mapKeys(cfg.Contexts)) {
			c := cfg.Contexts[n]
			r := row{Name: n, URL: c.URL, Key: keyHint(c.Key), Current: n == cfg.Current}
			if c.NATS != nil {
				r.NATS = redactURLs(c.NATS.URL)
			}
			rows = append(rows, r)
		}
		if *asJSON {
			return writeJSON(stdout, rows)
		}
		if len(rows) == 0 {
			fmt.Fprintf(stderr, "no contexts in %s: wasmwiz login --url URL --key KEY, or wasmwiz dev\n", filepath.Join(dir, "config.json"))
			return nil
		}
		t := newTable(stdout, "CURRENT", "NAME", "URL", "KEY", "NATS")
		for _, r := range rows {
			t.row(map[bool]string{true: "*"}[r.Current], r.Name, r.URL, r.Key, r.NATS)
		}
		return t.flush()
	case "use":
		if len(pos) != 1 {
			return usageError{"usage: wasmwiz context use <name>"}
		}
		_, err := updateConfig(getenv, func(cfg *cliConfig) error {
			if _, ok := cfg.Contexts[pos[0]]; !ok {
				return usageError{fmt.Sprintf("no context %q (wasmwiz context list)", pos[0])}
			}
			cfg.Current = pos[0]
			return nil
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "current context: %s\n", pos[0])
	case "remove":
		if len(pos) != 1 {
			return usageError{"usage: wasmwiz context remove <name>"}
		}
		_, err := updateConfig(getenv, func(cfg *cliConfig) error {
			if _, ok := cfg.Contexts[pos[0]]; !ok {
				return usageError{fmt.Sprintf("no context %q (wasmwiz context list)", pos[0])}
			}
			delete(cfg.Contexts, pos[0])
			if cfg.Current == pos[0] {
				cfg.Current = ""
			}
			return nil
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "removed context %s\n", pos[0])
	case "show":
		if len(pos) != 0 {
			return usageError{"usage: wasmwiz context show [--url U] [--key K] [--context NAME] [--json]"}
		}
		t, err := resolveTarget(getenv, *u, *k, *ctxName)
		if err != nil {
			return err
		}
		var nc *natsContext // the context's NATS settings, for the operator commands
		if dir, err := configDir(getenv); err == nil && t.Context != "" {
			if cfg, err := loadConfig(dir); err == nil {
				nc = cfg.Contexts[t.Context].NATS
			}
		}
		if *asJSON {
			m := map[string]string{"url": t.URL, "context": t.Context, "key_prefix": keyHint(t.Key)}
			if nc != nil {
				m["nats_url"], m["nats_nkey"], m["nats_creds"] = redactURLs(nc.URL), nc.NKey, nc.Creds
			}
			return writeJSON(stdout, m)
		}
		from := t.Context
		if from == "" {
			from = "(none)"
		}
		fmt.Fprintf(stdout, "url      %s\ncontext  %s\nkey      %s\n", t.URL, from, keyHint(t.Key))
		if nc != nil {
			id := map[bool]string{true: "nkey " + nc.NKey, false: "creds " + nc.Creds}[nc.NKey != ""]
			if nc.NKey == "" && nc.Creds == "" {
				id = "no credentials"
			}
			fmt.Fprintf(stdout, "nats     %s  (%s)\n", redactURLs(nc.URL), id)
		}
	default:
		return usageError{"unknown context command " + sub + "\n\n" + contextUsage}
	}
	return nil
}

// mapKeys iterates over a map's keys.
func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// writeJSON prints v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
