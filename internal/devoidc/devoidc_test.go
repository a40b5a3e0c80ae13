package devoidc

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/concord-hie/concord/internal/errs"
)

const redirect = "http://127.0.0.1:9/auth/callback"

var testUsers = []User{
	{Subject: "sub-ada", Username: "ada", Password: "pw-ada-1", FirstName: "Ada", LastName: "Lovelace", Email: "ada@example.test"},
	{Subject: "sub-bob", Username: "bob", Password: "pw-bob-1"},
	{Subject: "sub-cy", Username: "cy", Password: "pw-cy-1", OTP: "424242"},
}

func startOP(t *testing.T) *Server {
	t.Helper()
	before := slog.Default()
	defer func() {
		if slog.Default() != before {
			t.Error("Start replaced the process's default slog logger")
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s, err := Start(ctx, "127.0.0.1:0", testUsers, []Client{{ID: "portal", Secret: "s3cret", RedirectURIs: []string{redirect}, PostLogoutRedirectURIs: []string{"http://127.0.0.1:9/"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// signIn drives the browser side of the code flow: it follows redirects to the OP's login
// form, posts the credentials, then each of otps on the one-time-code page while it is shown,
// and returns the query of the final redirect to the client (or the last page as
// "login_page").
func signIn(t *testing.T, authURL, username, password string, otps ...string) url.Values {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 10 * time.Second, CheckRedirect: func(r *http.Request, _ []*http.Request) error {
		if strings.HasPrefix(r.URL.String(), redirect) {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	res, err := hc.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(res.Request.URL.Path, "/login/username") {
		t.Fatalf("auth request landed on %s, want the login form", res.Request.URL.Path)
	}
	m := regexp.MustCompile(`name="id" value="([^"]+)"`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("login form has no auth request id:\n%s", body)
	}
	form := url.Values{"id": {string(m[1])}, "username": {username}, "password": {password}}
	res, err = hc.PostForm(res.Request.URL.String(), form)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { res.Body.Close() }()
	for _, code := range otps {
		if res.StatusCode != http.StatusOK {
			break
		}
		b, _ := io.ReadAll(res.Body)
		m := regexp.MustCompile(`name="token" value="([^"]+)"`).FindSubmatch(b)
		if m == nil {
			return url.Values{"login_page": {string(b)}}
		}
		res.Body.Close()
		u, _ := res.Request.URL.Parse("/login/otp")
		if res, err = hc.PostForm(u.String(), url.Values{"token": {string(m[1])}, "otp": {code}}); err != nil {
			t.Fatal(err)
		}
	}
	if res.StatusCode != http.StatusFound {
		b, _ := io.ReadAll(res.Body)
		return url.Values{"login_page": {string(b)}}
	}
	loc, err := url.Parse(res.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return loc.Query()
}

func TestCodeFlowWithPKCE(t *testing.T) {
	s := startOP(t)
	if !regexp.MustCompile(`^http://localhost:\d+/$`).MatchString(s.Issuer()) {
		t.Fatalf("issuer %q, want http://localhost:PORT/", s.Issuer())
	}
	ctx := context.Background()
	provider, err := oidc.NewProvider(ctx, s.Issuer())
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		EndSession string   `json:"end_session_endpoint"`
		Methods    []string `json:"code_challenge_methods_supported"`
	}
	if err := provider.Claims(&meta); err != nil {
		t.Fatal(err)
	}
	if meta.EndSession == "" || !contains(meta.Methods, "S256") {
		t.Fatalf("discovery: end_session %q, PKCE methods %v", meta.EndSession, meta.Methods)
	}
	conf := oauth2.Config{ClientID: "portal", ClientSecret: "s3cret", RedirectURL: redirect, Endpoint: provider.Endpoint(), Scopes: []string{oidc.ScopeOpenID, "profile", "email"}}
	state, nonce, verifier := rand.Text(), rand.Text(), oauth2.GenerateVerifier()
	q := signIn(t, conf.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)), "ada", "pw-ada-1")
	if q.Get("state") != state || q.Get("code") == "" {
		t.Fatalf("callback query %v, want state and code", q)
	}

	// The wrong verifier is refused: PKCE is enforced by the OP.
	if _, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(oauth2.GenerateVerifier())); err == nil {
		t.Fatal("exchange with the wrong PKCE verifier succeeded")
	}
	// The code is still fresh for the legitimate client (the failed attempt did not burn it
	// in this OP); the right verifier gets tokens.
	q = signIn(t, conf.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)), "ada", "pw-ada-1")
	tok, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := provider.Verifier(&oidc.Config{ClientID: "portal"}).Verify(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	if idt.Subject != "sub-ada" || idt.Nonce != nonce || idt.Issuer != s.Issuer() {
		t.Fatalf("id token sub %q nonce %q iss %q", idt.Subject, idt.Nonce, idt.Issuer)
	}
	// A token for another audience fails verification.
	if _, err := provider.Verifier(&oidc.Config{ClientID: "other"}).Verify(ctx, raw); err == nil {
		t.Fatal("id token verified for the wrong audience")
	}
	ui, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		GivenName string `json:"given_name"`
	}
	if err := ui.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	if ui.Subject != "sub-ada" || ui.Email != "ada@example.test" || claims.GivenName != "Ada" {
		t.Fatalf("userinfo sub %q email %q given %q", ui.Subject, ui.Email, claims.GivenName)
	}

	// end_session accepts the registered post-logout redirect and refuses another one.
	nr := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range []struct {
		post string
		want int
	}{{"http://127.0.0.1:9/", http.StatusFound}, {"http://evil.example/", http.StatusBadRequest}} {
		u := meta.EndSession + "?" + url.Values{"id_token_hint": {raw}, "post_logout_redirect_uri": {tc.post}}.Encode()
		res, err := nr.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != tc.want {
			t.Errorf("end_session to %s: status %d, want %d", tc.post, res.StatusCode, tc.want)
		}
		if tc.want == http.StatusFound && res.Header.Get("Location") != tc.post {
			t.Errorf("end_session redirected to %q", res.Header.Get("Location"))
		}
	}
}

func TestWrongPasswordStaysOnForm(t *testing.T) {
	s := startOP(t)
	ctx := context.Background()
	provider, err := oidc.NewProvider(ctx, s.Issuer())
	if err != nil {
		t.Fatal(err)
	}
	conf := oauth2.Config{ClientID: "portal", ClientSecret: "s3cret", RedirectURL: redirect, Endpoint: provider.Endpoint(), Scopes: []string{oidc.ScopeOpenID}}
	q := signIn(t, conf.AuthCodeURL("st", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), "ada", "wrong")
	if q.Get("code") != "" || !strings.Contains(q.Get("login_page"), "username or password wrong") {
		t.Fatalf("wrong password: got %v", q)
	}
}

func TestStartRefuses(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		addr    string
		users   []User
		clients []Client
	}{
		{"non-loopback", "0.0.0.0:0", testUsers, nil},
		{"duplicate subject", "127.0.0.1:0", []User{testUsers[0], testUsers[0]}, nil},
		{"user without password", "127.0.0.1:0", []User{{Subject: "x", Username: "x"}}, nil},
		{"client without redirect", "127.0.0.1:0", testUsers, []Client{{ID: "c", Secret: "s"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Start(ctx, tc.addr, tc.users, tc.clients)
			if err == nil {
				s.Close()
				t.Fatal("Start succeeded")
			}
			var e *errs.Error
			if !errors.As(err, &e) || e.Code != errs.Invalid {
				t.Fatalf("err %v, want errs.Invalid", err)
			}
		})
	}
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// TestSecondFactor: a user with an OTP is asked for it after the password; a wrong code keeps
// the page, the right one finishes the login with amr pwd+otp and acr MFAACR in the ID token.
// A user without one signs in with amr pwd and no acr.
func TestSecondFactor(t *testing.T) {
	s := startOP(t)
	ctx := context.Background()
	provider, err := oidc.NewProvider(ctx, s.Issuer())
	if err != nil {
		t.Fatal(err)
	}
	conf := oauth2.Config{ClientID: "portal", ClientSecret: "s3cret", RedirectURL: redirect, Endpoint: provider.Endpoint(), Scopes: []string{oidc.ScopeOpenID}}
	type claims struct {
		ACR string   `json:"acr"`
		AMR []string `json:"amr"`
	}
	login := func(user, pw string, otps ...string) (claims, url.Values) {
		t.Helper()
		state, verifier := rand.Text(), oauth2.GenerateVerifier()
		q := signIn(t, conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier)), user, pw, otps...)
		if q.Get("code") == "" {
			return claims{}, q
		}
		tok, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := tok.Extra("id_token").(string)
		idt, err := provider.Verifier(&oidc.Config{ClientID: "portal"}).Verify(ctx, raw)
		if err != nil {
			t.Fatal(err)
		}
		var c claims
		if err := idt.Claims(&c); err != nil {
			t.Fatal(err)
		}
		if _, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(tok)); err != nil {
			t.Fatalf("userinfo: %v", err)
		}
		return c, q
	}

	// Password alone does not finish a login that has a second factor.
	if _, q := login("cy", "pw-cy-1"); q.Get("code") != "" || !strings.Contains(q.Get("login_page"), "one-time code") {
		t.Fatalf("no code page after the password: %v", q)
	}
	// A wrong code keeps the page and issues no code.
	if _, q := login("cy", "pw-cy-1", "000000"); q.Get("code") != "" || !strings.Contains(q.Get("login_page"), "not right") {
		t.Fatalf("wrong code: %v", q)
	}
	// The wrong password never reaches the code page.
	if _, q := login("cy", "wrong", "424242"); q.Get("code") != "" || !strings.Contains(q.Get("login_page"), "username or password wrong") {
		t.Fatalf("wrong password: %v", q)
	}
	// A wrong code, then the right one.
	c, q := login("cy", "pw-cy-1", "111111", "424242")
	if q.Get("code") == "" || c.ACR != MFAACR || !contains(c.AMR, "otp") || !contains(c.AMR, "pwd") {
		t.Fatalf("after the right code: %+v %v", c, q)
	}
	// Five wrong codes end the attempt.
	if _, q := login("cy", "pw-cy-1", "1", "2", "3", "4", "5", "424242"); q.Get("code") != "" || !strings.Contains(q.Get("login_page"), "Too many") {
		t.Fatalf("after five wrong codes: %v", q)
	}
	c, q = login("ada", "pw-ada-1")
	if q.Get("code") == "" || c.ACR != "" || contains(c.AMR, "otp") || !contains(c.AMR, "pwd") {
		t.Fatalf("password-only login: %+v %v", c, q)
	}
}
