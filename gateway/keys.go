package gateway

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"math/big"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// API keys look like ww_<43 base62 characters: 256 random bits>_<6 base62 characters: CRC-32 of
// the random part>. The checksum lets the gateway turn away mistyped or made-up keys without a
// lookup; only the SHA-256 of the whole key is stored.
const (
	keyPrefix      = "ww_"
	keyRandomBytes = 32
	keyRandomLen   = 43
	keyCheckLen    = 6
	base62         = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)

// NewAPIKey returns a new random API key.
func NewAPIKey() (string, error) {
	b := make([]byte, keyRandomBytes)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	r := encodeBase62(b, keyRandomLen)
	return keyPrefix + r + "_" + keyChecksum(r), nil
}

func keyChecksum(random string) string {
	return encodeBase62(big.NewInt(int64(crc32.ChecksumIEEE([]byte(random)))).Bytes(), keyCheckLen)
}

func encodeBase62(b []byte, width int) string {
	n := new(big.Int).SetBytes(b)
	out := make([]byte, width)
	base := big.NewInt(62)
	mod := new(big.Int)
	for i := width - 1; i >= 0; i-- {
		n.DivMod(n, base, mod)
		out[i] = base62[mod.Int64()]
	}
	return string(out)
}

// WellFormedAPIKey reports whether s has the shape and checksum of an API key.
func WellFormedAPIKey(s string) bool {
	rest, ok := strings.CutPrefix(s, keyPrefix)
	if !ok || len(rest) != keyRandomLen+1+keyCheckLen || rest[keyRandomLen] != '_' {
		return false
	}
	for i := 0; i < len(rest); i++ {
		if i != keyRandomLen && strings.IndexByte(base62, rest[i]) < 0 {
			return false
		}
	}
	return keyChecksum(rest[:keyRandomLen]) == rest[keyRandomLen+1:]
}

// HashAPIKey is the KV key under which an API key's record is stored: hex SHA-256.
func HashAPIKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// Principal is an authenticated caller.
type Principal struct {
	TenantID string
	KeyID    string
	Tier     schemas.Tier
	Admin    bool
	Scopes   []string
	ViaToken bool // authenticated by a JWT rather than the API key itself
	// ExpiresAt is when this credential stops working: the key's expiry, or for a token the
	// earlier of the token's and its key's. Nil: never. Keys it makes expire no later.
	ExpiresAt *time.Time
	// Replaced: the key was rotated and is in its grace, which is for finishing in-flight work
	// only: it (and its tokens) can create, rotate and revoke no key but itself.
	Replaced bool

	tokenExpires *time.Time // a token's own expiry, kept to recompute ExpiresAt from a fresh record
}

// can reports whether the caller holds scope (admin keys hold every scope).
func (p *Principal) can(scope string) bool {
	return p.Admin || slices.Contains(p.Scopes, scope)
}

// require is can as an error: 403 naming the missing scope.
func (p *Principal) require(scope string) error {
	if p.can(scope) {
		return nil
	}
	return schemas.Errorf(schemas.CodeForbidden, "this key lacks the %s scope", scope)
}

// keyring is the gateway's watched, in-memory copy of the keys and tenants buckets, so that
// authentication costs no round trip and a revocation applies at once.
type keyring struct {
	keys    jetstream.KeyValue
	tenants jetstream.KeyValue
	tiers   map[string]schemas.Tier
	log     *slog.Logger

	signer      *Signer          // nil: tokens are neither issued nor accepted
	now         func() time.Time // the clock of every key and token decision (tests set it)
	mu          sync.RWMutex
	watched     uint64              // the highest keys-bucket revision the watch has delivered
	revoked     map[string]uint64   // hash -> revision revoked here, until the watch delivers the revocation
	createLocks sync.Map            // tenant -> *sync.Mutex held while a key is counted against the cap and stored
	bySelector  map[string]keyEntry // first 16 hex digits of the hash -> record
	byID        map[string]string   // key id -> selector
	tenantByID  map[string]schemas.Tenant
	synced      chan struct{}
}

