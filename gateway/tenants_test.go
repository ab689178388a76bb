package gateway

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmwiz/wasmwiz/internal/natstest"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// TestGateway_TenantEvents: creating a tenant, changing its tier and suspending it publish
// tenant.created and one tenant.updated per change (before and after, and the admin key that
// did it); a PATCH that changes nothing publishes nothing.
func TestGateway_TenantEvents(t *testing.T) {
	srv := natstest.RunJetStream(t)
	ctx := context.Background()
	g := newTestGateway(t, srv)
	if _, err := g.admin().CreateTenant(ctx, "ops", schemas.TierUnlimited); err != nil {
		t.Fatal(err)
	}
	admin := mustPrincipal(t, g, mustAdminKey(t, g, schemas.CreateKeyRequest{TenantID: "ops", Name: "root", Admin: true}))
	if _, err := g.createTenant(ctx, admin, &schemas.CreateTenantRequest{ID: "acme", Tier: schemas.TierFree}); err != nil {
		t.Fatal(err)
	}
	yes, no := true, false
	for _, req := range []schemas.UpdateTenantRequest{
		{Tier: schemas.TierPro},                   // a change of tier
		{Tier: schemas.TierPro},                   // no change: no event
		{Suspended: &yes},                         // suspended
		{Suspended: &yes},                         // no change
		{Tier: schemas.TierBasic, Suspended: &no}, // both at once: one event
	} {
		if _, err := g.updateTenant(ctx, admin, "acme", &req); err != nil {
			t.Fatalf("update %+v: %v", req, err)
		}
	}
	if _, err := g.updateTenant(ctx, admin, "acme", &schemas.UpdateTenantRequest{Tier: "platinum"}); err == nil {
		t.Error("an unknown tier was accepted")
	}

	want := []schemas.TenantEvent{
		{Tier: schemas.TierFree, KeyID: admin.KeyID},
		{Tier: schemas.TierPro, PreviousTier: schemas.TierFree, KeyID: admin.KeyID},
		{Tier: schemas.TierPro, Suspended: true, PreviousTier: schemas.TierPro, KeyID: admin.KeyID},
		{Tier: schemas.TierBasic, PreviousTier: schemas.TierPro, PreviousSuspended: true, KeyID: admin.KeyID},
	}
	cons, err := g.js.OrderedConsumer(ctx, schemas.StreamEvents, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{schemas.EventSubject("tenant.*", "acme")},
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []schemas.Event
	for len(got) < len(want)+1 { // one more than expected, to see that there is none
		msgs, err := cons.Fetch(len(want)+1-len(got), jetstream.FetchMaxWait(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range msgs.Messages() {
			n++
			var ev schemas.Event
			if err := json.Unmarshal(m.Data(), &ev); err != nil {
				t.Fatal(err)
			}
			got = append(got, ev)
		}
		if n == 0 {
			break
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d tenant events, want %d: %+v", len(got), len(want), got)
	}
	ids := map[string]bool{}
	for i, ev := range got {
		wantType := schemas.EventTenantUpdated
		if i == 0 {
			wantType = schemas.EventTenantCreated
		}
		if ev.Type != wantType || ev.TenantID != "acme" || ev.Tenant == nil || *ev.Tenant != want[i] || ids[ev.ID] {
			t.Errorf("event %d: %s %s %q %+v; want %s with %+v", i, ev.Type, ev.TenantID, ev.ID, ev.Tenant, wantType, want[i])
		}
		ids[ev.ID] = true
		if !schemas.KnownEventType(ev.Type) {
			t.Errorf("event %d: type %s is not known to schemas", i, ev.Type)
		}
	}
}
