package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

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

func (g *Server) withLastUsed(ctx context.Context, keys []schemas.Key) *schemas.KeyList {
	out := &schemas.KeyList{Keys: []schemas.Key{}}
	for _, k := range keys {
		k.LastUsedAt = g.keyUsage.lastUsed(ctx, k.ID)
		out.Keys = append(out.Keys, k)
	}
	return out
}

// listKeys: the caller's tenant's keys, never secrets.
func (g *Server) listKeys(ctx context.Context, p *Principal) (*schemas.KeyList, error) {
	if err := p.require(schemas.ScopeKeysManage); err != nil {
		return nil, err
	}
	return g.withLastUsed(ctx, g.keyring.tenantKeys(p.TenantID)), nil
}

// Key management. The rules (SECURITY.md § Keys), checked in this order:
//
//   - The caller's own key is read again from the store, not from this gateway's watched copy,
//     before it creates, rotates or revokes a key or is traded for a token: a key revoked a
//     moment ago through another gateway can do none of these (401).
//   - A key in its rotation grace (replaced) can create and rotate nothing and revoke only itself.
//   - A key makes or rotates only keys whose tier, scopes and expiry are at most its own. A key
//     made by an expiring credential (an expiring key, or a token) expires no later than it.
//   - /v1/keys never touches admin keys; they are created, rotated and revoked only through
//     /v1/admin/keys with an admin key.
//   - Every write of a key record is compare-and-set on the revision read (Create, Update with the
//     revision, Purge with LastRevision), so a revocation is never undone by a rotation.
//   - A tenant holds at most its tier's KeyCap live keys.

const (
	defaultRotationGrace = time.Hour
	maxRotationGrace     = 7 * 24 * time.Hour
)

var (
	errCallerGone = schemas.Errorf(schemas.CodeUnauthorized, "this API key was revoked or has expired")
	errInGrace    = schemas.Errorf(schemas.CodeForbidden, "this key was rotated and is in its grace, which is for finishing in-flight work only: it cannot create, rotate or revoke keys (except revoke itself); use the key that replaced it")
	errNoKey      = errors.New("no such key record")
)

// readKey reads a key record and its revision from the store.
func (g *Server) readKey(ctx context.Context, hash string) (schemas.Key, uint64, error) {
	e, err := g.keysKV.Get(ctx, hash)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			return schemas.Key{}, 0, errNoKey
		}
		return schemas.Key{}, 0, unavailable("key store", err)
	}
	var rec schemas.Key
	if e.Operation() != jetstream.KeyValuePut || json.Unmarshal(e.Value(), &rec) != nil {
		return schemas.Key{}, 0, errNoKey
	}
	return rec, e.Revision(), nil
}

// current re-reads the caller's key record from the store and returns the caller as it stands
// now (revoked or expired: 401; rotated meanwhile: Replaced).
func (g *Server) current(ctx context.Context, p *Principal) (*Principal, error) {
	_, hash, ok := g.keyring.keyByID(p.KeyID)
	if !ok {
		return nil, errCallerGone
	}
	rec, _, err := g.readKey(ctx, hash)
	if errors.Is(err, errNoKey) || (err == nil && (rec.ID != p.KeyID || rec.TenantID != p.TenantID)) {
		return nil, errCallerGone
	}
	if err != nil {
		return nil, err
	}
	fresh, err := g.keyring.principal(rec, p.Scopes, p.tokenExpires)
	if err != nil {
		return nil, errCallerGone
	}
	return fresh, nil
}

// manager is the caller of a key-management operation: authorised for it (admin path: an admin
// key; otherwise keys:manage), read again from the store.
func (g *Server) manager(ctx context.Context, p *Principal, adminPath bool) (*Principal, error) {
	if adminPath {
		if err := requireAdmin(p); err != nil {
			return nil, err
		}
	} else if err := p.require(schemas.ScopeKeysManage); err != nil {
		return nil, err
	}
	p, err := g.current(ctx, p)
	if err != nil {
		return nil, err
	}
	if adminPath && !p.Admin {
		return nil, schemas.Errorf(schemas.CodeForbidden, "this endpoint needs an admin key")
	}
	return p, nil
}

