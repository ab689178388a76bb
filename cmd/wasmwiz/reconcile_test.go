package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmwiz/wasmwiz/internal/natstest"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// Reading the events stream on a cluster survives its consumer being deleted and the server
// holding its consumer leaving mid-read ("nats: no responders available" stopped reconcile and events tail
// partway on a cluster): every event is read once, in order.
func TestReadEvents_SurvivesLostConsumers(t *testing.T) {
	if testing.Short() {
		t.Skip("3-node cluster")
	}
	servers := natstest.RunCluster(t, 3)
	ctx := context.Background()
	setup := natstest.JetStream(t, servers[0])
	if _, err := setup.CreateStream(ctx, jetstream.StreamConfig{
		Name: schemas.StreamEvents, Subjects: []string{schemas.EventSubjectAll}, Replicas: 3, Storage: jetstream.FileStorage,
	}); err != nil {
		t.Fatal(err)
	}
	const n = 5000
	for i := range n {
		ev := schemas.Event{ID: fmt.Sprintf("ex_%d:%s", i, schemas.EventExecutionCompleted), Type: schemas.EventExecutionCompleted,
			TenantID: "acme", Time: time.Now().UTC(), Execution: &schemas.ExecutionEvent{ExecutionID: fmt.Sprintf("ex_%d", i)}}
		b, _ := json.Marshal(ev)
		if _, err := setup.PublishAsync(schemas.EventSubject(ev.Type, ev.TenantID), b); err != nil {
			t.Fatal(err)
		}
		if i%500 == 499 || i == n-1 {
			select {
			case <-setup.PublishAsyncComplete():
			case <-time.After(30 * time.Second):
				t.Fatal("publishes not acknowledged")
			}
		}
	}
	byName := map[string]*server.Server{}
	for _, s := range servers {
		byName[s.Name()] = s
	}
	other := servers[0]
	nc, err := nats.Connect(other.ClientURL(), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}

	var seqs []uint64
	err = readEvents(ctx, js, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}, func(m jetstream.Msg) error {
		md, err := m.Metadata()
		if err != nil {
			return err
		}
		seqs = append(seqs, md.Sequence.Stream)
		switch len(seqs) {
		case 1000: // the consumer disappears under the reader
			stream, err := js.Stream(ctx, schemas.StreamEvents)
			if err != nil {
				return err
			}
			for name := range stream.ConsumerNames(ctx).Name() {
				if err := js.DeleteConsumer(ctx, schemas.StreamEvents, name); err != nil {
					t.Errorf("delete consumer %s: %v", name, err)
				}
			}
		case 2500: // the server holding the reader's consumer leaves the cluster
			stream, err := js.Stream(ctx, schemas.StreamEvents)
			if err != nil {
				return err
			}
			for ci := range stream.ListConsumers(ctx).Info() {
				if ci.Cluster == nil || byName[ci.Cluster.Leader] == nil {
					t.Fatalf("consumer %s: no leader named", ci.Name)
				}
				t.Logf("shutting down %s, which holds consumer %s", ci.Cluster.Leader, ci.Name)
				byName[ci.Cluster.Leader].Shutdown()
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("read %d of %d events: %v", len(seqs), n, err)
	}
	if len(seqs) != n {
		t.Fatalf("read %d events, want %d", len(seqs), n)
	}
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Fatalf("event %d has stream sequence %d: skipped or read twice", i, s)
		}
	}
}

// Reconcile tells "could not read" (exit 2) from "found a gap" (exit 1).
func TestReconcile_CannotReadExits2(t *testing.T) {
	noStreams := natstest.RunJetStream(t)
	for name, url := range map[string]string{
		"no server":        "nats://127.0.0.1:1",
		"no events stream": noStreams.ClientURL(),
	} {
		t.Run(name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(context.Background(), []string{"accounting", "reconcile", "--nats-url", url}, func(string) string { return "" }, &out, &errOut)
			if code != reconcileCannotRead {
				t.Fatalf("exit %d, want %d; stderr: %s", code, reconcileCannotRead, errOut.String())
			}
			if !strings.Contains(errOut.String(), "could not") && !strings.Contains(errOut.String(), "connect") {
				t.Errorf("stderr does not say it could not read: %s", errOut.String())
			}
		})
	}
}
