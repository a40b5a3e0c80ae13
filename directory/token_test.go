package directory

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/internal/testkit"
)

const (
	testIssuer   = "https://concord.test/fhir"
	testTokenURL = "https://concord.test/token"
	treatOID     = "urn:oid:2.16.840.1.113883.5.8#TREAT"
)

// fakeClock is the token service's clock. It starts at the real time (whole seconds) so
// that the jti table's cleanup, which runs on the database clock, agrees with it.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Now().UTC().Truncate(time.Second)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// tokenFixture is a directory with three clients and a token service on a fake clock.
type tokenFixture struct {
	store  *Store
	tokens *Tokens
	clock  *fakeClock
	key    []byte
	a, b   Member
	// single (member A): keys ec-1 (keys.ec, P-384) and rsa-1 (keys.rsa); scopes
	// system/*.rs and system/Observation.c; the one purpose TREAT.
	single Client
	// multi (member A): key m-1 (keys.ec2); scopes system/*.rs; purposes TREAT and HPAYMT.
	multi Client
	// narrow (member B): key n-1 (keys.rsa2); scope system/Observation.rs; purpose TREAT.
	narrow Client
}

func newTokenFixture(t testing.TB) *tokenFixture {
	t.Helper()
	ctx := context.Background()
	f := &tokenFixture{store: NewStore(testkit.DB(t)), clock: newFakeClock(), key: make([]byte, 64)}
	if _, err := rand.Read(f.key); err != nil {
		t.Fatal(err)
	}
	var err error
	// A TTL above the cap: the service must still issue 300 s tokens.
	f.tokens, err = NewTokens(f.store, f.key, testIssuer, testTokenURL, time.Hour, f.clock.Now)
	if err != nil {
		t.Fatalf("NewTokens: %v", err)
	}
	if f.a, err = f.store.AddMember(ctx, "Member A", "urn:oid:2.16.840.1.113883.3.1"); err != nil {
		t.Fatal(err)
	}
	if f.b, err = f.store.AddMember(ctx, "Member B", "urn:oid:2.16.840.1.113883.3.2"); err != nil {
		t.Fatal(err)
	}
	f.single, err = f.store.AddClient(ctx, f.a.ID, jwksJSON(t, pubJWK(&keys.ec.PublicKey, "ec-1"), pubJWK(&keys.rsa.PublicKey, "rsa-1")),
		[]string{"system/*.rs", "system/Observation.c"}, []string{"TREAT"})
	if err != nil {
		t.Fatal(err)
	}
	f.multi, err = f.store.AddClient(ctx, f.a.ID, jwksJSON(t, pubJWK(&keys.ec2.PublicKey, "m-1")), []string{"system/*.rs"}, []string{"TREAT", "HPAYMT"})
	if err != nil {
		t.Fatal(err)
	}
	f.narrow, err = f.store.AddClient(ctx, f.b.ID, jwksJSON(t, pubJWK(&keys.rsa2.PublicKey, "n-1")), []string{"system/Observation.rs"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// assertion describes a client assertion before signing.
type assertion struct {
	alg      jose.SignatureAlgorithm
	key      any // private key, or []byte for HMAC
	kid      string
	headers  map[jose.HeaderKey]any
	embedJWK bool
	claims   assertionBody
}

type assertionBody struct {
	jwt.Claims
	Extensions *assertionExt `json:"extensions,omitempty"`
}

type assertionExt struct {
	B2B assertionB2B `json:"hl7-b2b"`
}

type assertionB2B struct {
	PurposeOfUse json.RawMessage `json:"purpose_of_use,omitempty"`
}

// valid returns a valid ES384 assertion for c, signed with key under kid.
func (f *tokenFixture) valid(c Client, alg jose.SignatureAlgorithm, key any, kid string) assertion {
	now := f.clock.Now()
	return assertion{alg: alg, key: key, kid: kid, claims: assertionBody{Claims: jwt.Claims{
		Issuer: c.ID, Subject: c.ID, Audience: jwt.Audience{testTokenURL}, ID: rand.Text(),
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(4 * time.Minute)),
	}}}
}

// es is a valid ES384 assertion for f.single.
func (f *tokenFixture) es() assertion { return f.valid(f.single, jose.ES384, keys.ec, "ec-1") }

// rs is a valid RS384 assertion for f.single.
func (f *tokenFixture) rs() assertion { return f.valid(f.single, jose.RS384, keys.rsa, "rsa-1") }

func (a assertion) withPurpose(raw string) assertion {
	a.claims.Extensions = &assertionExt{B2B: assertionB2B{PurposeOfUse: json.RawMessage(raw)}}
	return a
}

func (a assertion) sign(tb testing.TB) string {
	tb.Helper()
	opts := (&jose.SignerOptions{EmbedJWK: a.embedJWK}).WithType("JWT")
	if a.kid != "" {
		opts.WithHeader("kid", a.kid)
	}
	for k, v := range a.headers {
		opts.WithHeader(k, v)
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: a.alg, Key: a.key}, opts)
	if err != nil {
		tb.Fatalf("signer %s: %v", a.alg, err)
	}
	s, err := jwt.Signed(sig).Claims(a.claims).Serialize()
	if err != nil {
		tb.Fatalf("sign: %v", err)
	}
	return s
}

// unsigned builds an alg:none JWS with the given header fields and claims.
func unsigned(tb testing.TB, header map[string]string, claims any) string {
	tb.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		tb.Fatal(err)
	}
	p, err := json.Marshal(claims)
	if err != nil {
		tb.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(p) + "."
}

func tokenForm(assertion, scope string) url.Values {
	return url.Values{
		"grant_type":            {"client_credentials"},
		"client_assertion_type": {AssertionType},
		"client_assertion":      {assertion},
		"scope":                 {scope},
	}
}

// wantOAuth fails unless err is an *OAuthError with code and a description containing why
// (the fixed text names the rule that fired, so a case cannot pass for the wrong reason).
func wantOAuth(tb testing.TB, err error, code, why string) {
	tb.Helper()
	var oe *OAuthError
	if !errors.As(err, &oe) {
		tb.Fatalf("error = %v, want *OAuthError %s (%s)", err, code, why)
	}
	if oe.Code != code || !strings.Contains(oe.Description, why) {
		tb.Fatalf("error = %s %q, want %s %q", oe.Code, oe.Description, code, why)
	}
}

func (f *tokenFixture) exchange(tb testing.TB, form url.Values) (TokenResponse, error) {
	tb.Helper()
	return f.tokens.Exchange(context.Background(), form)
}

func TestExchangeIssuesShortLivedTokens(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t)
	tests := []struct {
		name      string
		assertion assertion
		scope     string
		wantScope string
	}{
		{"ES384", f.es(), "system/*.rs", "system/*.rs"},
		{"RS384", f.rs(), "system/*.rs", "system/*.rs"},
		{"v1 scope", f.es(), "system/*.read", "system/*.rs"},
		{"several scopes", f.rs(), "system/Observation.crs system/Patient.rs", "system/Observation.crs system/Patient.rs"},
		{"narrowed to registered", f.es(), "system/Patient.cruds", "system/Patient.rs"},
		{"RS384 client of member B", f.valid(f.narrow, jose.RS384, keys.rsa2, "n-1"), "system/*.rs system/Observation.rs", "system/Observation.rs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := f.exchange(t, tokenForm(tt.assertion.sign(t), tt.scope))
			if err != nil {
				t.Fatalf("Exchange: %v", err)
			}
			if tr.TokenType != "Bearer" || tr.Scope != tt.wantScope {
				t.Errorf("token_type %q scope %q, want Bearer %q", tr.TokenType, tr.Scope, tt.wantScope)
			}
			if tr.ExpiresIn <= 0 || tr.ExpiresIn > 300 {
				t.Errorf("expires_in = %d, want 1..300", tr.ExpiresIn)
			}
			if tr.ExpiresIn != 300 {
				t.Errorf("expires_in = %d, want the 300 s cap (NewTokens was given 1 h)", tr.ExpiresIn)
			}

			// The JSON body has exactly the four fields: no refresh_token, ever.
			body, err := json.Marshal(tr)
			if err != nil {
				t.Fatal(err)
			}
			var fields map[string]json.RawMessage
			if err := json.Unmarshal(body, &fields); err != nil {
				t.Fatal(err)
			}
			if _, ok := fields["refresh_token"]; ok {
				t.Errorf("token response has refresh_token: %s", body)
			}
			var names []string
			for k := range fields {
				names = append(names, k)
			}
			slices.Sort(names)
			if want := []string{"access_token", "expires_in", "scope", "token_type"}; !slices.Equal(names, want) {
				t.Errorf("token response fields = %q, want %q", names, want)
			}

			// The access token itself: HS256, typ at+jwt, our issuer and audience, 300 s life.
			tok, err := jwt.ParseSigned(tr.AccessToken, []jose.SignatureAlgorithm{jose.HS256})
			if err != nil {
				t.Fatalf("access token: %v", err)
			}
			if h := tok.Headers[0]; h.Algorithm != "HS256" || h.ExtraHeaders["typ"] != "at+jwt" {
				t.Errorf("access token header alg %q typ %v", h.Algorithm, h.ExtraHeaders["typ"])
			}
			var c accessClaims
			if err := tok.Claims(f.key, &c); err != nil {
				t.Fatalf("access token claims: %v", err)
			}
			if c.Issuer != testIssuer || !slices.Equal(c.Audience, jwt.Audience{testIssuer}) {
				t.Errorf("iss %q aud %q", c.Issuer, c.Audience)
			}
			if life := c.Expiry.Time().Sub(c.IssuedAt.Time()); life != 300*time.Second || !c.IssuedAt.Time().Equal(f.clock.Now()) {
				t.Errorf("iat %v exp %v: life %v, want 300 s from the fake clock %v", c.IssuedAt.Time(), c.Expiry.Time(), life, f.clock.Now())
			}

			p, err := f.tokens.Verify(context.Background(), tr.AccessToken)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			client := tt.assertion.claims.Issuer
			wantMember := f.a.ID
			if client == f.narrow.ID {
				wantMember = f.b.ID
			}
			if p.ClientID != client || p.MemberID != wantMember || p.Purpose != "TREAT" {
				t.Errorf("Principal = %+v, want client %s member %s purpose TREAT", p, client, wantMember)
			}
			var granted []string
			for _, s := range p.Scopes {
				granted = append(granted, s.String())
			}
			if strings.Join(granted, " ") != tt.wantScope {
				t.Errorf("Principal scopes %q, want %q", granted, tt.wantScope)
			}
			if b, err := hex.DecodeString(p.TokenID); err != nil || len(b) != 16 || p.TokenID != c.ID {
				t.Errorf("TokenID %q, want the token's 128-bit hex jti %q", p.TokenID, c.ID)
			}
		})
	}
}

