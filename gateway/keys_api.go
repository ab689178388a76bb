package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// keyUsage remembers when each key was last used and flushes it to KV now and then, so that
// listing keys can show last_used_at without a write on every request.
type keyUsage struct {
	kv jetstream.KeyValue
	mu sync.Mutex
	m  map[string]time.Time
}

func (u *keyUsage) touch(keyID string) {
	u.mu.Lock()
	u.m[keyID] = time.Now().UTC()
	u.mu.Unlock()
}

func (u *keyUsage) run(ctx context.Context) {
	t := time.NewTicker(15 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			u.flush(context.Background())
			return
		case <-t.C:
			u.flush(ctx)
		}
	}
}

func (u *keyUsage) flush(ctx context.Context) {
	u.mu.Lock()
	m := u.m
	u.m = map[string]time.Time{}
	u.mu.Unlock()
	for id, at := range m {
		_, _ = u.kv.Put(ctx, id, []byte(at.Format(time.RFC3339Nano)))
	}
}

func (u *keyUsage) lastUsed(ctx context.Context, keyID string) *time.Time {
	u.mu.Lock()
	at, ok := u.m[keyID]
	u.mu.Unlock()
	if ok {
		return &at
	}
	e, err := u.kv.Get(ctx, keyID)
	if err != nil {
		return nil
	}
	if t, err := time.Parse(time.RFC3339Nano, string(e.Value())); err == nil {
		return &t
	}
	return nil
}

func (g *Gateway) withLastUsed(ctx context.Context, keys []schemas.Key) *schemas.KeyList {
	out := &schemas.KeyList{Keys: []schemas.Key{}}
	for _, k := range keys {
		k.LastUsedAt = g.keyUsage.lastUsed(ctx, k.ID)
		out.Keys = append(out.Keys, k)
	}
	return out
}

// listKeys: the caller's tenant's keys, never secrets.
func (g *Gateway) listKeys(ctx context.Context, p *Principal) (*schemas.KeyList, error) {
	if err := p.require(schemas.ScopeKeysManage); err != nil {
		return nil, err
	}
	return g.withLastUsed(ctx, g.keyring.tenantKeys(p.TenantID)), nil
}

// newKey makes a key for the caller's own tenant: tier and scopes at most the caller's.
func (g *Gateway) newKey(ctx context.Context, p *Principal, req *schemas.NewKeyRequest) (*schemas.CreatedKey, error) {
	if err := p.require(schemas.ScopeKeysManage); err != nil {
		return nil, err
	}
	tier := req.Tier
	if tier == "" {
		tier = p.Tier.Name
	}
	if _, ok := g.cfg.Tiers[tier]; !ok {
		return nil, schemas.Errorf(schemas.CodeInvalid, "unknown tier %q", tier)
	}
	if !tierWithin(g.cfg.Tiers, tier, p.Tier.Name) {
		return nil, schemas.Errorf(schemas.CodeForbidden, "a %s key cannot make a %s key: a key's tier is at most its maker's", p.Tier.Name, tier)
	}
	scopes := req.Scopes
	if scopes == nil {
		scopes = p.Scopes
	}
	for _, sc := range scopes {
		if !p.can(sc) {
			return nil, schemas.Errorf(schemas.CodeForbidden, "a key cannot grant the %s scope it does not hold", sc)
		}
	}
	return g.createKeyEvent(ctx, p, schemas.CreateKeyRequest{TenantID: p.TenantID, Tier: tier, Name: req.Name, Scopes: scopes, ExpiresAt: req.ExpiresAt})
}

func (g *Gateway) createKeyEvent(ctx context.Context, p *Principal, req schemas.CreateKeyRequest) (*schemas.CreatedKey, error) {
	k, err := g.admin().CreateKey(ctx, req)
	if err != nil {
		return nil, err
	}
	g.keyring.refresh(ctx, HashAPIKey(k.Key))
	g.publishEvent(ctx, schemas.EventKeyCreated, k.Record.TenantID, "key.created:"+k.Record.ID, func(e *schemas.Event) {
		e.Key = &schemas.KeyEvent{KeyID: k.Record.ID, Tier: k.Record.Tier, Admin: k.Record.Admin}
	})
	return k, nil
}