func newKeyring(keys, tenants jetstream.KeyValue, tiers map[string]schemas.Tier, log *slog.Logger) *keyring {
	return &keyring{
		keys: keys, tenants: tenants, tiers: tiers, log: log, now: time.Now,
		bySelector: map[string]keyEntry{},
		byID:       map[string]string{},
		revoked:    map[string]uint64{},
		tenantByID: map[string]schemas.Tenant{},
		synced:     make(chan struct{}),
	}
}

// run watches both buckets until ctx ends. synced is closed once both initial states are loaded.
func (k *keyring) run(ctx context.Context) error {
	err := k.watch(ctx)
	if ctx.Err() != nil {
		return nil // stopping; an error on the way out is not a failure
	}
	return err
}

func (k *keyring) watch(ctx context.Context) error {
	kw, err := k.keys.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch keys: %w", err)
	}
	defer kw.Stop()
	tw, err := k.tenants.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch tenants: %w", err)
	}
	defer tw.Stop()
	keysDone, tenantsDone := false, false
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-kw.Updates():
			if !ok {
				return errors.New("keys watcher closed")
			}
			if e == nil {
				keysDone = true
			} else {
				k.applyKey(e, true)
			}
		case e, ok := <-tw.Updates():
			if !ok {
				return errors.New("tenants watcher closed")
			}
			if e == nil {
				tenantsDone = true
			} else {
				k.applyTenant(e)
			}
		}
		if keysDone && tenantsDone {
			select {
			case <-k.synced:
			default:
				close(k.synced)
			}
		}
	}
}

// applyKey applies a key record, or its deletion, to the watched copy. Entries come from the
// watch (in stream order) and from reads made here (a lookup that missed, a read-back after a
// write), which can be older than what the watch has applied meanwhile: a read made before a
// revocation must not put the revoked key back after the watch has removed it. So a read is
// applied only if it is newer than everything the watch has delivered, and never at or below a
// revision this gateway revoked (see forget).
func (k *keyring) applyKey(e jetstream.KeyValueEntry, fromWatch bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if fromWatch {
		k.watched = max(k.watched, e.Revision())
		if t, ok := k.revoked[e.Key()]; ok && e.Revision() > t {
			delete(k.revoked, e.Key()) // the watch has reached the revocation
		}
	} else if e.Revision() <= k.watched {
		return // the watch applied this entry, or a later one for this key, already
	}
	if t, ok := k.revoked[e.Key()]; ok && e.Revision() <= t {
		return
	}
	if len(e.Key()) != sha256.Size*2 {
		return
	}
	sel := e.Key()[:16]
	old, ok := k.bySelector[sel]
	if ok && old.hash == e.Key() && old.rev >= e.Revision() {
		return // this gateway applied its own write, or a later one, already (see refreshKey)
	}
	if ok {
		delete(k.byID, old.rec.ID)
	}
	if e.Operation() != jetstream.KeyValuePut {
		delete(k.bySelector, sel)
		return
	}
	var rec schemas.Key
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		k.log.Error("undecodable key record", "err", err)
		return
	}
	k.bySelector[sel] = keyEntry{hash: e.Key(), rec: rec, rev: e.Revision()}
	k.byID[rec.ID] = sel
}

// keyEntry is a key record with the hash it is stored under. Lookups go by a selector (the
// hash's first 16 hex digits); the whole hash is then compared in constant time, so the
// decision never depends on how many leading bytes of a guess matched.
type keyEntry struct {
	hash string
	rec  schemas.Key
	rev  uint64 // the KV revision the record came from
}

func (k *keyring) applyTenant(e jetstream.KeyValueEntry) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if e.Operation() != jetstream.KeyValuePut {
		delete(k.tenantByID, e.Key())
		return
	}
	var t schemas.Tenant
	if err := json.Unmarshal(e.Value(), &t); err != nil {
		k.log.Error("undecodable tenant record", "err", err)
		return
	}
	k.tenantByID[e.Key()] = t
}

func (k *keyring) isSynced() bool {
	select {
	case <-k.synced:
		return true
	default:
		return false
	}
}

