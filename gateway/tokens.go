package gateway

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Short-lived tokens: POST /v1/auth/token trades an API key for an EdDSA (Ed25519) JWT. Gateways
// accept it like the key; it names the key it came from, so revoking the key revokes its tokens
// at once on every gateway (the key must still be in the watched keyring).

// TokenTTL is how long a token lives unless configured otherwise.
const TokenTTL = 15 * time.Minute

const tokenIssuer = "wasmwiz"

// tokenClaims are a WasmWiz JWT's claims.
type tokenClaims struct {
	Tenant string   `json:"tenant"`
	Tier   string   `json:"tier"`
	KeyID  string   `json:"kid_key"`
	Scopes []string `json:"scopes"`
	jwt.RegisteredClaims
}

// Signer signs and verifies tokens with one Ed25519 key.
type Signer struct {
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
	kid  string
}

// LoadSigner reads a PKCS#8 PEM Ed25519 private key; with create, a missing file is generated
// (mode 0600), as dev mode does.
func LoadSigner(path string, create bool) (*Signer, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && create {
		_, priv, gerr := ed25519.GenerateKey(rand.Reader)
		if gerr != nil {
			return nil, gerr
		}
		der, merr := x509.MarshalPKCS8PrivateKey(priv)
		if merr != nil {
			return nil, merr
		}
		b = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("%s: not a PEM file", path)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	priv, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an Ed25519 private key", path)
	}
	pub := priv.Public().(ed25519.PublicKey)
	sum := sha256.Sum256(pub)
	return &Signer{priv: priv, pub: pub, kid: hex.EncodeToString(sum[:8])}, nil
}

// issue signs a token for p that lives ttl, and never longer than p's own credential.
func (s *Signer) issue(p *Principal, ttl time.Duration, now time.Time) (string, time.Time, error) {
	exp := now.Add(ttl)
	if p.ExpiresAt != nil && p.ExpiresAt.Before(exp) {
		exp = *p.ExpiresAt
	}
	exp = exp.Truncate(time.Second) // a NumericDate has whole seconds: round down, never up
	var jti [16]byte
	_, _ = rand.Read(jti[:])
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, tokenClaims{
		Tenant: p.TenantID, Tier: p.Tier.Name, KeyID: p.KeyID, Scopes: p.Scopes,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: tokenIssuer, Subject: p.TenantID, IssuedAt: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(exp), ID: hex.EncodeToString(jti[:]),
		},
	})
	tok.Header["kid"] = s.kid
	signed, err := tok.SignedString(s.priv)
	return signed, exp, err
}

func (s *Signer) verify(token string, now func() time.Time) (*tokenClaims, error) {
	var c tokenClaims
	_, err := jwt.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) { return s.pub, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithIssuer(tokenIssuer), jwt.WithExpirationRequired(), jwt.WithLeeway(5*time.Second), jwt.WithTimeFunc(now))
	if err != nil {
		return nil, err
	}
	return &c, nil
}

// JWK is one public key in /.well-known/jwks.json.
type JWK struct {
	KTY string `json:"kty"`
	CRV string `json:"crv"`
	X   string `json:"x"`
	KID string `json:"kid"`
	ALG string `json:"alg"`
	Use string `json:"use"`
}

// JWKS is the key set served at /.well-known/jwks.json.
type JWKS struct {
	Keys []JWK `json:"keys"`
}

func (s *Signer) jwks() *JWKS {
	if s == nil {
		return &JWKS{Keys: []JWK{}}
	}
	return &JWKS{Keys: []JWK{{KTY: "OKP", CRV: "Ed25519", X: base64.RawURLEncoding.EncodeToString(s.pub), KID: s.kid, ALG: "EdDSA", Use: "sig"}}}
}