// revokeKey deletes a key of the caller's tenant (admins: any tenant's). Its tokens die with it.
func (g *Gateway) revokeKey(ctx context.Context, p *Principal, id string) error {
	if err := p.require(schemas.ScopeKeysManage); err != nil {
		return err
	}
	rec, hash, ok := g.keyring.keyByID(id)
	if !ok || (rec.TenantID != p.TenantID && !p.Admin) {
		return schemas.Errorf(schemas.CodeNotFound, "key %s not found", truncateID(id))
	}
	if err := g.keysKV.Purge(ctx, hash); err != nil {
		return unavailable("key store", err)
	}
	// Apply at once here; other gateways apply it when their watch delivers the purge.
	g.keyring.forget(hash)
	g.publishEvent(ctx, schemas.EventKeyRevoked, rec.TenantID, "key.revoked:"+rec.ID, func(e *schemas.Event) {
		e.Key = &schemas.KeyEvent{KeyID: rec.ID, Tier: rec.Tier, Admin: rec.Admin}
	})
	return nil
}

// rotateKey makes a new key like an old one and lets the old one expire after a grace.
func (g *Gateway) rotateKey(ctx context.Context, p *Principal, id string, req *schemas.RotateKeyRequest) (*schemas.CreatedKey, error) {
	if err := p.require(schemas.ScopeKeysManage); err != nil {
		return nil, err
	}
	rec, hash, ok := g.keyring.keyByID(id)
	if !ok || (rec.TenantID != p.TenantID && !p.Admin) {
		return nil, schemas.Errorf(schemas.CodeNotFound, "key %s not found", truncateID(id))
	}
	grace := time.Duration(req.OldKeyExpiresIn) * time.Second
	if req.OldKeyExpiresIn == 0 {
		grace = 24 * time.Hour
	}
	if grace <= 0 || grace > 30*24*time.Hour {
		return nil, schemas.Errorf(schemas.CodeInvalid, "old_key_expires_in_seconds must be in 1..2592000")
	}
	k, err := g.createKeyEvent(ctx, p, schemas.CreateKeyRequest{TenantID: rec.TenantID, Tier: rec.Tier, Name: rec.Name, Admin: rec.Admin, Scopes: rec.Scopes, ExpiresAt: rec.ExpiresAt})
	if err != nil {
		return nil, err
	}
	exp := time.Now().Add(grace).UTC()
	if rec.ExpiresAt == nil || exp.Before(*rec.ExpiresAt) {
		rec.ExpiresAt = &exp
	}
	b, _ := json.Marshal(rec)
	if _, err := g.keysKV.Put(ctx, hash, b); err != nil {
		return nil, unavailable("key store", err)
	}
	g.keyring.refresh(ctx, hash)
	return k, nil
}

// issueToken trades an API key (not a token) for a short-lived JWT.
func (g *Gateway) issueToken(ctx context.Context, p *Principal) (*schemas.TokenResponse, error) {
	if g.keyring.signer == nil {
		return nil, schemas.Errorf(schemas.CodeUnavailable, "tokens are not configured on this gateway (no JWT signing key)")
	}
	if p.ViaToken {
		return nil, schemas.Errorf(schemas.CodeForbidden, "a token cannot be traded for another token; use the API key")
	}
	tok, exp, err := g.keyring.signer.issue(p, g.cfg.TokenTTL)
	if err != nil {
		return nil, err
	}
	return &schemas.TokenResponse{Token: tok, TokenType: "Bearer", ExpiresAt: exp.UTC()}, nil
}

