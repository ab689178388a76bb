package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmwiz/wasmwiz/gateway"
	"github.com/wasmwiz/wasmwiz/internal/bench"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// runBench is `wasmwiz bench`: it starts a whole WasmWiz in this process (startSystem, in a
// temporary directory, on free ports, accounting on SQLite), makes a key on the unlimited tier,
// and lets bench.Run measure it beside its floors and peers.
func runBench(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench", getenv, stderr)
	quick := fs.Bool("quick", false, "short cells (0.6s) for a quick look")
	cellDur := fs.Duration("cell", 2*time.Second, "how long each cell sends")
	concs := fs.String("concurrency", "1,16,64", "concurrency levels, comma-separated")
	modulesFlag := fs.String("modules", strings.Join(bench.ModuleNames, ","), "modules: echo (tiny .wat), probe (Go wasip1 SHA-256), cpu (1M-round integer loop)")
	modesFlag := fs.String("modes", strings.Join(bench.Modes, ","), "modes to measure")
	workers := fs.Int("workers", 0, "executor worker processes (default: the executor's default)")
	asJSON := fs.Bool("json", false, "print the results as JSON")
	progress := fs.Bool("progress", false, "progress line on stderr even when it is not a terminal")
	cpuProfile := fs.String("cpuprofile", "", "write CPU profiles of this process (<path>.<module>.c<N>), one per --profile-mode cell")
	memProfile := fs.String("memprofile", "", "write an allocation profile (alloc_space since start) after the run")
	profileMode := fs.String("profile-mode", "rest", "the mode whose cells --cpuprofile covers")
	tierName := fs.String("tier", schemas.TierUnlimited, "the bench tenant's tier: a tier with rate limits adds the limiter's work to every execution (raise its limits with --tiers-file)")
	loadTiers := fs.tiersFlag()
	wazeroBin := fs.String("wazero", "", "wazero CLI for peer-process (default: on PATH, else go install'ed into the user cache dir)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"unexpected arguments: " + strings.Join(fs.Args(), " ")}
	}
	cfg := bench.Config{CellDuration: *cellDur, Modules: strings.Split(*modulesFlag, ","), Modes: strings.Split(*modesFlag, ","),
		JSON: *asJSON, CPUProfile: *cpuProfile, MemProfile: *memProfile, ProfileMode: *profileMode, Wazero: *wazeroBin}
	if *quick {
		cfg.CellDuration = 600 * time.Millisecond
	}
	for _, s := range strings.Split(*concs, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return usageError{fmt.Sprintf("bad concurrency %q", s)}
		}
		cfg.Concurrency = append(cfg.Concurrency, n)
	}
	if err := cfg.Validate(); err != nil {
		return usageError{err.Error()}
	}
	if *progress || isTerminal(stderr) {
		cfg.Progress = stderr
	}
	if cfg.Progress != nil {
		fmt.Fprint(cfg.Progress, "\r\033[Kstarting the system…")
	}

	dir, err := os.MkdirTemp("", "wasmwiz-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	tiers, err := loadTiers()
	if err != nil {
		return usageError{err.Error()}
	}
	if _, ok := tiers[*tierName]; !ok {
		return usageError{fmt.Sprintf("unknown tier %q", *tierName)}
	}
	var key string
	sys, err := startSystem(ctx, systemConfig{
		DataDir: dir, NATSAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Workers: *workers, Tiers: tiers,
		Logger:   newLogger(io.Discard, getenv, false), // production logging (JSON at info), written nowhere
		Registry: newRegistry(),
		Bootstrap: func(ctx context.Context, js jetstream.JetStream) error {
			admin, err := gateway.NewAdmin(ctx, js, tiers)
			if err != nil {
				return err
			}
			if _, err := admin.CreateTenant(ctx, "bench", *tierName); err != nil {
				return err
			}
			k, err := admin.CreateKey(ctx, schemas.CreateKeyRequest{TenantID: "bench", Name: "bench"})
			if err != nil {
				return err
			}
			key = k.Key
			return nil
		},
	})
	if err != nil {
		return err
	}
	defer sys.stop()
	return bench.Run(ctx, cfg, bench.System{URL: sys.url, NATSURL: sys.ns.ClientURL(), Key: key, Workers: sys.workers,
		NATSCounts: func() (bench.NATSCounts, error) { return natsCounts(sys.ns) }}, stdout)
}

// natsCounts reads the embedded server's message totals by connection name and its streams'
// last sequences, for the bench's messages per execution.
func natsCounts(ns *server.Server) (bench.NATSCounts, error) {
	c := bench.NATSCounts{Conns: map[string]bench.MsgCounts{}, Streams: map[string]bench.StreamCounts{}}
	conns, err := ns.Connz(&server.ConnzOptions{Limit: 1 << 16})
	if err != nil {
		return c, err
	}
	for _, ci := range conns.Conns {
		m := c.Conns[ci.Name]
		m.In += ci.InMsgs
		m.Out += ci.OutMsgs
		c.Conns[ci.Name] = m
	}
	js, err := ns.Jsz(&server.JSzOptions{Streams: true, Limit: 1 << 16})
	if err != nil {
		return c, err
	}
	for _, acc := range js.AccountDetails {
		for _, st := range acc.Streams {
			c.Streams[st.Name] = bench.StreamCounts{LastSeq: st.State.LastSeq, Msgs: st.State.Msgs}
		}
	}
	return c, nil
}
