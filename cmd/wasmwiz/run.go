package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/wasmwiz/wasmwiz/schemas"
)

const usage = `wasmwiz runs untrusted WebAssembly (WASI preview 1) modules as a service.

Usage: wasmwiz <command> [flags]

Servers:
  dev          everything in one process: embedded NATS + JetStream, gateway, executor, accounting
  gateway      the REST + NATS API role
  executor     an executor node (runs guests in worker processes)
  accounting   the usage/billing role (Postgres with DATABASE_URL, else SQLite)
  worker       an executor's child process (started by executors, not by hand)

Operators:
  admin bootstrap  create the streams and a first admin key, straight over NATS
  secrets generate  make the secret files a deployment mounts (mode 0600)
  secrets nats-tenant  give a tenant direct NATS access: its own account and nkey seed
  events tail      print events live as JSON lines, straight from the events stream
  accounting reconcile  compare the events stream with the usage accounting stored
  accounting migrate    apply the accounting database migrations and exit
  dlq              dead letters: list, show, replay (with their execution ids) or purge them

Clients (they talk to the current context: see login and context):
  login        check an API key and save it with its URL as a context: login --url U --key K
  context      list, use, remove or show the saved contexts
  run          run a module: wasmwiz run [flags] <module.wasm | sha256:id> [--] [args...]
  modules      upload, list, get or delete modules
  executions   get an execution, or wait for an async one to end: executions get|wait <id>
  keys         keys, tokens and (admin) tenants: list, create, revoke, rotate, token, ...
  usage        your usage (executions, wall time, memory, bytes) by day, module or key
  load         load generator for a running WasmWiz (REST or NATS): throughput, latency percentiles
  bench        start a system in-process and measure it side by side with its floors and peers
  version      the binary's version, VCS revision and Go toolchain
  completion   a shell completion script: source <(wasmwiz completion bash)   (or zsh)

Every flag can also be set by environment: --some-flag by WASMWIZ_SOME_FLAG (e.g.
WASMWIZ_HTTP_ADDR); the command line wins, and a malformed value is an error. Lists print
tables; --json prints JSON for scripts.
Run 'wasmwiz <command> -h' for a command's usage and flags.
`