func (g *Gateway) listTenants(ctx context.Context, p *Principal) (*schemas.TenantList, error) {
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

func (g *Gateway) updateTenant(ctx context.Context, p *Principal, id string, req *schemas.UpdateTenantRequest) (*schemas.Tenant, error) {
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
		if req.Tier != "" {
			if _, ok := g.cfg.Tiers[req.Tier]; !ok {
				return nil, schemas.Errorf(schemas.CodeInvalid, "unknown tier %q", req.Tier)
			}
			t.Tier = req.Tier
		}
		if req.Suspended != nil {
			t.Suspended = *req.Suspended
		}
		b, _ := json.Marshal(t)
		if _, err := g.tenants.Update(ctx, id, b, e.Revision()); err == nil {
			return &t, nil
		}
	}
	return nil, schemas.Errorf(schemas.CodeConflict, "tenant %s is being changed by someone else; try again", id)
}

func (g *Gateway) adminListKeys(ctx context.Context, p *Principal, tenant string) (*schemas.KeyList, error) {
	if err := requireAdmin(p); err != nil {
		return nil, err
	}
	return g.withLastUsed(ctx, g.keyring.tenantKeys(tenant)), nil
}

type keyListOutput struct{ Body *schemas.KeyList }
type newKeyInput struct{ Body schemas.NewKeyRequest }
type keyIDInput struct {
	ID string `path:"id"`
}
type rotateInput struct {
	ID   string `path:"id"`
	Body schemas.RotateKeyRequest
}
type tokenOutput struct{ Body *schemas.TokenResponse }
type jwksOutput struct{ Body *JWKS }
type tenantListOutput struct{ Body *schemas.TenantList }
type tenantPatchInput struct {
	ID   string `path:"id"`
	Body schemas.UpdateTenantRequest
}
type adminKeysInput struct {
	TenantID string `query:"tenant_id" doc:"only this tenant's keys"`
}

