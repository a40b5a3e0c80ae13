package exchange

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/concord-hie/concord/directory"
)

// smartClient is a client system registered for member a of a dirEnv with a P-384 key,
// talking to the exchange over HTTP as a member EHR does.
type smartClient struct {
	env *dirEnv
	id  string
	key *ecdsa.PrivateKey
}

func newSMARTClient(t *testing.T, env *dirEnv, scopes []string) *smartClient {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES384", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := directory.NewStore(env.pool).AddClient(context.Background(), "a", jwks, scopes, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &smartClient{env: env, id: c.ID, key: key}
}

// assertion is a fresh client assertion (new jti) for the token endpoint.
func (sc *smartClient) assertion(t *testing.T) string {
	t.Helper()
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES384, Key: sc.key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	s, err := jwt.Signed(sig).Claims(jwt.Claims{Issuer: sc.id, Subject: sc.id, Audience: jwt.Audience{searchBase + "/token"},
		ID: rand.Text(), IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(4 * time.Minute))}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// form is a valid token request body for scope.
func (sc *smartClient) form(t *testing.T, scope string) url.Values {
	return url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {directory.AssertionType},
		"client_assertion": {sc.assertion(t)}, "scope": {scope}}
}

// post sends a token request to target (the path, with any query) and returns the response.
func (sc *smartClient) post(t *testing.T, target, contentType, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, target, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	w := httptest.NewRecorder()
	sc.env.e.ServeHTTP(w, req)
	return w
}

// token gets an access token for scope, failing t otherwise.
func (sc *smartClient) token(t *testing.T, scope string) string {
	t.Helper()
	w := sc.post(t, "/token", "application/x-www-form-urlencoded", sc.form(t, scope).Encode())
	var tr directory.TokenResponse
	if err := json.Unmarshal(w.Body.Bytes(), &tr); w.Code != http.StatusOK || err != nil || tr.AccessToken == "" {
		t.Fatalf("token request: %d %s", w.Code, w.Body)
	}
	return tr.AccessToken
}

// RFC 6749 §3.2 and §5.2: the token endpoint reads an application/x-www-form-urlencoded
// body and nothing else, and refuses a parameter given twice, with invalid_request.
func TestTokenEndpointReadsTheFormBodyOnly(t *testing.T) {
	env := newDirEnv(t)
	sc := newSMARTClient(t, env, []string{"system/*.rs"})
	const formType = "application/x-www-form-urlencoded"
	with := func(f url.Values, k string, extra ...string) string {
		f[k] = append(f[k], extra...)
		return f.Encode()
	}
	tests := []struct {
		name, target, contentType string
		body                      func() string
	}{
		{"scope given twice", "/token", formType, func() string { return with(sc.form(t, "system/*.rs"), "scope", "system/Patient.rs") }},
		{"scope given twice, same value", "/token", formType, func() string { return with(sc.form(t, "system/*.rs"), "scope", "system/*.rs") }},
		{"grant_type given twice", "/token", formType, func() string { return with(sc.form(t, "system/*.rs"), "grant_type", "client_credentials") }},
		{"client_assertion given twice", "/token", formType, func() string { return with(sc.form(t, "system/*.rs"), "client_assertion", sc.assertion(t)) }},
		{"a valid body, and a query string", "/token?scope=system/Patient.rs", formType, func() string { return sc.form(t, "system/*.rs").Encode() }},
		{"a valid body, and an unrelated query string", "/token?x=1", formType, func() string { return sc.form(t, "system/*.rs").Encode() }},
		{"every parameter in the query string", "/token?" + sc.form(t, "system/*.rs").Encode(), formType, func() string { return "" }},
		{"the parameters split between query and body", "/token?scope=system/*.rs", formType, func() string {
			f := sc.form(t, "system/*.rs")
			f.Del("scope")
			return f.Encode()
		}},
		{"no Content-Type", "/token", "", func() string { return sc.form(t, "system/*.rs").Encode() }},
		{"Content-Type text/plain", "/token", "text/plain", func() string { return sc.form(t, "system/*.rs").Encode() }},
		{"a JSON body", "/token", "application/json", func() string {
			b, _ := json.Marshal(map[string]string{"grant_type": "client_credentials", "client_assertion_type": directory.AssertionType,
				"client_assertion": sc.assertion(t), "scope": "system/*.rs"})
			return string(b)
		}},
		{"a multipart body", "/token", "multipart/form-data; boundary=x", func() string {
			return "--x\r\nContent-Disposition: form-data; name=\"grant_type\"\r\n\r\nclient_credentials\r\n--x--\r\n"
		}},
		{"a body over 64 KiB", "/token", formType, func() string {
			return with(sc.form(t, "system/*.rs"), "padding", strings.Repeat("p", 64<<10))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := sc.post(t, tt.target, tt.contentType, tt.body())
			var got struct{ Error, AccessToken string }
			_ = json.Unmarshal(w.Body.Bytes(), &got)
			if w.Code != http.StatusBadRequest || got.Error != "invalid_request" || strings.Contains(w.Body.String(), "access_token") {
				t.Fatalf("%d %s; want 400 invalid_request", w.Code, w.Body)
			}
			if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", cc)
			}
		})
	}
	t.Run("control: a form body with a charset", func(t *testing.T) {
		w := sc.post(t, "/token", formType+"; charset=utf-8", sc.form(t, "system/*.rs").Encode())
		if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"access_token"`) {
			t.Fatalf("%d %s; want 200 with a token", w.Code, w.Body)
		}
	})
}