// target reads the key a rotation or revocation names, fresh from the store, with its hash and
// revision. Another tenant's key (on /v1/keys), a missing, revoked or expired key: 404. An admin
// key on /v1/keys: 403.
func (g *Server) target(ctx context.Context, p *Principal, id string, adminPath bool) (schemas.Key, string, uint64, error) {
	notFound := schemas.Errorf(schemas.CodeNotFound, "key %s not found", truncateID(id))
	_, hash, ok := g.keyring.keyByID(id)
	if !ok {
		return schemas.Key{}, "", 0, notFound
	}
	rec, rev, err := g.readKey(ctx, hash)
	if errors.Is(err, errNoKey) {
		return schemas.Key{}, "", 0, notFound
	}
	if err != nil {
		return schemas.Key{}, "", 0, err
	}
	if rec.ID != id || (!adminPath && rec.TenantID != p.TenantID) {
		return schemas.Key{}, "", 0, notFound
	}
	if rec.ExpiresAt != nil && g.keyring.now().After(*rec.ExpiresAt) {
		return schemas.Key{}, "", 0, schemas.Errorf(schemas.CodeNotFound, "key %s has expired", truncateID(id))
	}
	if !adminPath && rec.Admin {
		return schemas.Key{}, "", 0, schemas.Errorf(schemas.CodeForbidden, "key %s is an admin key: admin keys are rotated and revoked only through /v1/admin/keys, with an admin key", rec.ID)
	}
	return rec, hash, rev, nil
}

