package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/internal/natstest"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// TestKeys_Model is a model-based test of key management (issue 12, "Also"): random sequences
// of create, rotate, revoke, expire (the clock moves on), token exchange and use, by random
// credentials (keys and tokens of two tenants, admin keys, dead ones) through two gateways on one
// embedded JetStream, each answer checked against a small model of who may do what (mayCreate,
// mayRotate, mayRevoke, mayToken below: the rules of SECURITY.md § Keys, written a second time).
// After each change both gateways' watches catch up before the next step, except for probes
// made at once on the other gateway that must hold without the watch: a revoked key can do
// nothing, a revoked key cannot be rotated, a replaced key manages nothing.
//
// It runs twenty sequences of fixed seeds, then sequences of fresh seeds until about three
// seconds have passed (WASMWIZ_KEYS_MODEL_TIME overrides, e.g. 60s); a failure prints the
// sequence's seed and its last steps. Replay one sequence with WASMWIZ_KEYS_MODEL_SEED=<seed>.
func TestKeys_Model(t *testing.T) {
	budget := 3 * time.Second
	if v := os.Getenv("WASMWIZ_KEYS_MODEL_TIME"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatal(err)
		}
		budget = d
	}
	srv := natstest.RunJetStream(t)
	tiers := schemas.DefaultTiers()
	for name, cap := range map[string]int{schemas.TierFree: 3, schemas.TierBasic: 5} {
		tr := tiers[name]
		tr.MaxKeys = cap
		tiers[name] = tr
	}
	jwt := filepath.Join(t.TempDir(), "jwt.pem")
	clock := &fakeClock{}
	var gws [2]*Server
	for i := range gws {
		gws[i] = newTestGatewayTiers(t, srv, tiers, jwt)
		gws[i].keyring.now = clock.Now
		runKeyring(t, gws[i])
	}
	m := &keysModel{t: t, gws: gws, clock: clock, tiers: tiers}

	seeds := []uint64{}
	if v := os.Getenv("WASMWIZ_KEYS_MODEL_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, s)
	}
	start, steps, sequences := time.Now(), 0, 0
	for seq := 0; ; seq++ {
		var seed uint64
		if len(seeds) > 0 {
			if seq == len(seeds) {
				break
			}
			seed = seeds[seq]
		} else {
			// First a fixed set that reaches every rule (checked below) however slow the
			// machine, then fresh seeds until the time is up.
			if seq >= fixedSequences && time.Since(start) > budget {
				break
			}
			seed = uint64(seq) + 1
			if seq >= fixedSequences {
				seed = uint64(time.Now().UnixNano())
			}
		}
		n := m.sequence(seq, seed, 80)
		steps += n
		sequences++
		if t.Failed() {
			return
		}
	}
	t.Logf("%d sequences, %d steps, outcomes %v", sequences, steps, m.outcomes)
	for _, want := range []string{"create 201", "create 403", "create 409", "create 422", "rotate 201", "rotate 403", "rotate 404", "rotate 409", "revoke 204", "revoke 403", "revoke 404", "token 200", "token 401", "use 200", "use 401", "admin-rotate 201", "probe 401"} {
		if len(seeds) == 0 && m.outcomes[want] == 0 {
			t.Errorf("no step ended %q: the sequences do not reach every rule", want)
		}
	}
}

// fixedSequences is how many sequences with the seeds 1, 2, … run before the random ones.
const fixedSequences = 20

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// mKey is the model of a key.
type mKey struct {
	id, secret, tenant, tier string
	scopes                   []string
	admin                    bool
	exp                      *time.Time
	replaced, revoked        bool
}

// mCred is a credential: a key, or a token made from one.
type mCred struct {
	key   *mKey
	token string     // "" for the key itself
	exp   *time.Time // the token's expiry
}

func (c *mCred) secret() string {
	if c.token != "" {
		return c.token
	}
	return c.key.secret
}

func (c *mCred) String() string {
	if c.token != "" {
		return "token of " + c.key.String()
	}
	return c.key.String()
}

