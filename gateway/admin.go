package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// publishEvent publishes one event; id is its unique identity (Nats-Msg-Id). A failure is
// logged, not returned: the fact itself already happened.
func (g *Gateway) publishEvent(ctx context.Context, typ, tenant, id string, fill func(*schemas.Event)) {
	ev := schemas.Event{ID: id, Type: typ, Version: schemas.EventVersion, Time: time.Now().UTC(), TenantID: tenant}
	fill(&ev)
	b, _ := json.Marshal(ev)
	msg := nats.NewMsg(schemas.EventSubject(typ, tenant))
	msg.Data = b
	msg.Header.Set(schemas.HeaderMsgID, id)
	if _, err := g.js.PublishMsg(context.WithoutCancel(ctx), msg); err != nil {
		g.log.Error("publish event", "type", typ, "tenant_id", tenant, "err", err)
	}
}

// Admin is the tenant and key administration shared by the admin API and dev-mode bootstrap.
type Admin struct {
	Tiers   map[string]schemas.Tier
	Tenants jetstream.KeyValue
	Keys    jetstream.KeyValue
}

// NewAdmin opens the buckets Admin needs (streams.Ensure must have run).
func NewAdmin(ctx context.Context, js jetstream.JetStream, tiers map[string]schemas.Tier) (*Admin, error) {
	t, err := js.KeyValue(ctx, schemas.BucketTenants)
	if err != nil {
		return nil, err
	}
	k, err := js.KeyValue(ctx, schemas.BucketKeys)
	if err != nil {
		return nil, err
	}
	if tiers == nil {
		tiers = schemas.DefaultTiers()
	}
	return &Admin{Tiers: tiers, Tenants: t, Keys: k}, nil
}

// CreateTenant creates a tenant; an existing id is a conflict.
func (a *Admin) CreateTenant(ctx context.Context, id, tier string) (*schemas.Tenant, error) {
	if !schemas.ValidToken(id) {
		return nil, schemas.Errorf(schemas.CodeInvalid, "tenant id must be 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit")
	}
	if _, ok := a.Tiers[tier]; !ok {
		return nil, schemas.Errorf(schemas.CodeInvalid, "unknown tier %q", tier)
	}
	t := &schemas.Tenant{ID: id, Tier: tier, CreatedAt: time.Now().UTC()}
	b, _ := json.Marshal(t)
	if _, err := a.Tenants.Create(ctx, id, b); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return nil, schemas.Errorf(schemas.CodeConflict, "tenant %s already exists", id)
		}
		return nil, unavailable("tenant store", err)
	}
	return t, nil
}

// GetTenant reads a tenant.
func (a *Admin) GetTenant(ctx context.Context, id string) (*schemas.Tenant, error) {
	if !schemas.ValidToken(id) {
		return nil, schemas.Errorf(schemas.CodeNotFound, "tenant not found")
	}
	e, err := a.Tenants.Get(ctx, id)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, schemas.Errorf(schemas.CodeNotFound, "tenant %s not found", id)
		}
		return nil, unavailable("tenant store", err)
	}
	var t schemas.Tenant
	if err := json.Unmarshal(e.Value(), &t); err != nil {
		return nil, unavailable("tenant store", err)
	}
	return &t, nil
}

// CreateKey makes a new API key for a tenant and returns it with its secret (shown once).
func (a *Admin) CreateKey(ctx context.Context, req schemas.CreateKeyRequest) (*schemas.CreatedKey, error) {
	t, err := a.GetTenant(ctx, req.TenantID)
	if err != nil {
		return nil, err
	}
	tier := req.Tier
	if tier == "" {
		tier = t.Tier
	}
	if _, ok := a.Tiers[tier]; !ok {
		return nil, schemas.Errorf(schemas.CodeInvalid, "unknown tier %q", tier)
	}
	for _, sc := range req.Scopes {
		if !slices.Contains(schemas.AllScopes, sc) {
			return nil, schemas.Errorf(schemas.CodeInvalid, "unknown scope %q (known: %s)", sc, strings.Join(schemas.AllScopes, ", "))
		}
	}
	if req.ExpiresAt != nil && !req.ExpiresAt.After(time.Now()) {
		return nil, schemas.Errorf(schemas.CodeInvalid, "expires_at is in the past")
	}
	secret, err := NewAPIKey()
	if err != nil {
		return nil, err
	}
	h := HashAPIKey(secret)
	rec := schemas.Key{
		ID: "key_" + h[:16], TenantID: t.ID, Tier: tier, Name: req.Name, Prefix: secret[:10],
		Admin: req.Admin, Scopes: req.Scopes, CreatedAt: time.Now().UTC(), ExpiresAt: req.ExpiresAt,
	}
	b, _ := json.Marshal(rec)
	if _, err := a.Keys.Create(ctx, h, b); err != nil {
		return nil, unavailable("key store", err)
	}
	return &schemas.CreatedKey{Key: secret, Record: rec}, nil
}

func (g *Gateway) admin() *Admin {
	return &Admin{Tiers: g.cfg.Tiers, Tenants: g.tenants, Keys: g.keysKV}
}

func requireAdmin(p *Principal) error {
	if !p.Admin {
		return schemas.Errorf(schemas.CodeForbidden, "this endpoint needs an admin key")
	}
	return nil
}

func (g *Gateway) createTenant(ctx context.Context, p *Principal, req *schemas.CreateTenantRequest) (*schemas.Tenant, error) {
	if err := requireAdmin(p); err != nil {
		return nil, err
	}
	t, err := g.admin().CreateTenant(ctx, req.ID, req.Tier)
	if err != nil {
		return nil, err
	}
	g.publishEvent(ctx, schemas.EventTenantCreated, t.ID, "tenant.created:"+t.ID+":"+t.CreatedAt.Format(time.RFC3339Nano), func(*schemas.Event) {})
	return t, nil
}

func (g *Gateway) createKey(ctx context.Context, p *Principal, req *schemas.CreateKeyRequest) (*schemas.CreatedKey, error) {
	if err := requireAdmin(p); err != nil {
		return nil, err
	}
	return g.createKeyEvent(ctx, p, *req)
}