func (g *Gateway) registerKeys(api huma.API) {
	huma.Register(api, huma.Operation{OperationID: "list-keys", Method: http.MethodGet, Path: "/v1/keys", Tags: []string{"keys"},
		Summary: "List your tenant's keys (never their secrets)", Security: bearer, Errors: []int{401, 403}},
		func(ctx context.Context, _ *struct{}) (*keyListOutput, error) {
			l, err := g.listKeys(ctx, principalFrom(ctx))
			if err != nil {
				return nil, g.fail(ctx, "list-keys", err)
			}
			return &keyListOutput{Body: l}, nil
		})
	huma.Register(api, huma.Operation{OperationID: "create-key", Method: http.MethodPost, Path: "/v1/keys", Tags: []string{"keys"},
		Summary: "Create a key for your tenant (tier and scopes at most yours; shown once)", Security: bearer, DefaultStatus: 201, Errors: []int{401, 403, 422}},
		func(ctx context.Context, in *newKeyInput) (*keyOutput, error) {
			k, err := g.newKey(ctx, principalFrom(ctx), &in.Body)
			if err != nil {
				return nil, g.fail(ctx, "create-key", err)
			}
			return &keyOutput{Body: k}, nil
		})
	huma.Register(api, huma.Operation{OperationID: "revoke-key", Method: http.MethodDelete, Path: "/v1/keys/{id}", Tags: []string{"keys"},
		Summary: "Revoke a key (and every token made from it), at once on every gateway", Security: bearer, DefaultStatus: 204, Errors: []int{401, 403, 404}},
		func(ctx context.Context, in *keyIDInput) (*struct{}, error) {
			if err := g.revokeKey(ctx, principalFrom(ctx), in.ID); err != nil {
				return nil, g.fail(ctx, "revoke-key", err)
			}
			return nil, nil
		})
	huma.Register(api, huma.Operation{OperationID: "rotate-key", Method: http.MethodPost, Path: "/v1/keys/{id}/rotate", Tags: []string{"keys"},
		Summary: "Rotate a key: a new key now, the old one valid until a grace ends", Security: bearer, DefaultStatus: 201, Errors: []int{401, 403, 404, 422}},
		func(ctx context.Context, in *rotateInput) (*keyOutput, error) {
			k, err := g.rotateKey(ctx, principalFrom(ctx), in.ID, &in.Body)
			if err != nil {
				return nil, g.fail(ctx, "rotate-key", err)
			}
			return &keyOutput{Body: k}, nil
		})
	huma.Register(api, huma.Operation{OperationID: "create-token", Method: http.MethodPost, Path: "/v1/auth/token", Tags: []string{"keys"},
		Summary: "Trade an API key for a short-lived JWT (EdDSA)", Security: bearer, Errors: []int{401, 403, 503}},
		func(ctx context.Context, _ *struct{}) (*tokenOutput, error) {
			tok, err := g.issueToken(ctx, principalFrom(ctx))
			if err != nil {
				return nil, g.fail(ctx, "create-token", err)
			}
			return &tokenOutput{Body: tok}, nil
		})
	huma.Register(api, huma.Operation{OperationID: "jwks", Method: http.MethodGet, Path: "/.well-known/jwks.json", Tags: []string{"keys"},
		Summary: "The public keys that verify WasmWiz tokens"},
		func(ctx context.Context, _ *struct{}) (*jwksOutput, error) {
			return &jwksOutput{Body: g.keyring.signerJWKS()}, nil
		})
	huma.Register(api, huma.Operation{OperationID: "admin-list-tenants", Method: http.MethodGet, Path: "/v1/admin/tenants", Tags: []string{"admin"},
		Summary: "List tenants (admin)", Security: bearer, Errors: []int{401, 403}},
		func(ctx context.Context, _ *struct{}) (*tenantListOutput, error) {
			l, err := g.listTenants(ctx, principalFrom(ctx))
			if err != nil {
				return nil, g.fail(ctx, "admin-list-tenants", err)
			}
			return &tenantListOutput{Body: l}, nil
		})
	huma.Register(api, huma.Operation{OperationID: "admin-update-tenant", Method: http.MethodPatch, Path: "/v1/admin/tenants/{id}", Tags: []string{"admin"},
		Summary: "Change a tenant's tier or suspend it (admin)", Security: bearer, Errors: []int{401, 403, 404, 409, 422}},
		func(ctx context.Context, in *tenantPatchInput) (*tenantOutput, error) {
			t, err := g.updateTenant(ctx, principalFrom(ctx), in.ID, &in.Body)
			if err != nil {
				return nil, g.fail(ctx, "admin-update-tenant", err)
			}
			return &tenantOutput{Body: t}, nil
		})
	huma.Register(api, huma.Operation{OperationID: "admin-list-keys", Method: http.MethodGet, Path: "/v1/admin/keys", Tags: []string{"admin"},
		Summary: "List keys of any tenant (admin)", Security: bearer, Errors: []int{401, 403}},
		func(ctx context.Context, in *adminKeysInput) (*keyListOutput, error) {
			l, err := g.adminListKeys(ctx, principalFrom(ctx), in.TenantID)
			if err != nil {
				return nil, g.fail(ctx, "admin-list-keys", err)
			}
			return &keyListOutput{Body: l}, nil
		})
	huma.Register(api, huma.Operation{OperationID: "admin-revoke-key", Method: http.MethodDelete, Path: "/v1/admin/keys/{id}", Tags: []string{"admin"},
		Summary: "Revoke any tenant's key (admin)", Security: bearer, DefaultStatus: 204, Errors: []int{401, 403, 404}},
		func(ctx context.Context, in *keyIDInput) (*struct{}, error) {
			p := principalFrom(ctx)
			if err := requireAdmin(p); err != nil {
				return nil, g.fail(ctx, "admin-revoke-key", err)
			}
			if err := g.revokeKey(ctx, p, in.ID); err != nil {
				return nil, g.fail(ctx, "admin-revoke-key", err)
			}
			return nil, nil
		})
}
