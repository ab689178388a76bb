package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
)

// Every command's flags, as `-h` prints them: each names its variable, and Parse asked the
// environment for each.
var helpCommands = [][]string{
	{"dev"}, {"gateway"}, {"executor"}, {"accounting"}, {"accounting", "reconcile"}, {"accounting", "migrate"},
	{"admin", "bootstrap"}, {"secrets", "generate"}, {"events", "tail"}, {"dlq", "list"},
	{"run"}, {"modules", "list"}, {"keys", "list"}, {"usage"}, {"load"}, {"bench"},
	{"executions", "get"}, {"executions", "wait"}, {"version"},
}

func TestFlags_EveryFlagCanBeSetByEnvironment(t *testing.T) {
	flagLine := regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`)
	total := 0
	for _, cmd := range helpCommands {
		t.Run(strings.Join(cmd, "_"), func(t *testing.T) {
			asked := map[string]bool{}
			getenv := func(k string) string { asked[k] = true; return "" }
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), append(cmd, "-h"), getenv, &stdout, &stderr); code != 0 {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			help := stderr.String()
			flags := flagLine.FindAllStringSubmatch(help, -1)
			if len(flags) == 0 {
				t.Fatalf("no flags in the help:\n%s", help)
			}
			total += len(flags)
			for _, m := range flags {
				env := envName(m[1])
				if !asked[env] {
					t.Errorf("--%s: $%s was never read", m[1], env)
				}
				if !strings.Contains(help, "($"+env+")") {
					t.Errorf("--%s: the help does not name $%s", m[1], env)
				}
			}
		})
	}
	t.Logf("%d flags over %d commands", total, len(helpCommands))
}

func TestFlags_MalformedEnvironmentIsAUsageError(t *testing.T) {
	for _, tc := range []struct {
		cmd      []string
		env, val string
	}{
		{[]string{"executor"}, "WASMWIZ_WORKERS", "many"},
		{[]string{"gateway"}, "WASMWIZ_DRAIN_TIMEOUT", "30"},
		{[]string{"load"}, "WASMWIZ_RATE", "fast"},
		{[]string{"load"}, "WASMWIZ_JSON", "yes please"},
	} {
		getenv := func(k string) string {
			if k == tc.env {
				return tc.val
			}
			return ""
		}
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), tc.cmd, getenv, &stdout, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), "$"+tc.env) {
			t.Errorf("%v with %s=%q: exit %d, %q; want 2 and a message naming the variable", tc.cmd, tc.env, tc.val, code, stderr.String())
		}
	}
}

// The environment sets flags; the command line wins over it.
func TestFlags_CommandLineWinsOverEnvironment(t *testing.T) {
	env := map[string]string{
		"WASMWIZ_URL": "http://127.0.0.1:1", "WASMWIZ_KEY": "k", "WASMWIZ_MODULE": "/nonexistent/m.wasm",
		"WASMWIZ_CONCURRENCY": "0",
	}
	getenv := func(k string) string { return env[k] }
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"load"}, getenv, &stdout, &stderr); code != 2 ||
		!strings.Contains(stderr.String(), "--concurrency must be at least 1") {
		t.Fatalf("WASMWIZ_CONCURRENCY=0 not applied: exit %d, %s", code, stderr.String())
	}
	stderr.Reset()
	// With --concurrency 2 the run gets as far as reading the module named by $WASMWIZ_MODULE.
	if code := run(context.Background(), []string{"load", "--concurrency", "2"}, getenv, &stdout, &stderr); code != 1 ||
		!strings.Contains(stderr.String(), "/nonexistent/m.wasm") {
		t.Fatalf("--concurrency 2 did not win: exit %d, %s", code, stderr.String())
	}
}
