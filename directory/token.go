package directory

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

// AssertionType is the only client_assertion_type accepted.
const AssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// Limits of SMART Backend Services (standards.md §4, security.md S10).
const (
	MaxAssertionLifetime = 5 * time.Minute
	MaxTokenTTL          = 300 * time.Second
	clockSkew            = 60 * time.Second
)

// Principal is who an access token speaks for.
type Principal struct {
	ClientID string
	MemberID string
	Scopes   Scopes
	Purpose  string // v3-ActReason code
	TokenID  string // the access token's jti, recorded in audit events
}

// TokenResponse is the JSON body of a successful token request.
type TokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
	Scope       string `json:"scope"`
}

// OAuthError carries an RFC 6749 error code; the exchange renders it as the token
// endpoint's JSON error. Description is fixed text, never from input.
type OAuthError struct {
	Code        string // invalid_request, invalid_client, invalid_grant, invalid_scope, unsupported_grant_type
	Description string
	Err         error
}

func (e *OAuthError) Error() string {
	s := "oauth " + e.Code + ": " + e.Description
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *OAuthError) Unwrap() error { return e.Err }

func oauthErr(code, desc string, err error) error {
	return &OAuthError{Code: code, Description: desc, Err: err}
}

// Tokens issues and verifies access tokens for member systems.
type Tokens struct {
	store    *Store
	key      []byte
	issuer   string // the FHIR base URL
	tokenURL string
	ttl      time.Duration
	now      func() time.Time
	signer   jose.Signer

	// verified remembers tokens whose signature and claims Verify has checked, by their exact
	// text, until they expire, so a client's next calls skip the JWS parse and MAC (the token
	// is the same bytes, so its claims cannot change). It remembers nothing about the client:
	// every call still reads the client's registration (Store.tokenClient).
	verifiedMu sync.RWMutex
	verified   map[string]verifiedToken
}

type verifiedToken struct {
	p     Principal
	exp   time.Time
	gen   string // the client's token generation at issue
	scope string // the scope claim as issued
}

// maxVerified bounds the verified-token cache; when full it is emptied and refilled.
const maxVerified = 4096

// NewTokens returns a token service. key signs access tokens (HMAC-SHA256, ≥ 32 bytes);
// tokenURL is the exact `aud` every assertion must carry; ttl is capped at MaxTokenTTL.
// now may be nil (time.Now).
func NewTokens(store *Store, key []byte, issuer, tokenURL string, ttl time.Duration, now func() time.Time) (*Tokens, error) {
	if len(key) < 32 {
		return nil, errs.E("directory.NewTokens", errs.Invalid, "token key shorter than 32 bytes")
	}
	if ttl <= 0 || ttl > MaxTokenTTL {
		ttl = MaxTokenTTL
	}
	if now == nil {
		now = time.Now
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: key}, (&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		return nil, errs.E("directory.NewTokens", errs.Internal, err)
	}
	return &Tokens{store: store, key: key, issuer: issuer, tokenURL: tokenURL, ttl: ttl, now: now, signer: sig}, nil
}

type assertionClaims struct {
	jwt.Claims
	Extensions struct {
		B2B *struct {
			PurposeOfUse json.RawMessage `json:"purpose_of_use"`
		} `json:"hl7-b2b"`
	} `json:"extensions"`
}

type accessClaims struct {
	jwt.Claims
	Org     string `json:"org"`
	Scope   string `json:"scope"`
	Purpose string `json:"pou"`
	// Gen is the client's token generation at issue (Client.TokenGeneration), a UUID in
	// its canonical lower-case text form. A token without it, or with anything else there
	// (the integer of tokens issued before migration 0103, null, an object), is refused.
	Gen string `json:"gen,omitempty"`
}