var errUnauthorized = schemas.Errorf(schemas.CodeUnauthorized, "missing or unknown API key: send Authorization: Bearer <key>")

// authenticate checks an Authorization header value: "Bearer <API key or token>" (or bare).
func (k *keyring) authenticate(ctx context.Context, authorization string) (*Principal, error) {
	token := strings.TrimSpace(authorization)
	// The scheme is case-insensitive (RFC 9110 §11.1).
	if len(token) > 7 && strings.EqualFold(token[:7], "Bearer ") {
		token = strings.TrimSpace(token[7:])
	}
	if strings.HasPrefix(token, keyPrefix) {
		rec, err := k.lookupKey(ctx, token)
		if err != nil {
			return nil, err
		}
		return k.principal(rec, rec.Scopes, nil)
	}
	if strings.Count(token, ".") == 2 && k.signer != nil {
		c, err := k.signer.verify(token, k.now)
		if err != nil {
			return nil, schemas.Errorf(schemas.CodeUnauthorized, "invalid or expired token")
		}
		k.mu.RLock()
		ent, ok := k.bySelector[k.byID[c.KeyID]]
		k.mu.RUnlock()
		if !ok || ent.rec.ID != c.KeyID || ent.rec.TenantID != c.Tenant {
			return nil, schemas.Errorf(schemas.CodeUnauthorized, "the key this token came from was revoked")
		}
		// The token may narrow the key's scopes, never widen them.
		var scopes []string
		for _, sc := range c.Scopes {
			if ent.rec.Admin || slices.Contains(effectiveScopes(ent.rec), sc) {
				scopes = append(scopes, sc)
			}
		}
		exp := c.ExpiresAt.Time
		return k.principal(ent.rec, scopes, &exp)
	}
	return nil, errUnauthorized
}

// lookupKey finds an API key's record, comparing the full hash in constant time.
func (k *keyring) lookupKey(ctx context.Context, token string) (schemas.Key, error) {
	if !WellFormedAPIKey(token) {
		return schemas.Key{}, errUnauthorized
	}
	h := HashAPIKey(token)
	k.mu.RLock()
	ent, ok := k.bySelector[h[:16]]
	k.mu.RUnlock()
	if !ok {
		// A key created a moment ago through another gateway may not have reached our watcher yet.
		e, err := k.keys.Get(ctx, h)
		if err != nil {
			if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
				return schemas.Key{}, errUnauthorized
			}
			return schemas.Key{}, &schemas.Error{Code: schemas.CodeUnavailable, Message: "key store unreachable", RetryAfter: unavailableRetryAfter}
		}
		if e.Operation() != jetstream.KeyValuePut || json.Unmarshal(e.Value(), &ent.rec) != nil {
			return schemas.Key{}, errUnauthorized
		}
		ent.hash = e.Key()
		k.applyKey(e, false)
	}
	if subtle.ConstantTimeCompare([]byte(ent.hash), []byte(h)) != 1 {
		return schemas.Key{}, errUnauthorized
	}
	return ent.rec, nil
}

func effectiveScopes(rec schemas.Key) []string {
	if rec.Scopes == nil {
		return schemas.AllScopes
	}
	return rec.Scopes
}

// principal checks a key record (expiry, tenant) and makes the caller it stands for; tokenExp is
// the expiry of the token it came through (nil: the key itself). The tier is the key's, capped by
// the tenant's current tier, so lowering a tenant's tier lowers its keys.
func (k *keyring) principal(rec schemas.Key, scopes []string, tokenExp *time.Time) (*Principal, error) {
	if rec.ExpiresAt != nil && k.now().After(*rec.ExpiresAt) {
		return nil, schemas.Errorf(schemas.CodeUnauthorized, "API key expired")
	}
	viaToken := tokenExp != nil
	k.mu.RLock()
	tenant, tok := k.tenantByID[rec.TenantID]
	k.mu.RUnlock()
	if tok && tenant.Suspended {
		return nil, schemas.Errorf(schemas.CodeForbidden, "tenant %s is suspended", rec.TenantID)
	}
	tierName := rec.Tier
	if tok && !tierWithin(k.tiers, tierName, tenant.Tier) {
		tierName = tenant.Tier
	}
	tier, ok := k.tiers[tierName]
	if !ok {
		return nil, schemas.Errorf(schemas.CodeForbidden, "tier %q is not configured", tierName)
	}
	if !viaToken {
		scopes = effectiveScopes(rec)
	}
	return &Principal{TenantID: rec.TenantID, KeyID: rec.ID, Tier: tier, Admin: rec.Admin, Scopes: scopes, ViaToken: viaToken,
		ExpiresAt: earliest(rec.ExpiresAt, tokenExp), Replaced: rec.ReplacedBy != "", tokenExpires: tokenExp}, nil
}