func TestExchangePurposeOfUse(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t)
	single := func() assertion { return f.es() }
	multi := func() assertion { return f.valid(f.multi, jose.ES384, keys.ec2, "m-1") }
	tests := []struct {
		name      string
		assertion assertion
		want      string // the token's purpose; "" when refused
		code, why string
	}{
		{"single registered, omitted", single(), "TREAT", "", ""},
		{"single registered, empty hl7-b2b", single().withPurpose(""), "TREAT", "", ""},
		{"single registered, null", single().withPurpose(`null`), "TREAT", "", ""},
		{"single registered, empty array", single().withPurpose(`[]`), "TREAT", "", ""},
		{"plain code", single().withPurpose(`"TREAT"`), "TREAT", "", ""},
		{"plain code in an array", single().withPurpose(`["TREAT"]`), "TREAT", "", ""},
		{"OID form", single().withPurpose(`"` + treatOID + `"`), "TREAT", "", ""},
		{"OID form in an array", single().withPurpose(`["` + treatOID + `"]`), "TREAT", "", ""},
		{"known but not registered", single().withPurpose(`"HPAYMT"`), "", "invalid_scope", "not registered"},
		{"known but not registered, OID form", single().withPurpose(`"urn:oid:2.16.840.1.113883.5.8#PUBHLTH"`), "", "invalid_scope", "not registered"},
		{"break-the-glass not registered", single().withPurpose(`"BTG"`), "", "invalid_scope", "not registered"},
		{"unknown code", single().withPurpose(`"MARKETING"`), "", "invalid_scope", "not registered"},
		{"lower case", single().withPurpose(`"treat"`), "", "invalid_scope", "not registered"},
		{"other code system", single().withPurpose(`"urn:oid:2.16.840.1.113883.5.9#TREAT"`), "", "invalid_scope", "not registered"},
		{"two purposes", single().withPurpose(`["TREAT","TREAT"]`), "", "invalid_request", "exactly one"},
		{"not a string", single().withPurpose(`42`), "", "invalid_request", "string or an array"},
		{"object", single().withPurpose(`{"code":"TREAT"}`), "", "invalid_request", "string or an array"},

		{"multiple registered, omitted", multi(), "", "invalid_request", "required"},
		{"multiple registered, empty array", multi().withPurpose(`[]`), "", "invalid_request", "required"},
		{"multiple registered, first", multi().withPurpose(`"TREAT"`), "TREAT", "", ""},
		{"multiple registered, second", multi().withPurpose(`"HPAYMT"`), "HPAYMT", "", ""},
		{"multiple registered, OID form", multi().withPurpose(`["urn:oid:2.16.840.1.113883.5.8#HPAYMT"]`), "HPAYMT", "", ""},
		{"multiple registered, URL form", multi().withPurpose(`"http://terminology.hl7.org/CodeSystem/v3-ActReason#TREAT"`), "TREAT", "", ""},
		{"multiple registered, unregistered", multi().withPurpose(`"PUBHLTH"`), "", "invalid_scope", "not registered"},
		{"multiple registered, both at once", multi().withPurpose(`["TREAT","HPAYMT"]`), "", "invalid_request", "exactly one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := f.exchange(t, tokenForm(tt.assertion.sign(t), "system/*.rs"))
			if tt.want == "" {
				wantOAuth(t, err, tt.code, tt.why)
				return
			}
			if err != nil {
				t.Fatalf("Exchange: %v", err)
			}
			p, err := f.tokens.Verify(context.Background(), tr.AccessToken)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if p.Purpose != tt.want {
				t.Errorf("purpose = %q, want %q", p.Purpose, tt.want)
			}
		})
	}
}

// selfSignedX5C returns a one-certificate x5c chain for the registered EC key.
func selfSignedX5C(tb testing.TB) []string {
	tb.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "attacker"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &keys.ec.PublicKey, keys.ec)
	if err != nil {
		tb.Fatal(err)
	}
	return []string{base64.StdEncoding.EncodeToString(der)}
}

func TestExchangeRefuses(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t)
	ctx := context.Background()
	now := f.clock.Now()

	// A client registered (bypassing ParseJWKS) with two keys under one kid: Exchange must
	// not pick one.
	dup, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{pubJWK(&keys.ec.PublicKey, "dup"), pubJWK(&keys.ec2.PublicKey, "dup")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.db.Exec(ctx, `INSERT INTO directory_clients(client_id, member_id, jwks, scopes, purposes) VALUES ('dup-kid', $1, $2, '{system/*.rs}', '{TREAT}')`, f.a.ID, dup); err != nil {
		t.Fatal(err)
	}
	dupClient, err := f.store.Client(ctx, "dup-kid")
	if err != nil {
		t.Fatal(err)
	}
	// And the same registration must be refused through the API.
	if _, err := f.store.AddClient(ctx, f.a.ID, dup, nil, nil); errs.CodeOf(err) != errs.Invalid {
		t.Errorf("AddClient with two keys for one kid: %v, want invalid", err)
	}

	disabled, err := f.store.AddClient(ctx, f.a.ID, jwksJSON(t, pubJWK(&keys.ec.PublicKey, "d-1")), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.db.Exec(ctx, `UPDATE directory_clients SET disabled_at = now() WHERE client_id = $1`, disabled.ID); err != nil {
		t.Fatal(err)
	}

	rsaDER, err := x509.MarshalPKIXPublicKey(&keys.rsa.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rsaDER})
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	// mod returns a signed f.es() assertion after m changed it.
	mod := func(m func(a *assertion)) string {
		a := f.es()
		m(&a)
		return a.sign(t)
	}
	valid := func() string { return f.es().sign(t) }
	tamper := func(s string, part int) string { // flip one character in the middle of a part
		parts := strings.Split(s, ".")
		p := []byte(parts[part])
		i := len(p) / 2
		if p[i] == 'A' {
			p[i] = 'B'
		} else {
			p[i] = 'A'
		}
		parts[part] = string(p)
		return strings.Join(parts, ".")
	}
	jsonSerialization := func() string {
		a := f.es()
		sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES384, Key: keys.ec}, (&jose.SignerOptions{}).WithHeader("kid", "ec-1"))
		if err != nil {
			t.Fatal(err)
		}
		payload, _ := json.Marshal(a.claims)
		obj, err := sig.Sign(payload)
		if err != nil {
			t.Fatal(err)
		}
		return obj.FullSerialize()
	}
	withForm := func(k, v string) url.Values {
		form := tokenForm(valid(), "system/*.rs")
		if v == "" {
			form.Del(k)
		} else {
			form.Set(k, v)
		}
		return form
	}
	exp := func(d time.Duration) *jwt.NumericDate { return jwt.NewNumericDate(now.Add(d)) }

	tests := []struct {
		name      string
		form      url.Values
		code, why string
	}{
		// The form.
		{"wrong grant_type", withForm("grant_type", "authorization_code"), "unsupported_grant_type", "client_credentials"},
		{"password grant_type", withForm("grant_type", "password"), "unsupported_grant_type", "client_credentials"},
		{"missing grant_type", withForm("grant_type", ""), "unsupported_grant_type", "client_credentials"},
		{"wrong client_assertion_type", withForm("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:saml2-bearer"), "invalid_request", "jwt-bearer"},
		{"missing client_assertion_type", withForm("client_assertion_type", ""), "invalid_request", "jwt-bearer"},
		{"missing client_assertion", withForm("client_assertion", ""), "invalid_request", "missing"},
		{"oversized client_assertion", withForm("client_assertion", strings.Repeat("a", 16<<10+1)), "invalid_request", "missing"},
		{"not a JWS", withForm("client_assertion", "not.a.jws"), "invalid_client", "RS384 or ES384"},
		{"JSON serialization", tokenForm(jsonSerialization(), "system/*.rs"), "invalid_client", "jku, x5u"},

		// Algorithms.
		{"alg none", tokenForm(unsigned(t, map[string]string{"alg": "none", "kid": "ec-1", "typ": "JWT"}, f.es().claims), "system/*.rs"), "invalid_client", "RS384 or ES384"},
		{"alg None", tokenForm(unsigned(t, map[string]string{"alg": "None", "kid": "rsa-1"}, f.rs().claims), "system/*.rs"), "invalid_client", "RS384 or ES384"},
		{"HS256 keyed with the RSA public key (DER)", tokenForm(mod(func(a *assertion) { a.alg, a.key, a.kid = jose.HS256, rsaDER, "rsa-1" }), "system/*.rs"), "invalid_client", "RS384 or ES384"},
		{"HS256 keyed with the RSA public key (PEM)", tokenForm(mod(func(a *assertion) { a.alg, a.key, a.kid = jose.HS256, rsaPEM, "rsa-1" }), "system/*.rs"), "invalid_client", "RS384 or ES384"},
		{"HS384 keyed with the RSA public key", tokenForm(mod(func(a *assertion) { a.alg, a.key, a.kid = jose.HS384, rsaDER, "rsa-1" }), "system/*.rs"), "invalid_client", "RS384 or ES384"},
		{"RS256", tokenForm(mod(func(a *assertion) { a.alg, a.key, a.kid = jose.RS256, keys.rsa, "rsa-1" }), "system/*.rs"), "invalid_client", "RS384 or ES384"},
		{"RS512", tokenForm(mod(func(a *assertion) { a.alg, a.key, a.kid = jose.RS512, keys.rsa, "rsa-1" }), "system/*.rs"), "invalid_client", "RS384 or ES384"},
		{"PS384", tokenForm(mod(func(a *assertion) { a.alg, a.key, a.kid = jose.PS384, keys.rsa, "rsa-1" }), "system/*.rs"), "invalid_client", "RS384 or ES384"},
		{"ES256", tokenForm(mod(func(a *assertion) { a.alg, a.key = jose.ES256, p256 }), "system/*.rs"), "invalid_client", "RS384 or ES384"},

		// Keys.
		{"unknown kid", tokenForm(mod(func(a *assertion) { a.kid = "ec-2" }), "system/*.rs"), "invalid_client", "exactly one registered key"},
		{"missing kid", tokenForm(mod(func(a *assertion) { a.kid = "" }), "system/*.rs"), "invalid_client", "exactly one registered key"},
		{"kid of another client", tokenForm(mod(func(a *assertion) { a.kid = "m-1" }), "system/*.rs"), "invalid_client", "exactly one registered key"},
		{"two registered keys share the kid", tokenForm(f.valid(dupClient, jose.ES384, keys.ec, "dup").sign(t), "system/*.rs"), "invalid_client", "exactly one registered key"},
		{"ES384 under the RSA kid", tokenForm(mod(func(a *assertion) { a.kid = "rsa-1" }), "system/*.rs"), "invalid_client", "does not verify"},
		{"RS384 under the EC kid", tokenForm(mod(func(a *assertion) { a.alg, a.key, a.kid = jose.RS384, keys.rsa, "ec-1" }), "system/*.rs"), "invalid_client", "does not verify"},
		{"unregistered EC key under a registered kid", tokenForm(mod(func(a *assertion) { a.key = keys.ec2 }), "system/*.rs"), "invalid_client", "does not verify"},
		{"unregistered RSA key under a registered kid", tokenForm(mod(func(a *assertion) { a.alg, a.key, a.kid = jose.RS384, keys.rsa2, "rsa-1" }), "system/*.rs"), "invalid_client", "does not verify"},
		{"jku header", tokenForm(mod(func(a *assertion) {
			a.headers = map[jose.HeaderKey]any{"jku": "https://attacker.example/jwks.json"}
		}), "system/*.rs"), "invalid_client", "jku, x5u"},
		{"JKU header, upper case", tokenForm(mod(func(a *assertion) { a.headers = map[jose.HeaderKey]any{"JKU": "https://attacker.example/jwks.json"} }), "system/*.rs"), "invalid_client", "jku, x5u"},
		{"x5u header", tokenForm(mod(func(a *assertion) { a.headers = map[jose.HeaderKey]any{"x5u": "https://attacker.example/cert.pem"} }), "system/*.rs"), "invalid_client", "jku, x5u"},
		{"x5c header", tokenForm(mod(func(a *assertion) { a.headers = map[jose.HeaderKey]any{"x5c": selfSignedX5C(t)} }), "system/*.rs"), "invalid_client", "jku, x5u"},
		{"embedded jwk", tokenForm(mod(func(a *assertion) { a.embedJWK = true }), "system/*.rs"), "invalid_client", "jku, x5u"},

		// Claims.
		{"unknown iss", tokenForm(mod(func(a *assertion) { a.claims.Issuer, a.claims.Subject = "no-such-client", "no-such-client" }), "system/*.rs"), "invalid_client", "unknown client"},
		{"missing iss", tokenForm(mod(func(a *assertion) { a.claims.Issuer = "" }), "system/*.rs"), "invalid_client", "unknown client"},
		{"iss of another client", tokenForm(mod(func(a *assertion) { a.claims.Issuer, a.claims.Subject = f.narrow.ID, f.narrow.ID }), "system/*.rs"), "invalid_client", "exactly one registered key"},
		{"sub differs from iss", tokenForm(mod(func(a *assertion) { a.claims.Subject = f.multi.ID }), "system/*.rs"), "invalid_client", "iss and sub"},
		{"missing sub", tokenForm(mod(func(a *assertion) { a.claims.Subject = "" }), "system/*.rs"), "invalid_client", "iss and sub"},
		{"aud is the FHIR base", tokenForm(mod(func(a *assertion) { a.claims.Audience = jwt.Audience{testIssuer} }), "system/*.rs"), "invalid_client", "aud"},
		{"aud with a trailing slash", tokenForm(mod(func(a *assertion) { a.claims.Audience = jwt.Audience{testTokenURL + "/"} }), "system/*.rs"), "invalid_client", "aud"},
		{"aud array of two", tokenForm(mod(func(a *assertion) { a.claims.Audience = jwt.Audience{testTokenURL, "https://other.example/token"} }), "system/*.rs"), "invalid_client", "aud"},
		{"aud array, token URL twice", tokenForm(mod(func(a *assertion) { a.claims.Audience = jwt.Audience{testTokenURL, testTokenURL} }), "system/*.rs"), "invalid_client", "aud"},
		{"missing aud", tokenForm(mod(func(a *assertion) { a.claims.Audience = nil }), "system/*.rs"), "invalid_client", "aud"},
		{"missing exp", tokenForm(mod(func(a *assertion) { a.claims.Expiry = nil }), "system/*.rs"), "invalid_client", "exp is required"},
		{"expired", tokenForm(mod(func(a *assertion) { a.claims.Expiry = exp(-2 * time.Minute) }), "system/*.rs"), "invalid_client", "expired"},
		{"expired 61 s ago, beyond the skew", tokenForm(mod(func(a *assertion) { a.claims.Expiry = exp(-61 * time.Second) }), "system/*.rs"), "invalid_client", "expired"},
		{"expired long ago", tokenForm(mod(func(a *assertion) { a.claims.Expiry = exp(-24 * time.Hour) }), "system/*.rs"), "invalid_client", "expired"},
		{"exp 5 minutes 6 seconds ahead", tokenForm(mod(func(a *assertion) { a.claims.Expiry = exp(5*time.Minute + 6*time.Second) }), "system/*.rs"), "invalid_client", "at most 5 minutes"},
		{"exp 6 minutes ahead", tokenForm(mod(func(a *assertion) { a.claims.Expiry = exp(6 * time.Minute) }), "system/*.rs"), "invalid_client", "at most 5 minutes"},
		{"exp an hour ahead", tokenForm(mod(func(a *assertion) { a.claims.Expiry = exp(time.Hour) }), "system/*.rs"), "invalid_client", "at most 5 minutes"},
		{"nbf in the future", tokenForm(mod(func(a *assertion) { a.claims.NotBefore = exp(2 * time.Minute) }), "system/*.rs"), "invalid_client", "not yet valid"},
		{"missing jti", tokenForm(mod(func(a *assertion) { a.claims.ID = "" }), "system/*.rs"), "invalid_client", "jti is required"},
		{"jti too long", tokenForm(mod(func(a *assertion) { a.claims.ID = strings.Repeat("j", 257) }), "system/*.rs"), "invalid_client", "jti is required"},

		// Client state and signature.
		{"disabled client", tokenForm(f.valid(disabled, jose.ES384, keys.ec, "d-1").sign(t), "system/*.rs"), "invalid_client", "unknown client"},
		{"tampered signature", tokenForm(tamper(valid(), 2), "system/*.rs"), "invalid_client", "does not verify"},
		{"tampered RS384 signature", tokenForm(tamper(f.rs().sign(t), 2), "system/*.rs"), "invalid_client", "does not verify"},
		{"tampered payload", tokenForm(tamper(valid(), 1), "system/*.rs"), "invalid_client", ""},
		{"payload swapped under a valid signature", func() url.Values {
			a, b := strings.Split(valid(), "."), strings.Split(mod(func(a *assertion) { a.claims.Subject = "x" }), ".")
			return tokenForm(a[0]+"."+b[1]+"."+a[2], "system/*.rs")
		}(), "invalid_client", "does not verify"},

		// Scopes.
		{"scope not registered", tokenForm(valid(), "system/Patient.c"), "invalid_scope", "no requested scope"},
		{"scope of another context", tokenForm(valid(), "patient/*.rs"), "invalid_scope", "no requested scope"},
		{"malformed scope", tokenForm(valid(), "system/*.sr"), "invalid_scope", "no requested scope"},
		{"granular scope", tokenForm(valid(), "system/Observation.rs?category=laboratory"), "invalid_scope", "no requested scope"},
		{"no scope", withForm("scope", ""), "invalid_scope", "no requested scope"},
		{"other member's client, unregistered type", tokenForm(f.valid(f.narrow, jose.RS384, keys.rsa2, "n-1").sign(t), "system/Patient.rs"), "invalid_scope", "no requested scope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := f.exchange(t, tt.form)
			if err == nil {
				t.Fatalf("Exchange succeeded (%+v), want %s", tr, tt.code)
			}
			wantOAuth(t, err, tt.code, tt.why)
		})
	}

	// Controls: the limits above refuse what is beyond them, not what is near them.
	controls := []struct {
		name string
		a    assertion
	}{
		{"exp exactly 5 minutes ahead", func() assertion { a := f.es(); a.claims.Expiry = exp(5 * time.Minute); return a }()},
		{"exp just passed, within 60 s skew", func() assertion { a := f.es(); a.claims.Expiry = exp(-30 * time.Second); return a }()},
		{"nbf within 60 s skew", func() assertion { a := f.es(); a.claims.NotBefore = exp(30 * time.Second); return a }()},
		{"nbf in the past", func() assertion { a := f.es(); a.claims.NotBefore = exp(-time.Minute); return a }()},
		{"no iat", func() assertion { a := f.es(); a.claims.IssuedAt = nil; return a }()},
		{"aud as a one-element array", func() assertion { a := f.es(); return a }()},
		{"jti of 256 characters", func() assertion { a := f.es(); a.claims.ID = strings.Repeat("k", 256); return a }()},
	}
	for _, tt := range controls {
		t.Run("control/"+tt.name, func(t *testing.T) {
			if _, err := f.exchange(t, tokenForm(tt.a.sign(t), "system/*.rs")); err != nil {
				t.Fatalf("Exchange: %v", err)
			}
		})
	}
	t.Run("control/aud as a JSON array of one", func(t *testing.T) {
		// go-jose writes a one-element Audience as a string; write the array form by hand.
		type arrayAud struct {
			Iss string   `json:"iss"`
			Sub string   `json:"sub"`
			Aud []string `json:"aud"`
			Exp int64    `json:"exp"`
			Jti string   `json:"jti"`
		}
		sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES384, Key: keys.ec}, (&jose.SignerOptions{}).WithHeader("kid", "ec-1"))
		if err != nil {
			t.Fatal(err)
		}
		s, err := jwt.Signed(sig).Claims(arrayAud{f.single.ID, f.single.ID, []string{testTokenURL}, now.Add(time.Minute).Unix(), rand.Text()}).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.exchange(t, tokenForm(s, "system/*.rs")); err != nil {
			t.Fatalf("Exchange: %v", err)
		}
	})
}

func TestExchangeRejectsReplayedJTI(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t)
	a := f.es()
	first := a.sign(t)
	if _, err := f.exchange(t, tokenForm(first, "system/*.rs")); err != nil {
		t.Fatalf("first use: %v", err)
	}
	t.Run("same assertion", func(t *testing.T) {
		_, err := f.exchange(t, tokenForm(first, "system/*.rs"))
		wantOAuth(t, err, "invalid_client", "already used")
	})
	t.Run("same assertion, later", func(t *testing.T) {
		f.clock.Advance(2 * time.Minute) // still within the assertion's life
		defer f.clock.Advance(-2 * time.Minute)
		_, err := f.exchange(t, tokenForm(first, "system/*.rs"))
		wantOAuth(t, err, "invalid_client", "already used")
	})
	t.Run("new assertion, same jti, other key", func(t *testing.T) {
		b := f.rs()
		b.claims.ID = a.claims.ID
		_, err := f.exchange(t, tokenForm(b.sign(t), "system/Observation.rs"))
		wantOAuth(t, err, "invalid_client", "already used")
	})
	t.Run("same jti, other client", func(t *testing.T) {
		b := f.valid(f.multi, jose.ES384, keys.ec2, "m-1").withPurpose(`"TREAT"`)
		b.claims.ID = a.claims.ID
		if _, err := f.exchange(t, tokenForm(b.sign(t), "system/*.rs")); err != nil {
			t.Fatalf("Exchange: %v", err)
		}
		// and that client's own replay is refused in turn
		_, err := f.exchange(t, tokenForm(b.sign(t), "system/*.rs"))
		wantOAuth(t, err, "invalid_client", "already used")
	})
	t.Run("concurrent replays", func(t *testing.T) {
		s := f.rs().sign(t)
		const n = 8
		errc := make(chan error, n)
		var wg sync.WaitGroup
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := f.tokens.Exchange(context.Background(), tokenForm(s, "system/*.rs"))
				errc <- err
			}()
		}
		wg.Wait()
		close(errc)
		ok := 0
		for err := range errc {
			if err == nil {
				ok++
				continue
			}
			wantOAuth(t, err, "invalid_client", "already used")
		}
		if ok != 1 {
			t.Fatalf("%d of %d concurrent uses of one assertion succeeded, want exactly 1", ok, n)
		}
	})
}

// forge signs access-token claims with any algorithm and key.
// anyGen is accessClaims with gen of any JSON type.
type anyGen struct {
	accessClaims
	Gen any `json:"gen"`
}

func forge(tb testing.TB, alg jose.SignatureAlgorithm, key any, c any) string {
	tb.Helper()
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		tb.Fatalf("signer %s: %v", alg, err)
	}
	s, err := jwt.Signed(sig).Claims(c).Serialize()
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func TestVerify(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t)
	tr, err := f.exchange(t, tokenForm(f.es().sign(t), "system/Observation.rs system/Patient.r"))
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	issued := f.clock.Now()

	p, err := f.tokens.Verify(context.Background(), tr.AccessToken)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	want := Principal{ClientID: f.single.ID, MemberID: f.a.ID, Purpose: "TREAT", TokenID: p.TokenID,
		Scopes: Scopes{{"system", "Observation", "rs"}, {"system", "Patient", "r"}}}
	if p.ClientID != want.ClientID || p.MemberID != want.MemberID || p.Purpose != want.Purpose || !slices.Equal(p.Scopes, want.Scopes) || len(p.TokenID) != 32 {
		t.Fatalf("Principal = %+v, want %+v", p, want)
	}
	if !p.Scopes.Allows("Observation", 's') || p.Scopes.Allows("Observation", 'c') || p.Scopes.Allows("Patient", 's') {
		t.Errorf("Principal scopes allow the wrong things: %v", p.Scopes)
	}
	tr2, err := f.exchange(t, tokenForm(f.rs().sign(t), "system/*.rs"))
	if err != nil {
		t.Fatal(err)
	}
	if p2, err := f.tokens.Verify(context.Background(), tr2.AccessToken); err != nil || p2.TokenID == p.TokenID {
		t.Errorf("second token: %+v, %v; want a fresh TokenID", p2, err)
	}

	good := accessClaims{
		Claims: jwt.Claims{Issuer: testIssuer, Subject: f.single.ID, Audience: jwt.Audience{testIssuer}, ID: "forged",
			IssuedAt: jwt.NewNumericDate(issued), Expiry: jwt.NewNumericDate(issued.Add(5 * time.Minute))},
		Org: f.a.ID, Scope: "system/*.rs", Purpose: "TREAT", Gen: f.single.TokenGeneration,
	}
	// Sanity: our forge helper with our key and algorithm makes a token Verify accepts, so the
	// refusals below are about the one thing each case changes.
	if _, err := f.tokens.Verify(context.Background(), forge(t, jose.HS256, f.key, good)); err != nil {
		t.Fatalf("control token: %v", err)
	}
	if _, err := f.tokens.Verify(context.Background(), forge(t, jose.HS256, f.key, anyGen{good, f.single.TokenGeneration})); err != nil {
		t.Fatalf("control token through anyGen: %v", err)
	}
	with := func(m func(c *accessClaims)) accessClaims {
		c := good
		m(&c)
		return c
	}
	otherKey := make([]byte, 32)
	if _, err := rand.Read(otherKey); err != nil {
		t.Fatal(err)
	}
	otherKeyTokens, err := NewTokens(f.store, otherKey, testIssuer, testTokenURL, 0, f.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	otherIssuer, err := NewTokens(f.store, f.key, "https://other-hie.test/fhir", "https://other-hie.test/token", 0, f.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	fromOtherKey, err := otherKeyTokens.Exchange(context.Background(), tokenForm(f.es().sign(t), "system/*.rs"))
	if err != nil {
		t.Fatal(err)
	}
	a := f.es()
	a.claims.Audience = jwt.Audience{"https://other-hie.test/token"}
	fromOtherIssuer, err := otherIssuer.Exchange(context.Background(), tokenForm(a.sign(t), "system/*.rs"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := otherIssuer.Verify(context.Background(), fromOtherIssuer.AccessToken); err != nil {
		t.Fatalf("the other issuer's token should verify there: %v", err)
	}

	tests := []struct {
		name  string
		token string
	}{
		{"empty", ""},
		{"garbage", "not-a-token"},
		{"three dots", ".."},
		{"client assertion as bearer", f.es().sign(t)},
		{"signed with another key", fromOtherKey.AccessToken},
		{"HS256 with a key one byte off", forge(t, jose.HS256, append(append([]byte{}, f.key[:len(f.key)-1]...), f.key[len(f.key)-1]^1), good)},
		{"alg none", unsigned(t, map[string]string{"alg": "none", "typ": "at+jwt"}, good)},
		{"RS256", forge(t, jose.RS256, keys.rsa, good)},
		{"ES384 with a client key", forge(t, jose.ES384, keys.ec, good)},
		{"HS512 with our key", forge(t, jose.HS512, f.key, good)},
		{"HS256 keyed with the RSA public key", func() string {
			der, _ := x509.MarshalPKIXPublicKey(&keys.rsa.PublicKey)
			return forge(t, jose.HS256, der, good)
		}()},
		{"from a different issuer", fromOtherIssuer.AccessToken},
		{"our key, other iss", forge(t, jose.HS256, f.key, with(func(c *accessClaims) { c.Issuer = "https://other-hie.test/fhir" }))},
		{"our key, other aud", forge(t, jose.HS256, f.key, with(func(c *accessClaims) { c.Audience = jwt.Audience{testTokenURL} }))},
		{"our key, expired", forge(t, jose.HS256, f.key, with(func(c *accessClaims) { c.Expiry = jwt.NewNumericDate(issued.Add(-time.Second)) }))},
		{"our key, no sub", forge(t, jose.HS256, f.key, with(func(c *accessClaims) { c.Subject = "" }))},
		{"our key, no org", forge(t, jose.HS256, f.key, with(func(c *accessClaims) { c.Org = "" }))},
		{"our key, no purpose", forge(t, jose.HS256, f.key, with(func(c *accessClaims) { c.Purpose = "" }))},
		{"our key, malformed scope", forge(t, jose.HS256, f.key, with(func(c *accessClaims) { c.Scope = "system/*.sr" }))},
		{"our key, no generation", forge(t, jose.HS256, f.key, with(func(c *accessClaims) { c.Gen = "" }))},
		{"our key, another generation", forge(t, jose.HS256, f.key, with(func(c *accessClaims) { c.Gen = f.multi.TokenGeneration }))},
		{"our key, the generation in upper case", forge(t, jose.HS256, f.key, with(func(c *accessClaims) { c.Gen = strings.ToUpper(f.single.TokenGeneration) }))},
		{"our key, the generation in braces", forge(t, jose.HS256, f.key, with(func(c *accessClaims) { c.Gen = "{" + f.single.TokenGeneration + "}" }))},
		{"our key, the generation without hyphens", forge(t, jose.HS256, f.key, with(func(c *accessClaims) { c.Gen = strings.ReplaceAll(f.single.TokenGeneration, "-", "") }))},
		// Tokens issued before migration 0103 carry an integer generation.
		{"our key, a number generation", forge(t, jose.HS256, f.key, anyGen{good, 1})},
		{"our key, a null generation", forge(t, jose.HS256, f.key, anyGen{good, nil})},
		{"our key, a generation object", forge(t, jose.HS256, f.key, anyGen{good, map[string]string{"gen": f.single.TokenGeneration}})},
		{"our key, a generation array", forge(t, jose.HS256, f.key, anyGen{good, []string{f.single.TokenGeneration}})},
		{"our key, unregistered client", forge(t, jose.HS256, f.key, with(func(c *accessClaims) { c.Subject = "no-such-client" }))},
		{"our key, client of another member", forge(t, jose.HS256, f.key, with(func(c *accessClaims) { c.Org = f.b.ID }))},
		{"our key, scope beyond the registration", forge(t, jose.HS256, f.key, with(func(c *accessClaims) { c.Scope = "system/*.cruds" }))},
		{"our key, purpose not registered", forge(t, jose.HS256, f.key, with(func(c *accessClaims) { c.Purpose = "HPAYMT" }))},
		{"tampered payload", func() string {
			parts := strings.Split(tr.AccessToken, ".")
			forged := strings.Split(forge(t, jose.HS256, otherKey, with(func(c *accessClaims) { c.Scope = "system/*.cruds" })), ".")
			return parts[0] + "." + forged[1] + "." + parts[2]
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := f.tokens.Verify(context.Background(), tt.token)
			if err == nil {
				t.Fatalf("Verify = %+v, want unauthenticated", p)
			}
			if c := errs.CodeOf(err); c != errs.Unauthenticated {
				t.Fatalf("Verify code = %v, want unauthenticated (%v)", c, err)
			}
			if p.ClientID != "" || p.MemberID != "" || p.Scopes != nil {
				t.Errorf("Verify returned a principal with its error: %+v", p)
			}
		})
	}

	t.Run("expiry on the fake clock", func(t *testing.T) {
		f.clock.Advance(300 * time.Second)
		if _, err := f.tokens.Verify(context.Background(), tr.AccessToken); err != nil {
			t.Fatalf("at exp (300 s): %v", err)
		}
		f.clock.Advance(time.Second)
		_, err := f.tokens.Verify(context.Background(), tr.AccessToken)
		if c := errs.CodeOf(err); err == nil || c != errs.Unauthenticated {
			t.Fatalf("at 301 s: %v, want unauthenticated", err)
		}
	})
}

func TestNewTokens(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t)
	if _, err := NewTokens(f.store, make([]byte, 31), testIssuer, testTokenURL, 0, nil); errs.CodeOf(err) != errs.Invalid {
		t.Errorf("31-byte key: %v, want invalid", err)
	}
	if _, err := NewTokens(f.store, nil, testIssuer, testTokenURL, 0, nil); errs.CodeOf(err) != errs.Invalid {
		t.Errorf("no key: %v, want invalid", err)
	}
	tests := []struct {
		ttl  time.Duration
		want int
	}{
		{0, 300},
		{-time.Second, 300},
		{time.Minute, 60},
		{300 * time.Second, 300},
		{301 * time.Second, 300},
		{24 * time.Hour, 300},
	}
	for _, tt := range tests {
		t.Run(tt.ttl.String(), func(t *testing.T) {
			clock := newFakeClock()
			tok, err := NewTokens(f.store, f.key, testIssuer, testTokenURL, tt.ttl, clock.Now)
			if err != nil {
				t.Fatal(err)
			}
			a := f.es()
			a.claims.Expiry = jwt.NewNumericDate(clock.Now().Add(time.Minute))
			tr, err := tok.Exchange(context.Background(), tokenForm(a.sign(t), "system/*.rs"))
			if err != nil {
				t.Fatalf("Exchange: %v", err)
			}
			if tr.ExpiresIn != tt.want {
				t.Errorf("expires_in = %d, want %d", tr.ExpiresIn, tt.want)
			}
			clock.Advance(time.Duration(tt.want) * time.Second)
			if _, err := tok.Verify(context.Background(), tr.AccessToken); err != nil {
				t.Errorf("at %d s: %v", tt.want, err)
			}
			clock.Advance(time.Second)
			if _, err := tok.Verify(context.Background(), tr.AccessToken); errs.CodeOf(err) != errs.Unauthenticated {
				t.Errorf("at %d s: %v, want unauthenticated", tt.want+1, err)
			}
		})
	}
}