// boundExpiry is the expiry of a key made by p: at most p's own; absent, p's own (nil: never).
func boundExpiry(p *Principal, want *time.Time) (*time.Time, error) {
	if want == nil {
		return p.ExpiresAt, nil
	}
	if p.ExpiresAt != nil && want.After(*p.ExpiresAt) {
		return nil, schemas.Errorf(schemas.CodeForbidden, "a key cannot outlive the credential that makes it: expires_at must be at or before %s", p.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return want, nil
}

// keyCap holds the tenant's key-creation lock and checks that one more key stays within its
// tier's cap; the caller must call the returned unlock after storing the key. Records that have
// expired do not count, and at the cap they are removed. The count comes from this gateway's
// watched copy under a per-tenant lock, so it is exact through one gateway; gateways racing
// each other can exceed the cap by one key each.
func (g *Server) keyCap(ctx context.Context, tenant, keyTier string) (unlock func(), err error) {
	mu, _ := g.keyring.createLocks.LoadOrStore(tenant, &sync.Mutex{})
	mu.(*sync.Mutex).Lock()
	unlock = mu.(*sync.Mutex).Unlock
	tierName := g.keyring.tenantTier(tenant)
	if tierName == "" {
		tierName = keyTier
	}
	limit := g.cfg.Tiers[tierName].KeyCap()
	entries := g.keyring.tenantEntries(tenant)
	now := g.keyring.now()
	live := 0
	for _, e := range entries {
		if e.rec.ExpiresAt == nil || !now.After(*e.rec.ExpiresAt) {
			live++
		}
	}
	if len(entries) >= limit {
		for _, e := range entries {
			if e.rec.ExpiresAt != nil && now.After(*e.rec.ExpiresAt) {
				if err := g.keysKV.Purge(ctx, e.hash, jetstream.LastRevision(e.rev)); err == nil {
					g.keyring.forget(e.hash, e.rev)
				}
			}
		}
	}
	if live >= limit {
		unlock()
		return nil, schemas.Errorf(schemas.CodeKeyLimit, "tenant %s holds %d live keys, the most its tier %s allows: revoke keys it no longer uses first", tenant, live, tierName)
	}
	return unlock, nil
}

// newKey is POST /v1/keys: a key for the caller's own tenant, never an admin key.
func (g *Server) newKey(ctx context.Context, p *Principal, req *schemas.NewKeyRequest) (*schemas.CreatedKey, error) {
	return g.makeKey(ctx, p, schemas.CreateKeyRequest{TenantID: p.TenantID, Tier: req.Tier, Name: req.Name, Scopes: req.Scopes, ExpiresAt: req.ExpiresAt}, false)
}

// makeKey creates a key made by p: on /v1/keys for p's tenant, with tier and scopes at most p's
// (absent: p's); on /v1/admin/keys for any tenant. Either way it expires no later than p.
func (g *Server) makeKey(ctx context.Context, p *Principal, req schemas.CreateKeyRequest, adminPath bool) (*schemas.CreatedKey, error) {
	p, err := g.manager(ctx, p, adminPath)
	if err != nil {
		return nil, err
	}
	if p.Replaced {
		return nil, errInGrace
	}
	if !adminPath {
		req.TenantID, req.Admin = p.TenantID, false
		if req.Tier == "" {
			req.Tier = p.Tier.Name
		}
		if req.Scopes == nil {
			req.Scopes = append([]string{}, p.Scopes...) // never nil: nil would mean all
		}
	}
	nk, err := g.admin().prepareKey(ctx, req) // 404 unknown tenant, 422 tier, scopes, expiry
	if err != nil {
		return nil, err
	}
	if !adminPath {
		if !tierWithin(g.cfg.Tiers, nk.rec.Tier, p.Tier.Name) {
			return nil, schemas.Errorf(schemas.CodeForbidden, "a %s key cannot make a %s key: a key's tier is at most its maker's", p.Tier.Name, nk.rec.Tier)
		}
		for _, sc := range nk.rec.Scopes {
			if !p.can(sc) {
				return nil, schemas.Errorf(schemas.CodeForbidden, "a key cannot grant the %s scope it does not hold", sc)
			}
		}
	}
	if nk.rec.ExpiresAt, err = boundExpiry(p, nk.rec.ExpiresAt); err != nil {
		return nil, err
	}
	unlock, err := g.keyCap(ctx, nk.rec.TenantID, nk.rec.Tier)
	if err != nil {
		return nil, err
	}
	defer unlock()
	k, err := g.admin().storeKey(ctx, nk)
	if err != nil {
		return nil, err
	}
	g.keyCreated(ctx, k)
	return k, nil
}

// keyCreated applies a key just stored here at once and publishes key.created.
func (g *Server) keyCreated(ctx context.Context, k *schemas.CreatedKey) {
	g.keyring.refresh(ctx, HashAPIKey(k.Key))
	g.publishEvent(ctx, schemas.EventKeyCreated, k.Record.TenantID, "key.created:"+k.Record.ID, func(e *schemas.Event) {
		e.Key = &schemas.KeyEvent{KeyID: k.Record.ID, Tier: k.Record.Tier, Admin: k.Record.Admin}
	})
}

// revokeKey deletes a key: on /v1/keys one of the caller's tenant's (not an admin key), on
// /v1/admin/keys any. Its tokens die with it. A key in its grace may revoke only itself.
func (g *Server) revokeKey(ctx context.Context, p *Principal, id string, adminPath bool) error {
	p, err := g.manager(ctx, p, adminPath)
	if err != nil {
		return err
	}
	for range 5 { // compare-and-set against a concurrent rotation
		rec, hash, rev, err := g.target(ctx, p, id, adminPath)
		if err != nil {
			return err
		}
		if p.Replaced && rec.ID != p.KeyID {
			return errInGrace
		}
		err = g.keysKV.Purge(ctx, hash, jetstream.LastRevision(rev))
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		if err != nil {
			return unavailable("key store", err)
		}
		// Apply at once here; other gateways apply it when their watch delivers the purge.
		g.keyring.forget(hash, rev)
		g.publishEvent(ctx, schemas.EventKeyRevoked, rec.TenantID, "key.revoked:"+rec.ID, func(e *schemas.Event) {
			e.Key = &schemas.KeyEvent{KeyID: rec.ID, Tier: rec.Tier, Admin: rec.Admin}
		})
		return nil
	}
	return schemas.Errorf(schemas.CodeConflict, "key %s is being changed by someone else; try again", truncateID(id))
}

// rotateKey makes a new key like an old one and lets the old one expire after a grace (default
// an hour, at most 7 days), during which it can finish in-flight work but manage no keys.
func (g *Server) rotateKey(ctx context.Context, p *Principal, id string, req *schemas.RotateKeyRequest, adminPath bool) (*schemas.CreatedKey, error) {
	p, err := g.manager(ctx, p, adminPath)
	if err != nil {
		return nil, err
	}
	if p.Replaced {
		return nil, errInGrace
	}
	grace := time.Duration(req.OldKeyExpiresIn) * time.Second
	if req.OldKeyExpiresIn == 0 {
		grace = defaultRotationGrace
	}
	if req.OldKeyExpiresIn < 0 || req.OldKeyExpiresIn > int64(maxRotationGrace/time.Second) {
		return nil, schemas.Errorf(schemas.CodeInvalid, "old_key_expires_in_seconds must be in 1..%d (7 days)", int64(maxRotationGrace/time.Second))
	}
	rec, hash, rev, err := g.target(ctx, p, id, adminPath)
	if err != nil {
		return nil, err
	}
	if rec.ReplacedBy != "" {
		return nil, schemas.Errorf(schemas.CodeConflict, "key %s was already rotated (replaced by %s): rotate its replacement", rec.ID, rec.ReplacedBy)
	}
	if !adminPath {
		if !tierWithin(g.cfg.Tiers, rec.Tier, p.Tier.Name) {
			return nil, schemas.Errorf(schemas.CodeForbidden, "a %s key cannot rotate a %s key: a key rotates only keys whose tier is at most its own", p.Tier.Name, rec.Tier)
		}
		for _, sc := range effectiveScopes(rec) {
			if !p.can(sc) {
				return nil, schemas.Errorf(schemas.CodeForbidden, "key %s holds the %s scope, which this key does not: a key rotates only keys whose scopes are at most its own", rec.ID, sc)
			}
		}
	}
	if p.ExpiresAt != nil && (rec.ExpiresAt == nil || rec.ExpiresAt.After(*p.ExpiresAt)) {
		return nil, schemas.Errorf(schemas.CodeForbidden, "key %s outlives this credential (which expires at %s): a key rotates only keys that expire no later than itself", rec.ID, p.ExpiresAt.UTC().Format(time.RFC3339))
	}
	unlock, err := g.keyCap(ctx, rec.TenantID, rec.Tier)
	if err != nil {
		return nil, err
	}
	defer unlock()
	nk, err := g.admin().prepareKey(ctx, schemas.CreateKeyRequest{TenantID: rec.TenantID, Tier: rec.Tier, Name: rec.Name, Admin: rec.Admin, Scopes: effectiveScopes(rec), ExpiresAt: rec.ExpiresAt})
	if err != nil {
		return nil, err
	}
	// First mark the old record replaced, on the revision read: if it was revoked or rotated
	// meanwhile this fails and nothing is written. Then store the new key.
	before, _ := json.Marshal(rec)
	old := rec
	old.ReplacedBy = nk.rec.ID
	if exp := g.keyring.now().Add(grace).UTC(); old.ExpiresAt == nil || exp.Before(*old.ExpiresAt) {
		old.ExpiresAt = &exp
	}
	b, _ := json.Marshal(old)
	newRev, err := g.keysKV.Update(ctx, hash, b, rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return nil, schemas.Errorf(schemas.CodeConflict, "key %s was revoked or rotated while this rotation ran; nothing was changed", rec.ID)
	}
	if err != nil {
		return nil, unavailable("key store", err)
	}
	k, err := g.admin().storeKey(ctx, nk)
	if err != nil {
		// Undo the mark, again only on the revision written (a revocation since then stands).
		_, _ = g.keysKV.Update(ctx, hash, before, newRev)
		g.keyring.refresh(ctx, hash)
		return nil, err
	}
	g.keyring.refresh(ctx, hash)
	g.keyCreated(ctx, k)
	return k, nil
}

// issueToken trades an API key (not a token) for a short-lived JWT, which expires no later
// than the key.
func (g *Server) issueToken(ctx context.Context, p *Principal) (*schemas.TokenResponse, error) {
	if g.keyring.signer == nil {
		return nil, schemas.Errorf(schemas.CodeUnavailable, "tokens are not configured on this gateway (no JWT signing key)")
	}
	p, err := g.current(ctx, p)
	if err != nil {
		return nil, err
	}
	if p.ViaToken {
		return nil, schemas.Errorf(schemas.CodeForbidden, "a token cannot be traded for another token; use the API key")
	}
	tok, exp, err := g.keyring.signer.issue(p, g.cfg.TokenTTL, g.keyring.now())
	if err != nil {
		return nil, err
	}
	return &schemas.TokenResponse{Token: tok, TokenType: "Bearer", ExpiresAt: exp.UTC()}, nil
}

func (g *Server) adminListKeys(ctx context.Context, p *Principal, tenant string) (*schemas.KeyList, error) {
	if err := requireAdmin(p); err != nil {
		return nil, err
	}
	return g.withLastUsed(ctx, g.keyring.tenantKeys(tenant)), nil
}

type keyInput struct {
	Body schemas.CreateKeyRequest
}

type keyOutput struct {
	Body *schemas.CreatedKey
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
type adminKeysInput struct {
	TenantID string `query:"tenant_id" doc:"only this tenant's keys"`
}

func (g *Server) restListKeys(ctx context.Context, p *Principal, _ *struct{}) (*keyListOutput, error) {
	l, err := g.listKeys(ctx, p)
	return &keyListOutput{Body: l}, err
}

func (g *Server) restNewKey(ctx context.Context, p *Principal, in *newKeyInput) (*keyOutput, error) {
	k, err := g.newKey(ctx, p, &in.Body)
	return &keyOutput{Body: k}, err
}

func (g *Server) restCreateKey(ctx context.Context, p *Principal, in *keyInput) (*keyOutput, error) {
	k, err := g.createKey(ctx, p, &in.Body)
	return &keyOutput{Body: k}, err
}

func (g *Server) restAdminListKeys(ctx context.Context, p *Principal, in *adminKeysInput) (*keyListOutput, error) {
	l, err := g.adminListKeys(ctx, p, in.TenantID)
	return &keyListOutput{Body: l}, err
}

// restRevokeKey is DELETE /v1/keys/{id}, or with adminPath /v1/admin/keys/{id}.
func (g *Server) restRevokeKey(adminPath bool) func(context.Context, *Principal, *keyIDInput) (*struct{}, error) {
	return func(ctx context.Context, p *Principal, in *keyIDInput) (*struct{}, error) {
		return nil, g.revokeKey(ctx, p, in.ID, adminPath)
	}
}

// restRotateKey is POST /v1/keys/{id}/rotate, or with adminPath /v1/admin/keys/{id}/rotate.
func (g *Server) restRotateKey(adminPath bool) func(context.Context, *Principal, *rotateInput) (*keyOutput, error) {
	return func(ctx context.Context, p *Principal, in *rotateInput) (*keyOutput, error) {
		k, err := g.rotateKey(ctx, p, in.ID, &in.Body, adminPath)
		return &keyOutput{Body: k}, err
	}
}

func (g *Server) restIssueToken(ctx context.Context, p *Principal, _ *struct{}) (*tokenOutput, error) {
	tok, err := g.issueToken(ctx, p)
	return &tokenOutput{Body: tok}, err
}

func (g *Server) restJWKS(context.Context, *Principal, *struct{}) (*jwksOutput, error) {
	return &jwksOutput{Body: g.keyring.signerJWKS()}, nil
}