// Exchange runs a client_credentials grant with a private_key_jwt assertion. Every
// failure is an *OAuthError; a replayed jti, an assertion that lives longer than 5 minutes,
// an unregistered jku or x5u, an unknown or ambiguous kid, and a purpose the client is not
// registered for are all refused. No refresh token is ever issued.
func (t *Tokens) Exchange(ctx context.Context, form url.Values) (TokenResponse, error) {
	for _, vs := range form {
		// Two values for one parameter could let the checks here and a proxy or log in
		// front of us read different ones (RFC 6749 §3.2: parameters must not be repeated).
		if len(vs) > 1 {
			return TokenResponse{}, oauthErr("invalid_request", "a parameter appears more than once", nil)
		}
	}
	if form.Get("grant_type") != "client_credentials" {
		return TokenResponse{}, oauthErr("unsupported_grant_type", "grant_type must be client_credentials", nil)
	}
	if form.Get("client_assertion_type") != AssertionType {
		return TokenResponse{}, oauthErr("invalid_request", "client_assertion_type must be jwt-bearer", nil)
	}
	raw := form.Get("client_assertion")
	if raw == "" || len(raw) > 16<<10 {
		return TokenResponse{}, oauthErr("invalid_request", "client_assertion missing", nil)
	}
	jws, err := jose.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS384, jose.ES384})
	if err != nil || len(jws.Signatures) != 1 {
		return TokenResponse{}, oauthErr("invalid_client", "assertion must be a compact JWS signed with RS384 or ES384", err)
	}
	h := jws.Signatures[0].Header
	if h.JSONWebKey != nil || forbiddenKeyHeader(raw) {
		return TokenResponse{}, oauthErr("invalid_client", "jku, x5u, x5c and embedded jwk are not accepted; register the JWKS", nil)
	}
	// Read iss without trusting it, to find the client's keys.
	var unverified assertionClaims
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &unverified); err != nil {
		return TokenResponse{}, oauthErr("invalid_client", "assertion claims are not JSON", err)
	}
	client, err := t.store.Client(ctx, unverified.Issuer)
	if err != nil {
		if errs.CodeOf(err) == errs.NotFound {
			return TokenResponse{}, oauthErr("invalid_client", "unknown client", err)
		}
		return TokenResponse{}, err
	}
	if client.Disabled {
		return TokenResponse{}, oauthErr("invalid_client", "unknown client", nil)
	}
	keys := client.JWKS.Key(h.KeyID)
	if h.KeyID == "" || len(keys) != 1 {
		return TokenResponse{}, oauthErr("invalid_client", "assertion kid must match exactly one registered key", nil)
	}
	if err := checkKeyStrength(keys[0]); err != nil { // registered before keys were checked
		return TokenResponse{}, oauthErr("invalid_client", "the registered key is too weak", err)
	}
	payload, err := jws.Verify(keys[0].Key)
	if err != nil {
		return TokenResponse{}, oauthErr("invalid_client", "assertion signature does not verify", err)
	}
	var c assertionClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return TokenResponse{}, oauthErr("invalid_client", "assertion claims are not JSON", err)
	}
	now := t.now()
	switch {
	case c.Issuer != client.ID || c.Subject != client.ID:
		return TokenResponse{}, oauthErr("invalid_client", "iss and sub must both be the client_id", nil)
	case len(c.Audience) != 1 || c.Audience[0] != t.tokenURL:
		return TokenResponse{}, oauthErr("invalid_client", "aud must be the token endpoint URL", nil)
	case c.Expiry == nil:
		return TokenResponse{}, oauthErr("invalid_client", "exp is required", nil)
	case c.Expiry.Time().Before(now.Add(-clockSkew)):
		return TokenResponse{}, oauthErr("invalid_client", "assertion expired", nil)
	case c.Expiry.Time().After(now.Add(MaxAssertionLifetime)):
		return TokenResponse{}, oauthErr("invalid_client", "assertion exp may be at most 5 minutes ahead", nil)
	case c.NotBefore != nil && c.NotBefore.Time().After(now.Add(clockSkew)):
		return TokenResponse{}, oauthErr("invalid_client", "assertion not yet valid", nil)
	case c.ID == "" || len(c.ID) > 256:
		return TokenResponse{}, oauthErr("invalid_client", "jti is required", nil)
	}
	purpose, err := assertedPurpose(c, client)
	if err != nil {
		return TokenResponse{}, err
	}
	scopes, err := Grant(form.Get("scope"), client.Scopes)
	if err != nil {
		return TokenResponse{}, oauthErr("invalid_scope", "no requested scope is registered for this client", err)
	}
	for _, sc := range scopes {
		if sc.Context != "system" { // backend services act for no user or patient
			return TokenResponse{}, oauthErr("invalid_scope", "backend services are granted system/ scopes only", nil)
		}
	}
	if err := t.store.UseJTI(ctx, client.ID, c.ID, c.Expiry.Time().Add(clockSkew)); err != nil {
		if errs.CodeOf(err) == errs.Conflict {
			return TokenResponse{}, oauthErr("invalid_client", "assertion jti was already used", err)
		}
		return TokenResponse{}, err
	}
	var names []string
	for _, s := range scopes {
		names = append(names, s.String())
	}
	if !validGeneration(client.TokenGeneration) { // Verify would refuse the token
		return TokenResponse{}, errs.E("directory.Tokens.Exchange", errs.Internal, "client "+client.ID+" has no valid token generation")
	}
	jtiB := make([]byte, 16)
	_, _ = rand.Read(jtiB)
	ac := accessClaims{
		Claims: jwt.Claims{Issuer: t.issuer, Subject: client.ID, Audience: jwt.Audience{t.issuer}, ID: hex.EncodeToString(jtiB),
			IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(t.ttl))},
		Org: client.MemberID, Scope: strings.Join(names, " "), Purpose: purpose, Gen: client.TokenGeneration,
	}
	tok, err := jwt.Signed(t.signer).Claims(ac).Serialize()
	if err != nil {
		return TokenResponse{}, errs.E("directory.Tokens.Exchange", errs.Internal, err)
	}
	return TokenResponse{AccessToken: tok, TokenType: "Bearer", ExpiresIn: int(t.ttl / time.Second), Scope: ac.Scope}, nil
}