func (k *mKey) String() string {
	var tags []string
	if k.admin {
		tags = append(tags, "admin")
	}
	if k.replaced {
		tags = append(tags, "replaced")
	}
	if k.revoked {
		tags = append(tags, "revoked")
	}
	exp := "never"
	if k.exp != nil {
		exp = k.exp.Format("15:04")
	}
	return fmt.Sprintf("%s(%s %s %v exp %s %s)", k.id, k.tenant, k.tier, k.scopes, exp, strings.Join(tags, ","))
}

type keysModel struct {
	t        *testing.T
	gws      [2]*Server
	clock    *fakeClock
	tiers    map[string]schemas.Tier
	outcomes map[string]int

	// per sequence
	rng         *rand.Rand
	keys        []*mKey
	creds       []*mCred
	tenants     []string // the two tenants keys are made for
	tenantTiers map[string]string
	log         []string
	seed        uint64
}

func (m *keysModel) now() time.Time { return m.clock.Now() }

func (m *keysModel) live(k *mKey) bool {
	return !k.revoked && (k.exp == nil || !m.now().After(*k.exp))
}

// alive reports whether a credential authenticates: its key is live, and a token has not expired.
func (m *keysModel) alive(c *mCred) bool {
	return m.live(c.key) && (c.exp == nil || !m.now().After(*c.exp))
}

// credExp is when a credential stops working: the earlier of its key's and its token's expiry.
func credExp(c *mCred) *time.Time {
	return earliest(c.key.exp, c.exp)
}

func (m *keysModel) holds(c *mCred, scope string) bool {
	return c.key.admin || slices.Contains(c.key.scopes, scope)
}

func (m *keysModel) within(a, b string) bool { return tierWithin(m.tiers, a, b) }

func (m *keysModel) liveKeys(tenant string) int {
	n := 0
	for _, k := range m.keys {
		if k.tenant == tenant && m.live(k) {
			n++
		}
	}
	return n
}

