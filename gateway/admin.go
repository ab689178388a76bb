package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// Admin is the tenant and key administration shared by the admin API and dev-mode bootstrap.
type Admin struct {
	Tiers   map[string]schemas.Tier
	Tenants jetstream.KeyValue
	Keys    jetstream.KeyValue

	now func() time.Time // nil: time.Now
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
	nk, err := a.prepareKey(ctx, req)
	if err != nil {
		return nil, err
	}
	return a.storeKey(ctx, nk)
}

// preparedKey is a new key checked and made, not yet stored.
type preparedKey struct {
	secret, hash string
	rec          schemas.Key
}

// prepareKey checks a key request (tenant, tier, scopes, expiry) and makes the key's secret and
// record. Scopes are stored explicitly: absent means all of today's scopes, and an empty list,
// which the record could not tell from absent, is refused.
func (a *Admin) prepareKey(ctx context.Context, req schemas.CreateKeyRequest) (*preparedKey, error) {
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
	scopes, err := checkScopes(req.Scopes)
	if err != nil {
		return nil, err
	}
	if req.ExpiresAt != nil && req.ExpiresAt.Before(a.clock()) { // a key is valid up to and including expires_at
		return nil, schemas.Errorf(schemas.CodeInvalid, "expires_at is in the past")
	}
	secret, err := NewAPIKey()
	if err != nil {
		return nil, err
	}
	h := HashAPIKey(secret)
	var exp *time.Time
	if req.ExpiresAt != nil {
		e := req.ExpiresAt.UTC()
		exp = &e
	}
	return &preparedKey{secret: secret, hash: h, rec: schemas.Key{
		ID: "key_" + h[:16], TenantID: t.ID, Tier: tier, Name: req.Name, Prefix: secret[:10],
		Admin: req.Admin, Scopes: scopes, CreatedAt: a.clock().UTC(), ExpiresAt: exp,
	}}, nil
}

// checkScopes validates requested scopes: nil is all scopes, an empty list is refused, unknown
// scopes are refused, duplicates are dropped.
func checkScopes(req []string) ([]string, error) {
	if req == nil {
		return slices.Clone(schemas.AllScopes), nil
	}
	if len(req) == 0 {
		return nil, schemas.Errorf(schemas.CodeEmptyScopes, "scopes is an empty list: a key with no scopes could do nothing; name the scopes it needs (%s), or omit the field for the default", strings.Join(schemas.AllScopes, ", "))
	}
	var out []string
	for _, sc := range req {
		if !slices.Contains(schemas.AllScopes, sc) {
			return nil, schemas.Errorf(schemas.CodeInvalid, "unknown scope %q (known: %s)", sc, strings.Join(schemas.AllScopes, ", "))
		}
		if !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	return out, nil
}

// storeKey writes a prepared key's record; Create refuses to overwrite anything.
func (a *Admin) storeKey(ctx context.Context, nk *preparedKey) (*schemas.CreatedKey, error) {
	b, _ := json.Marshal(nk.rec)
	if _, err := a.Keys.Create(ctx, nk.hash, b); err != nil {
		return nil, unavailable("key store", err)
	}
	return &schemas.CreatedKey{Key: nk.secret, Record: nk.rec}, nil
}

func (a *Admin) clock() time.Time {
	if a.now != nil {
		return a.now()
	}
	return time.Now()
}

func (g *Server) admin() *Admin {
	return &Admin{Tiers: g.cfg.Tiers, Tenants: g.tenants, Keys: g.keysKV, now: g.keyring.now}
}

func requireAdmin(p *Principal) error {
	if !p.Admin {
		return schemas.Errorf(schemas.CodeForbidden, "this endpoint needs an admin key")
	}
	return nil
}

// createKey is POST /v1/admin/keys: a key for any tenant, admin keys included, made by an admin
// key within its own expiry (see makeKey).
func (g *Server) createKey(ctx context.Context, p *Principal, req *schemas.CreateKeyRequest) (*schemas.CreatedKey, error) {
	if err := requireAdmin(p); err != nil {
		return nil, err
	}
	return g.makeKey(ctx, p, *req, true)
}
