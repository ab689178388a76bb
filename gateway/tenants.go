package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// Tenants, administered by admin keys (the Admin type, admin.go, holds the store logic shared
// with dev-mode bootstrap).

type tenantInput struct {
	Body schemas.CreateTenantRequest
}

type tenantOutput struct {
	Body *schemas.Tenant
}

type tenantListOutput struct{ Body *schemas.TenantList }

type tenantPatchInput struct {
	ID   string `path:"id"`
	Body schemas.UpdateTenantRequest
}

func (g *Server) createTenant(ctx context.Context, p *Principal, req *schemas.CreateTenantRequest) (*schemas.Tenant, error) {
	if err := requireAdmin(p); err != nil {
		return nil, err
	}
	t, err := g.admin().CreateTenant(ctx, req.ID, req.Tier)
	if err != nil {
		return nil, err
	}
	g.publishEvent(ctx, schemas.EventTenantCreated, t.ID, "tenant.created:"+t.ID+":"+t.CreatedAt.Format(time.RFC3339Nano), func(e *schemas.Event) {
		e.Tenant = &schemas.TenantEvent{Tier: t.Tier, Suspended: t.Suspended, KeyID: p.KeyID}
	})
	return t, nil
}

func (g *Server) listTenants(ctx context.Context, p *Principal) (*schemas.TenantList, error) {
	if err := requireAdmin(p); err != nil {
		return nil, err
	}
	g.keyring.mu.RLock()
	out := &schemas.TenantList{Tenants: []schemas.Tenant{}}
	for _, t := range g.keyring.tenantByID {
		out.Tenants = append(out.Tenants, t)
	}
	g.keyring.mu.RUnlock()
	slices.SortFunc(out.Tenants, func(a, b schemas.Tenant) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

func (g *Server) updateTenant(ctx context.Context, p *Principal, id string, req *schemas.UpdateTenantRequest) (*schemas.Tenant, error) {
	if err := requireAdmin(p); err != nil {
		return nil, err
	}
	for range 5 { // compare-and-set against concurrent admins
		e, err := g.tenants.Get(ctx, id)
		if err != nil {
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				return nil, schemas.Errorf(schemas.CodeNotFound, "tenant %s not found", truncateID(id))
			}
			return nil, unavailable("tenant store", err)
		}
		var t schemas.Tenant
		if err := json.Unmarshal(e.Value(), &t); err != nil {
			return nil, unavailable("tenant store", err)
		}
		before := t
		if req.Tier != "" {
			if _, ok := g.cfg.Tiers[req.Tier]; !ok {
				return nil, schemas.Errorf(schemas.CodeInvalid, "unknown tier %q", req.Tier)
			}
			t.Tier = req.Tier
		}
		if req.Suspended != nil {
			t.Suspended = *req.Suspended
		}
		if t.Tier == before.Tier && t.Suspended == before.Suspended {
			return &t, nil // nothing changes: no write, no event
		}
		b, _ := json.Marshal(t)
		rev, err := g.tenants.Update(ctx, id, b, e.Revision())
		if err == nil {
			// One event per change, named by the tenant record's new revision.
			g.publishEvent(ctx, schemas.EventTenantUpdated, t.ID, "tenant.updated:"+t.ID+":"+strconv.FormatUint(rev, 10), func(e *schemas.Event) {
				e.Tenant = &schemas.TenantEvent{Tier: t.Tier, Suspended: t.Suspended, PreviousTier: before.Tier,
					PreviousSuspended: before.Suspended, KeyID: p.KeyID}
			})
			return &t, nil
		}
	}
	return nil, schemas.Errorf(schemas.CodeConflict, "tenant %s is being changed by someone else; try again", id)
}

func (g *Server) restCreateTenant(ctx context.Context, p *Principal, in *tenantInput) (*tenantOutput, error) {
	t, err := g.createTenant(ctx, p, &in.Body)
	return &tenantOutput{Body: t}, err
}

func (g *Server) restListTenants(ctx context.Context, p *Principal, _ *struct{}) (*tenantListOutput, error) {
	l, err := g.listTenants(ctx, p)
	return &tenantListOutput{Body: l}, err
}

func (g *Server) restUpdateTenant(ctx context.Context, p *Principal, in *tenantPatchInput) (*tenantOutput, error) {
	t, err := g.updateTenant(ctx, p, in.ID, &in.Body)
	return &tenantOutput{Body: t}, err
}