// earliest is the earlier of two optional instants (nil: never).
func earliest(a, b *time.Time) *time.Time {
	switch {
	case a == nil:
		return b
	case b == nil || a.Before(*b):
		return a
	default:
		return b
	}
}

// watchedRevision is the highest keys-bucket revision this gateway's watch has applied.
func (k *keyring) watchedRevision() uint64 {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.watched
}

// tenantTier is the tier a tenant is on now ("" when this gateway has not seen the tenant).
func (k *keyring) tenantTier(tenant string) string {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.tenantByID[tenant].Tier
}

// tierWithin reports whether tier a is at most tier b: the same tier, or one served at a lower
// priority. Tiers of equal priority but different names (pro and unlimited) are not within each
// other, so no tenant can mint itself a key of a tier it was not given.
func tierWithin(tiers map[string]schemas.Tier, a, b string) bool {
	if a == b {
		return true
	}
	ta, okA := tiers[a]
	tb, okB := tiers[b]
	return okA && okB && ta.Priority < tb.Priority
}

// tenantKeys lists a tenant's key records (never secrets), from the watched copy.
func (k *keyring) tenantKeys(tenant string) []schemas.Key {
	k.mu.RLock()
	defer k.mu.RUnlock()
	var out []schemas.Key
	for _, e := range k.bySelector {
		if e.rec.TenantID == tenant || tenant == "" {
			out = append(out, e.rec)
		}
	}
	slices.SortFunc(out, func(a, b schemas.Key) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out
}

// tenantEntries lists a tenant's key records with their hashes and revisions.
func (k *keyring) tenantEntries(tenant string) []keyEntry {
	k.mu.RLock()
	defer k.mu.RUnlock()
	var out []keyEntry
	for _, e := range k.bySelector {
		if e.rec.TenantID == tenant {
			out = append(out, e)
		}
	}
	return out
}

// keyByID finds a key's record and KV key (its hash) by id.
func (k *keyring) keyByID(id string) (schemas.Key, string, bool) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	e, ok := k.bySelector[k.byID[id]]
	if !ok || e.rec.ID != id {
		return schemas.Key{}, "", false
	}
	return e.rec, e.hash, true
}

// refresh reads a key this gateway has just written and applies it at once, so that the next
// request here (rotate or revoke the key just made, list the tenant's keys) sees it before the
// watch delivers it. Keys read from the watch later are applied only if they are newer.
func (k *keyring) refresh(ctx context.Context, hash string) {
	e, err := k.keys.Get(ctx, hash)
	if err != nil {
		k.log.Warn("read back a key just written", "err", err) // the watch will deliver it
		return
	}
	k.applyKey(e, false)
}

// forget drops a key at once: this gateway has just revoked it, on revision rev. Until the watch
// delivers the revocation, no entry at or below rev is applied again.
func (k *keyring) forget(hash string, rev uint64) {
	if len(hash) != sha256.Size*2 {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if rev > k.watched {
		k.revoked[hash] = rev
	}
	if old, ok := k.bySelector[hash[:16]]; ok && old.hash == hash {
		delete(k.byID, old.rec.ID)
		delete(k.bySelector, hash[:16])
	}
}

func (k *keyring) signerJWKS() *JWKS { return k.signer.jwks() }
