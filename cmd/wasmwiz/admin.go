package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmwiz/wasmwiz/gateway"
	"github.com/wasmwiz/wasmwiz/internal/streams"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// runAdmin holds operator commands that talk to NATS directly, for when no admin key exists yet.
//
//	wasmwiz admin bootstrap --nats-url ... [--replicas 3] [--key-file F]
//
// creates the streams and buckets, a tenant "admin" on the unlimited tier and an admin API key,
// printed once (and written to --key-file with mode 0600 when given).
func runAdmin(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "bootstrap" {
		return usageError{"usage: wasmwiz admin bootstrap [--context NAME | --nats-url URL] [--replicas N] [--key-file F]"}
	}
	fs := newFlagSet("admin bootstrap", getenv, stderr)
	conn := opsNATSFlags(fs)
	replicas := fs.Int("replicas", 1, "JetStream replicas for streams and buckets (3 on a cluster)")
	keyFile := fs.String("key-file", "", "also write the key to this file (mode 0600)")
	resultsTTL := fs.Duration("results-ttl", 0, "how long execution results stay readable (default: as the bucket has it, 24h when new); roles keep what is set here")
	loadTiers := fs.tiersFlag()
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *resultsTTL < 0 {
		return usageError{"--results-ttl must not be negative"}
	}
	tiers, err := loadTiers()
	if err != nil {
		return usageError{err.Error()}
	}
	nc, err := conn.connect("wasmwiz-admin")
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if err := streams.EnsureWithRetry(ctx, js, streams.Options{Replicas: *replicas, Tiers: tiers, ResultsTTL: *resultsTTL}); err != nil {
		return fmt.Errorf("create streams: %w", err)
	}
	a, err := gateway.NewAdmin(ctx, js, tiers)
	if err != nil {
		return err
	}
	if _, err := a.CreateTenant(ctx, "admin", schemas.TierUnlimited); err != nil {
		var se *schemas.Error
		if !errors.As(err, &se) || se.Code != schemas.CodeConflict {
			return err
		}
	}
	k, err := a.CreateKey(ctx, schemas.CreateKeyRequest{TenantID: "admin", Name: "bootstrap", Admin: true})
	if err != nil {
		return err
	}
	if *keyFile != "" {
		if err := os.WriteFile(*keyFile, []byte(k.Key+"\n"), 0o600); err != nil {
			return err
		}
	}
	fmt.Fprintln(stdout, k.Key)
	return nil
}