// forbiddenKeyHeader reports whether the JWS protected header names a key by reference or
// carries one (jku, x5u, x5c, jwk): Concord trusts only the JWKS registered for the client.
func forbiddenKeyHeader(compact string) bool {
	head, _, _ := strings.Cut(compact, ".")
	b, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		return true
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return true
	}
	for k := range m {
		switch strings.ToLower(k) {
		case "jku", "x5u", "x5c", "jwk":
			return true
		}
	}
	return false
}

func assertedPurpose(c assertionClaims, client Client) (string, error) {
	var asked []string
	if c.Extensions.B2B != nil && len(c.Extensions.B2B.PurposeOfUse) > 0 {
		var one string
		if err := json.Unmarshal(c.Extensions.B2B.PurposeOfUse, &asked); err != nil {
			if err := json.Unmarshal(c.Extensions.B2B.PurposeOfUse, &one); err != nil {
				return "", oauthErr("invalid_request", "purpose_of_use must be a string or an array of strings", err)
			}
			asked = []string{one}
		}
	}
	if len(asked) == 0 {
		if len(client.Purposes) == 1 {
			return client.Purposes[0], nil
		}
		return "", oauthErr("invalid_request", "purpose_of_use is required for this client", nil)
	}
	if len(asked) != 1 {
		return "", oauthErr("invalid_request", "exactly one purpose_of_use per token", nil)
	}
	p := NormalizePurpose(asked[0])
	for _, allowed := range client.Purposes {
		if p != "" && p == allowed {
			return p, nil
		}
	}
	return "", oauthErr("invalid_scope", "purpose_of_use is not registered for this client", nil)
}

// Verify checks a bearer access token and returns its principal. It returns
// errs.Unauthenticated for any token that is malformed, forged, expired or not ours, and for
// one whose client is no longer registered as it was when the token was issued: removed,
// disabled, moved to another member, or changed in any way since (its token generation
// moved), or no longer registered for the token's scopes or purpose. That is read from the
// client's row on every call, so a change is in force for the next request. It returns
// errs.Unavailable (or errs.Internal) when the directory cannot be read: never a principal.
// A token's signature and claims, checked once, are remembered until its exp; callers must
// not modify the returned Principal's Scopes.
func (t *Tokens) Verify(ctx context.Context, bearer string) (Principal, error) {
	const op = "directory.Tokens.Verify"
	deny := func(err error) (Principal, error) {
		return Principal{}, errs.E(op, errs.Unauthenticated, "invalid or expired access token", err)
	}
	now := t.now()
	t.verifiedMu.RLock()
	v, ok := t.verified[bearer]
	t.verifiedMu.RUnlock()
	parsed := false
	if !ok || !now.Before(v.exp) {
		var err error
		if v, err = t.parse(bearer, now); err != nil {
			return deny(err)
		}
		parsed = true
	}
	c, err := t.store.tokenClient(ctx, v.p.ClientID)
	if err != nil {
		if errs.CodeOf(err) == errs.NotFound {
			t.forget(bearer)
			return deny(errors.New("client removed or disabled"))
		}
		return Principal{}, errs.E(op, err)
	}
	if why := c.refuses(v); why != "" {
		t.forget(bearer)
		return deny(errors.New(why))
	}
	if parsed {
		t.verifiedMu.Lock()
		if t.verified == nil || len(t.verified) >= maxVerified {
			t.verified = make(map[string]verifiedToken)
		}
		t.verified[bearer] = v
		t.verifiedMu.Unlock()
	}
	return v.p, nil
}