// run is the whole program, testable: it returns the exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "dev":
		err = runDev(ctx, rest, getenv, stdout, stderr)
	case "gateway":
		err = runGatewayCmd(ctx, rest, getenv, stdout, stderr)
	case "executor":
		err = runExecutorCmd(ctx, rest, getenv, stdout, stderr)
	case "accounting":
		if len(rest) > 0 && rest[0] == "reconcile" {
			err = runReconcile(ctx, rest[1:], getenv, stdout, stderr)
			break
		}
		if len(rest) > 0 && rest[0] == "migrate" {
			err = runMigrate(ctx, rest[1:], getenv, stdout, stderr)
			break
		}
		err = runAccountingCmd(ctx, rest, getenv, stdout, stderr)
	case "worker":
		return runWorker(ctx)
	case "run":
		err = runClientRun(ctx, rest, getenv, stdout, stderr)
	case "admin":
		err = runAdmin(ctx, rest, getenv, stdout, stderr)
	case "secrets":
		err = runSecrets(ctx, rest, getenv, stdout, stderr)
	case "keys":
		err = runKeys(ctx, rest, getenv, stdout, stderr)
	case "modules":
		err = runClientModules(ctx, rest, getenv, stdout, stderr)
	case "executions":
		err = runClientExecutions(ctx, rest, getenv, stdout, stderr) // executions.go
	case "version", "--version":
		err = runVersion(rest, getenv, stdout, stderr) // version.go
	case "usage":
		err = runClientUsage(ctx, rest, getenv, stdout, stderr)
	case "events":
		err = runEvents(ctx, rest, getenv, stdout, stderr)
	case "dlq":
		err = runDLQ(ctx, rest, getenv, stdout, stderr)
	case "load":
		err = runLoad(ctx, rest, getenv, stdout, stderr)
	case "bench":
		err = runBench(ctx, rest, getenv, stdout, stderr)
	case "login":
		err = runLogin(ctx, rest, getenv, os.Stdin, stdout, stderr) // login.go
	case "context":
		err = runContext(rest, getenv, stdout, stderr) // config.go
	case "completion":
		err = runCompletion(rest, stdout) // completion.go
	case "__complete": // what the completion scripts ask
		complete(ctx, rest, getenv, stdout)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "wasmwiz: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		var ee exitError
		if errors.As(err, &ee) {
			fmt.Fprintf(stderr, "wasmwiz %s: %v\n", cmd, err)
			if ee.code > 0 && ee.code < 256 {
				return ee.code
			}
			return 1
		}
		var ue usageError
		if errors.As(err, &ue) {
			if n := len(rest); n > 0 && (rest[n-1] == "-h" || rest[n-1] == "--help" || rest[n-1] == "-help") {
				fmt.Fprintln(stdout, ue.msg) // asked for: a command's usage, exit 0
				return 0
			}
			fmt.Fprintf(stderr, "wasmwiz %s: %v\n", cmd, err)
			return 2
		}
		fmt.Fprintf(stderr, "wasmwiz %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// flagSet is a flag.FlagSet every flag of which can also be set by environment: --some-flag by
// WASMWIZ_SOME_FLAG. Define flags with the flag package's own methods (String, Int, Duration,
// Var, …); Parse applies the environment to all of them, then the command line, which wins.
// An empty variable counts as unset; a malformed one is a usage error naming the variable.
type flagSet struct {
	*flag.FlagSet
	getenv     func(string) string
	envApplied bool
}

func newFlagSet(name string, getenv func(string) string, stderr io.Writer) *flagSet {
	fs := flag.NewFlagSet("wasmwiz "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return &flagSet{FlagSet: fs, getenv: getenv}
}

// envName is the variable that sets a flag: WASMWIZ_ and the flag's name in upper case, with
// "-" as "_" (http-addr: WASMWIZ_HTTP_ADDR).
func envName(flagName string) string {
	return "WASMWIZ_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Parse sets every flag from its environment variable, then parses args.
func (f *flagSet) Parse(args []string) error {
	if err := f.applyEnv(); err != nil {
		return err
	}
	return f.FlagSet.Parse(args)
}

// applyEnv runs once per flag set: it names each flag's variable in its help and sets the flags
// whose variable is set.
func (f *flagSet) applyEnv() error {
	if f.envApplied {
		return nil
	}
	f.envApplied = true
	var err error
	f.VisitAll(func(fl *flag.Flag) {
		env := envName(fl.Name)
		fl.Usage += " ($" + env + ")"
		v := f.getenv(env)
		if v == "" || err != nil {
			return
		}
		if serr := fl.Value.Set(v); serr != nil {
			err = usageError{fmt.Sprintf("$%s=%q: invalid value for --%s: %v", env, v, fl.Name, serr)}
		}
	})
	return err
}

// parseInterspersed parses flags that may come after positional arguments
// ("keys tenant-create acme --tier free"); the positionals are returned in order.
func (f *flagSet) parseInterspersed(args []string) ([]string, error) {
	var pos []string
	for {
		if err := f.Parse(args); err != nil {
			return nil, err
		}
		if f.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, f.Arg(0))
		args = f.Args()[1:]
	}
}

// tiersFlag adds --tiers-file; the returned func reads it (or gives the default tiers).
func (f *flagSet) tiersFlag() func() (map[string]schemas.Tier, error) {
	path := f.String("tiers-file", "", "JSON tiers file laid over the default tiers; every role must read the same one")
	return func() (map[string]schemas.Tier, error) {
		if *path == "" {
			return schemas.DefaultTiers(), nil
		}
		b, err := os.ReadFile(*path)
		if err != nil {
			return nil, err
		}
		return schemas.ParseTiers(b)
	}
}

// newLogger logs JSON (production) or text (dev) to w at the level in $WASMWIZ_LOG_LEVEL.
func newLogger(w io.Writer, getenv func(string) string, text bool) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(getenv("WASMWIZ_LOG_LEVEL")))
	opts := &slog.HandlerOptions{Level: level}
	if text {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func mkdirData(dir string) error {
	return os.MkdirAll(dir, 0o700)
}