// sequence runs one random sequence of steps on fresh tenants and returns how many it ran.
func (m *keysModel) sequence(seq int, seed uint64, steps int) int {
	m.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	m.seed, m.keys, m.creds, m.log = seed, nil, nil, nil
	if m.outcomes == nil {
		m.outcomes = map[string]int{}
	}
	// Every sequence starts at the same whole minute, so that a seed replays exactly; expiries
	// and clock steps are whole minutes, so no answer depends on a token's 5 s leeway.
	m.clock.set(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	ctx := context.Background()
	m.tenants = []string{fmt.Sprintf("s%d-a", seq), fmt.Sprintf("s%d-b", seq)}
	ops := fmt.Sprintf("s%d-ops", seq)
	m.tenantTiers = map[string]string{m.tenants[0]: schemas.TierBasic, m.tenants[1]: schemas.TierFree, ops: schemas.TierUnlimited}
	for _, tn := range append(slices.Clone(m.tenants), ops) {
		if _, err := m.gws[0].admin().CreateTenant(ctx, tn, m.tenantTiers[tn]); err != nil {
			m.t.Fatal(err)
		}
		k := mustAdminKey(m.t, m.gws[0], schemas.CreateKeyRequest{TenantID: tn, Admin: tn == ops})
		m.add(&k.Record, k.Key)
	}
	natstest.CheckFor(m.t, 10*time.Second, poll, state(func() bool {
		return m.gws[0].keyring.tenantTier(ops) != "" && m.gws[1].keyring.tenantTier(ops) != ""
	}, func() string { return "the gateways never saw the sequence's tenants" }))
	m.sync()
	for i := range steps {
		m.step(i)
		if m.t.Failed() {
			return i + 1
		}
	}
	return steps
}

func (m *keysModel) add(rec *schemas.Key, secret string) *mKey {
	k := &mKey{id: rec.ID, secret: secret, tenant: rec.TenantID, tier: rec.Tier, scopes: slices.Clone(rec.Scopes), admin: rec.Admin, exp: rec.ExpiresAt}
	m.keys = append(m.keys, k)
	m.creds = append(m.creds, &mCred{key: k})
	return k
}

// pickCred picks a credential, an alive one three times in four.
func (m *keysModel) pickCred() *mCred {
	if m.rng.IntN(4) > 0 {
		var alive []*mCred
		for _, c := range m.creds {
			if m.alive(c) {
				alive = append(alive, c)
			}
		}
		if len(alive) > 0 {
			return alive[m.rng.IntN(len(alive))]
		}
	}
	return m.creds[m.rng.IntN(len(m.creds))]
}
func (m *keysModel) pickKey() *mKey { return m.keys[m.rng.IntN(len(m.keys))] }

// sync waits until both gateways' watches have delivered everything in the keys bucket.
func (m *keysModel) sync() {
	ctx := context.Background()
	st, err := m.gws[0].js.Stream(ctx, "KV_"+schemas.BucketKeys)
	if err != nil {
		m.t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		m.t.Fatal(err)
	}
	last := info.State.LastSeq
	natstest.CheckFor(m.t, 10*time.Second, poll, state(func() bool {
		return m.gws[0].keyring.watchedRevision() >= last && m.gws[1].keyring.watchedRevision() >= last
	}, func() string { return fmt.Sprintf("the gateways' watches never reached revision %d", last) }))
}

type answer struct {
	status int
	body   []byte
}

func (m *keysModel) call(gw int, method, path, secret string, body any) answer {
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req := httptest.NewRequest(method, path, rd)
	req.Header.Set("Authorization", "Bearer "+secret)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	w := httptest.NewRecorder()
	m.gws[gw].Handler().ServeHTTP(w, req)
	return answer{w.Code, w.Body.Bytes()}
}

// check compares an answer with the model's and records the step.
func (m *keysModel) check(op, what string, got answer, want int) bool {
	m.log = append(m.log, fmt.Sprintf("%s: %d (model %d)", what, got.status, want))
	m.outcomes[op+" "+strconv.Itoa(got.status)]++
	if got.status != want {
		start := max(0, len(m.log)-25)
		m.t.Errorf("seed %d (replay: WASMWIZ_KEYS_MODEL_SEED=%d go test ./gateway -run TestKeys_Model): %s answered %d, the model says %d: %s\nlast steps:\n  %s",
			m.seed, m.seed, what, got.status, want, got.body, strings.Join(m.log[start:], "\n  "))
		return false
	}
	return true
}

func (m *keysModel) step(i int) {
	gw := m.rng.IntN(2)
	switch r := m.rng.IntN(100); {
	case r < 25:
		m.create(gw, false)
	case r < 32:
		m.create(gw, true)
	case r < 50:
		m.rotate(gw, false)
	case r < 55:
		m.rotate(gw, true)
	case r < 67:
		m.revoke(gw, false)
	case r < 70:
		m.revoke(gw, true)
	case r < 80:
		m.token(gw)
	case r < 90:
		m.use(gw)
	default:
		steps := []time.Duration{time.Minute, 5 * time.Minute, 14 * time.Minute, 16 * time.Minute, 61 * time.Minute, 3 * time.Hour, 3 * 24 * time.Hour}
		d := steps[m.rng.IntN(len(steps))]
		m.clock.advance(d)
		m.log = append(m.log, fmt.Sprintf("the clock moves on %s to %s", d, m.now().Format("Jan 2 15:04")))
	}
}

// pickScopes: absent, empty, one unknown, or a random non-empty subset.
func (m *keysModel) pickScopes() []string {
	switch m.rng.IntN(8) {
	case 0, 1:
		return nil
	case 2:
		return []string{}
	case 3:
		return []string{schemas.ScopeExecute, "admin:everything"}
	}
	var out []string
	for _, sc := range schemas.AllScopes {
		if m.rng.IntN(2) == 0 {
			out = append(out, sc)
		}
	}
	if len(out) == 0 {
		out = []string{schemas.AllScopes[m.rng.IntN(len(schemas.AllScopes))]}
	}
	return out
}

func (m *keysModel) pickExpiry() *time.Time {
	offs := []time.Duration{-time.Minute, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 3 * 24 * time.Hour}
	if m.rng.IntN(3) == 0 {
		return nil
	}
	e := m.now().Add(offs[m.rng.IntN(len(offs))])
	return &e
}

func (m *keysModel) create(gw int, adminPath bool) {
	c := m.pickCred()
	tiersAsked := []string{"", schemas.TierFree, schemas.TierBasic, schemas.TierPro}
	tier := tiersAsked[m.rng.IntN(len(tiersAsked))]
	scopes, exp := m.pickScopes(), m.pickExpiry()
	var (
		a      answer
		tenant = c.key.tenant
		admin  bool
	)
	// A map, not the request types: their omitempty would drop "scopes": [].
	body := map[string]any{}
	if tier != "" {
		body["tier"] = tier
	}
	if scopes != nil {
		body["scopes"] = scopes
	}
	if exp != nil {
		body["expires_at"] = exp
	}
	if adminPath {
		tenant = m.tenants[m.rng.IntN(len(m.tenants))]
		admin = m.rng.IntN(4) == 0
		body["tenant_id"], body["admin"] = tenant, admin
		a = m.call(gw, http.MethodPost, "/v1/admin/keys", c.secret(), body)
	} else {
		a = m.call(gw, http.MethodPost, "/v1/keys", c.secret(), body)
	}
	// The model.
	want, newTier, newScopes, newExp := m.mayCreate(c, adminPath, tenant, tier, scopes, exp)
	op := "create"
	if adminPath {
		op = "admin-create"
	}
	if !m.check(op, fmt.Sprintf("%s on gw%d by %s: tenant %s tier %q scopes %s expires %v admin %v", op, gw, c, tenant, tier, fmtScopes(scopes), fmtT(exp), admin), a, want) || want != 201 {
		return
	}
	var k schemas.CreatedKey
	if err := json.Unmarshal(a.body, &k); err != nil {
		m.t.Fatal(err)
	}
	if k.Record.Tier != newTier || !slices.Equal(k.Record.Scopes, newScopes) || !sameTime(k.Record.ExpiresAt, newExp) || k.Record.Admin != admin || k.Record.TenantID != tenant {
		m.t.Errorf("seed %d: %s made %+v; the model says tier %s scopes %v expires %v admin %v", m.seed, op, k.Record, newTier, newScopes, fmtT(newExp), admin)
	}
	m.add(&k.Record, k.Key)
	m.sync()
}

// mayCreate is the model of key creation: the status, and the new key's tier, scopes, expiry.
func (m *keysModel) mayCreate(c *mCred, adminPath bool, tenant, tier string, scopes []string, exp *time.Time) (int, string, []string, *time.Time) {
	if !m.alive(c) {
		return 401, "", nil, nil
	}
	if adminPath && !c.key.admin {
		return 403, "", nil, nil
	}
	if !adminPath && !m.holds(c, schemas.ScopeKeysManage) {
		return 403, "", nil, nil
	}
	if c.key.replaced {
		return 403, "", nil, nil
	}
	if tier == "" {
		tier = m.effTier(c)
		if adminPath {
			tier = m.tenantTier(tenant)
		}
	}
	switch {
	case scopes != nil && len(scopes) == 0, slices.Contains(scopes, "admin:everything"):
		return 422, "", nil, nil
	case exp != nil && exp.Before(m.now()):
		return 422, "", nil, nil
	}
	if scopes == nil {
		scopes = schemas.AllScopes
		if !adminPath {
			scopes = c.key.scopes
		}
	}
	if !adminPath {
		if !m.within(tier, m.effTier(c)) {
			return 403, "", nil, nil
		}
		for _, sc := range scopes {
			if !m.holds(c, sc) {
				return 403, "", nil, nil
			}
		}
	}
	cexp := credExp(c)
	if exp == nil {
		exp = cexp
	} else if cexp != nil && exp.After(*cexp) {
		return 403, "", nil, nil
	}
	if m.liveKeys(tenant) >= m.tiers[m.tenantTier(tenant)].KeyCap() {
		return 409, "", nil, nil
	}
	return 201, tier, scopes, exp
}

func (m *keysModel) tenantTier(tenant string) string { return m.tenantTiers[tenant] }

// effTier is the tier a credential acts with: its key's, capped by its tenant's.
func (m *keysModel) effTier(c *mCred) string {
	if t := m.tenantTier(c.key.tenant); !m.within(c.key.tier, t) {
		return t
	}
	return c.key.tier
}

func (m *keysModel) rotate(gw int, adminPath bool) {
	c, target := m.pickCred(), m.pickKey()
	graces := []int64{0, 0, 60, 3600, 7 * 86400, 7*86400 + 60}
	grace := graces[m.rng.IntN(len(graces))]
	path := "/v1/keys/" + target.id + "/rotate"
	op := "rotate"
	if adminPath {
		path, op = "/v1/admin/keys/"+target.id+"/rotate", "admin-rotate"
	}
	a := m.call(gw, http.MethodPost, path, c.secret(), schemas.RotateKeyRequest{OldKeyExpiresIn: grace})
	want := m.mayRotate(c, target, adminPath, grace)
	if !m.check(op, fmt.Sprintf("%s on gw%d by %s of %s, grace %ds", op, gw, c, target, grace), a, want) || want != 201 {
		return
	}
	var k schemas.CreatedKey
	if err := json.Unmarshal(a.body, &k); err != nil {
		m.t.Fatal(err)
	}
	if k.Record.Tier != target.tier || !slices.Equal(k.Record.Scopes, target.scopes) || !sameTime(k.Record.ExpiresAt, target.exp) || k.Record.Admin != target.admin {
		m.t.Errorf("seed %d: rotation of %s made %+v", m.seed, target, k.Record)
	}
	m.add(&k.Record, k.Key)
	g := time.Hour
	if grace > 0 {
		g = time.Duration(grace) * time.Second
	}
	if e := m.now().Add(g); target.exp == nil || e.Before(*target.exp) {
		target.exp = &e
	}
	target.replaced = true
	// At once, on the other gateway: the replaced key manages nothing, even before that
	// gateway's watch has delivered the rotation.
	if m.rng.IntN(2) == 0 {
		for _, cr := range m.creds {
			if cr.key == target && m.alive(cr) && m.holds(cr, schemas.ScopeKeysManage) && cr.token == "" {
				p := m.call(1-gw, http.MethodPost, "/v1/keys", cr.secret(), schemas.NewKeyRequest{})
				m.check("probe", fmt.Sprintf("probe on gw%d at once: the replaced %s makes a key", 1-gw, target), p, 403)
			}
		}
	}
	m.sync()
}

// mayRotate is the model of rotation.
func (m *keysModel) mayRotate(c *mCred, target *mKey, adminPath bool, grace int64) int {
	switch {
	case !m.alive(c):
		return 401
	case adminPath && !c.key.admin:
		return 403
	case !adminPath && !m.holds(c, schemas.ScopeKeysManage): // the operation's scope, before the body is read
		return 403
	case grace > 7*86400:
		return 422
	case c.key.replaced:
		return 403
	case !m.live(target) || (!adminPath && target.tenant != c.key.tenant):
		return 404
	case !adminPath && target.admin:
		return 403
	case target.replaced:
		return 409
	}
	if !adminPath {
		if !m.within(target.tier, m.effTier(c)) {
			return 403
		}
		for _, sc := range target.scopes {
			if !m.holds(c, sc) {
				return 403
			}
		}
	}
	if cexp := credExp(c); cexp != nil && (target.exp == nil || target.exp.After(*cexp)) {
		return 403
	}
	if m.liveKeys(target.tenant) >= m.tiers[m.tenantTier(target.tenant)].KeyCap() {
		return 409
	}
	return 201
}

func (m *keysModel) revoke(gw int, adminPath bool) {
	c, target := m.pickCred(), m.pickKey()
	path, op := "/v1/keys/"+target.id, "revoke"
	if adminPath {
		path, op = "/v1/admin/keys/"+target.id, "admin-revoke"
	}
	a := m.call(gw, http.MethodDelete, path, c.secret(), nil)
	want := m.mayRevoke(c, target, adminPath)
	if !m.check(op, fmt.Sprintf("%s on gw%d by %s of %s", op, gw, c, target), a, want) || want != 204 {
		return
	}
	target.revoked = true
	// At once, on the other gateway: the revoked key can do nothing, and cannot be rotated.
	if m.rng.IntN(2) == 0 {
		if m.holds(&mCred{key: target}, schemas.ScopeKeysManage) {
			p := m.call(1-gw, http.MethodPost, "/v1/keys/"+target.id+"/rotate", target.secret, schemas.RotateKeyRequest{OldKeyExpiresIn: 7 * 86400})
			m.check("probe", fmt.Sprintf("probe on gw%d at once: the revoked %s rotates itself", 1-gw, target), p, 401)
			p = m.call(1-gw, http.MethodPost, "/v1/auth/token", target.secret, nil)
			m.check("probe", fmt.Sprintf("probe on gw%d at once: the revoked %s asks for a token", 1-gw, target), p, 401)
		}
		if c.key != target && m.alive(c) && !c.key.replaced && (adminPath || m.holds(c, schemas.ScopeKeysManage)) {
			p := m.call(1-gw, http.MethodPost, strings.TrimSuffix(path, "/")+"/rotate", c.secret(), schemas.RotateKeyRequest{})
			m.check("probe", fmt.Sprintf("probe on gw%d at once: %s rotates the revoked %s", 1-gw, c, target), p, 404)
		}
	}
	m.sync()
}

// mayRevoke is the model of revocation.
func (m *keysModel) mayRevoke(c *mCred, target *mKey, adminPath bool) int {
	switch {
	case !m.alive(c):
		return 401
	case adminPath && !c.key.admin:
		return 403
	case !adminPath && !m.holds(c, schemas.ScopeKeysManage):
		return 403
	case !m.live(target) || (!adminPath && target.tenant != c.key.tenant):
		return 404
	case !adminPath && target.admin:
		return 403
	case c.key.replaced && target != c.key:
		return 403
	}
	return 204
}

func (m *keysModel) token(gw int) {
	c := m.pickCred()
	a := m.call(gw, http.MethodPost, "/v1/auth/token", c.secret(), nil)
	want := 200
	switch {
	case !m.alive(c):
		want = 401
	case c.token != "":
		want = 403
	}
	if !m.check("token", fmt.Sprintf("token on gw%d for %s", gw, c), a, want) || want != 200 {
		return
	}
	var tok schemas.TokenResponse
	if err := json.Unmarshal(a.body, &tok); err != nil {
		m.t.Fatal(err)
	}
	exp := m.now().Add(TokenTTL)
	if c.key.exp != nil && c.key.exp.Before(exp) {
		exp = *c.key.exp
	}
	if !tok.ExpiresAt.Equal(exp) {
		m.t.Errorf("seed %d: token of %s expires at %s, the model says %s", m.seed, c, tok.ExpiresAt, exp)
	}
	m.creds = append(m.creds, &mCred{key: c.key, token: tok.Token, exp: &exp})
}

// use lists the tenant's keys with a credential: it must authenticate exactly when the model
// says it is alive, and list every live key of its tenant and no revoked one.
func (m *keysModel) use(gw int) {
	c := m.pickCred()
	a := m.call(gw, http.MethodGet, "/v1/keys", c.secret(), nil)
	want := 200
	switch {
	case !m.alive(c):
		want = 401
	case !m.holds(c, schemas.ScopeKeysManage):
		want = 403
	}
	if !m.check("use", fmt.Sprintf("use on gw%d of %s", gw, c), a, want) || want != 200 {
		return
	}
	var l schemas.KeyList
	if err := json.Unmarshal(a.body, &l); err != nil {
		m.t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, k := range l.Keys {
		listed[k.ID] = true
	}
	for _, k := range m.keys {
		if k.tenant != c.key.tenant {
			continue
		}
		if m.live(k) && !listed[k.id] {
			m.t.Errorf("seed %d: gw%d does not list the live %s", m.seed, gw, k)
		}
		if k.revoked && listed[k.id] {
			m.t.Errorf("seed %d: gw%d lists the revoked %s", m.seed, gw, k)
		}
	}
}

func sameTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

func fmtT(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return t.Format("Jan 2 15:04")
}

func fmtScopes(s []string) string {
	if s == nil {
		return "absent"
	}
	return fmt.Sprint(s)
}