// parse checks bearer's signature and claims at now.
func (t *Tokens) parse(bearer string, now time.Time) (verifiedToken, error) {
	tok, err := jwt.ParseSigned(bearer, []jose.SignatureAlgorithm{jose.HS256})
	if err != nil {
		return verifiedToken{}, err
	}
	var c accessClaims
	if err := tok.Claims(t.key, &c); err != nil {
		return verifiedToken{}, err
	}
	if err := c.ValidateWithLeeway(jwt.Expected{Issuer: t.issuer, AnyAudience: jwt.Audience{t.issuer}, Time: now}, 0); err != nil {
		return verifiedToken{}, err
	}
	if c.Subject == "" || c.Org == "" || c.Purpose == "" || c.Expiry == nil {
		return verifiedToken{}, errors.New("incomplete claims")
	}
	if !validGeneration(c.Gen) {
		return verifiedToken{}, errors.New("gen is not a token generation")
	}
	var scopes Scopes
	for _, f := range strings.Fields(c.Scope) {
		s, err := ParseScope(f)
		if err != nil {
			return verifiedToken{}, err
		}
		scopes = append(scopes, s)
	}
	p := Principal{ClientID: c.Subject, MemberID: c.Org, Scopes: scopes, Purpose: c.Purpose, TokenID: c.ID}
	return verifiedToken{p: p, exp: c.Expiry.Time(), gen: c.Gen, scope: c.Scope}, nil
}

// validGeneration reports whether s is a token generation as the database writes it: a
// UUID in canonical lower-case text form (8-4-4-4-12 hex digits).
func validGeneration(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f':
		default:
			return false
		}
	}
	return true
}

// forget drops bearer from the verified tokens.
func (t *Tokens) forget(bearer string) {
	t.verifiedMu.Lock()
	delete(t.verified, bearer)
	t.verifiedMu.Unlock()
}

// tokenClient is what Verify checks a token against: the current registration of an
// enabled client.
type tokenClient struct {
	memberID   string
	generation string
	scopes     []string
	purposes   []string
}

// tokenClient returns client id's current registration, or errs.NotFound when it is not
// registered or is disabled. It is one primary-key read, made for every FHIR request.
func (s *Store) tokenClient(ctx context.Context, id string) (tokenClient, error) {
	var c tokenClient
	err := s.db.QueryRow(ctx, `SELECT member_id, token_generation::text, scopes, purposes FROM directory_clients WHERE client_id = $1 AND disabled_at IS NULL`, id).
		Scan(&c.memberID, &c.generation, &c.scopes, &c.purposes)
	return c, db.Map("directory.Store.tokenClient", err)
}

// refuses returns why the client's registration no longer backs token v, or "" if it does:
// the same member, the same generation, and every scope and the purpose still registered.
func (c tokenClient) refuses(v verifiedToken) string {
	switch {
	case c.memberID != v.p.MemberID:
		return "client belongs to another member"
	case c.generation != v.gen:
		return "client registration changed since issue"
	case !slices.Contains(c.purposes, v.p.Purpose):
		return "purpose no longer registered"
	}
	// Grant narrows what is asked to what is registered: the token is covered only if
	// nothing was narrowed away.
	if g, err := Grant(v.scope, c.scopes); err != nil || !slices.Equal(g, v.p.Scopes) {
		return "scopes no longer registered"
	}
	return ""
}
