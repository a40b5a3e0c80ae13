// Package devoidc runs an embedded development OpenID Connect provider for `concord demo` and
// for tests: zitadel/oidc's example OP (code flow with PKCE S256, JWKS, UserInfo, end_session)
// with Concord's demo users and clients, served on loopback. Sign-in goes through the OP's real
// HTML login form at /login/username.
//
// A user with an OTP is asked for it on a second page after the password (a demo second
// factor): tokens of that sign-in carry amr ["pwd","otp"] and acr MFAACR; other sign-ins carry
// amr ["pwd"] and no acr.
//
// It is for development only: passwords are compared in plain text, keys live in memory and
// change at every start, and the issuer is plain http://localhost:PORT/.
package devoidc

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"

	"github.com/concord-hie/concord/internal/errs"
)

// MFAACR is the `acr` the provider asserts after a second factor: the OpenID PAPE
// multi-factor policy URI.
const MFAACR = "http://schemas.openid.net/pape/policies/2007/06/multi-factor"

// User is a demo account. Subject is the stable `sub` claim; Username and Password are what
// the login form takes. The ID token carries `sub`, `amr` and, after a second factor, `acr`;
// names and email come from UserInfo. OTP, when set, is the user's fixed demo one-time code:
// the login then asks for it after the password (a stand-in for TOTP, development only).
type User struct {
	Subject   string
	Username  string
	Password  string
	FirstName string
	LastName  string
	Email     string
	OTP       string
}

// LogValue redacts everything but the subject, so a careless slog.Any stays safe.
func (u User) LogValue() slog.Value { return slog.StringValue("devoidc.User{" + u.Subject + "}") }

// Client is a confidential web client (client_secret_basic) allowed to redirect to
// RedirectURIs after login and to PostLogoutRedirectURIs after end_session.
type Client struct {
	ID                     string
	Secret                 string
	RedirectURIs           []string
	PostLogoutRedirectURIs []string
}

// Server is a running provider. Close stops it.
type Server struct {
	issuer string
	srv    *http.Server
	done   chan struct{}
}

// Start listens on addr (host:port; the host must be a loopback address or "localhost", port
// 0 picks a free one) and serves a provider whose issuer is http://localhost:PORT/. It returns
// errs.Invalid for a non-loopback address, a duplicate user or client, or a user without
// subject, username or password, and errs.Unavailable when it cannot listen. The provider
// stops when ctx is cancelled or Close is called.
func Start(ctx context.Context, addr string, users []User, clients []Client) (*Server, error) {
	const op = "devoidc.Start"
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, errs.E(op, errs.Invalid, "malformed listen address", err)
	}
	if host != "localhost" {
		ip := net.ParseIP(host)
		if ip == nil || !ip.IsLoopback() {
			return nil, errs.E(op, errs.Invalid, "the development OIDC provider listens on loopback only")
		}
	}
	us, err := newUserStore(users)
	if err != nil {
		return nil, errs.E(op, errs.Invalid, err.Error())
	}
	cs := map[string]*storage.Client{}
	post := map[string][]string{}
	for _, c := range clients {
		if c.ID == "" || c.Secret == "" || len(c.RedirectURIs) == 0 {
			return nil, errs.E(op, errs.Invalid, "a client needs an ID, a secret and a redirect URI")
		}
		if _, dup := cs[c.ID]; dup {
			return nil, errs.E(op, errs.Invalid, "duplicate client "+c.ID)
		}
		cs[c.ID] = storage.WebClient(c.ID, c.Secret, c.RedirectURIs...)
		post[c.ID] = append([]string(nil), c.PostLogoutRedirectURIs...)
	}
	if host == "localhost" {
		addr = net.JoinHostPort("127.0.0.1", addr[strings.LastIndex(addr, ":")+1:])
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, errs.E(op, errs.Unavailable, "cannot listen", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	issuer := fmt.Sprintf("http://localhost:%d/", port)

	st := &opStorage{Storage: storage.NewStorageWithClients(us, cs), postLogout: post, mfa: map[string]bool{}}
	// A nil logger keeps SetupServer from replacing the process's default slog logger.
	router := exampleop.SetupServer(issuer, st, nil, false)
	sf := &secondFactor{users: us, st: st, next: router, pending: map[string]*pendingOTP{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login/username", sf.password)
	mux.HandleFunc("POST /login/otp", sf.otp)
	mux.Handle("/", router)
	s := &Server{
		issuer: issuer,
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      30 * time.Second,
		},
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	go func() {
		select {
		case <-ctx.Done():
			s.Close()
		case <-s.done:
		}
	}()
	return s, nil
}

// Issuer returns the issuer URL, http://localhost:PORT/ with the trailing slash, exactly as
// the provider puts it in `iss` and in its discovery document.
func (s *Server) Issuer() string { return s.issuer }

// Close stops the provider, waiting up to 2 s for requests in flight. It is safe to call twice.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// opStorage is the example storage with registered post-logout redirect URIs, which the
// example's own clients cannot carry, and the second-factor evidence of auth requests.
type opStorage struct {
	*storage.Storage
	postLogout map[string][]string

	mu  sync.Mutex
	mfa map[string]bool // auth request ID → the user passed the second factor
}

// AuthRequestByCode returns the auth request behind code, asserting acr and amr by whether
// its user passed the second factor. The token endpoint builds the ID token from it.
func (s *opStorage) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	ar, err := s.Storage.AuthRequestByCode(ctx, code)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	mfa := s.mfa[ar.GetID()]
	s.mu.Unlock()
	return withMFA{AuthRequest: ar, mfa: mfa}, nil
}

// DeleteAuthRequest forgets the request's second-factor evidence with it.
func (s *opStorage) DeleteAuthRequest(ctx context.Context, id string) error {
	s.mu.Lock()
	delete(s.mfa, id)
	s.mu.Unlock()
	return s.Storage.DeleteAuthRequest(ctx, id)
}

// CreateAccessToken and CreateAccessAndRefreshTokens hand the example storage its own
// request type, which it needs to record the client.
func (s *opStorage) CreateAccessToken(ctx context.Context, r op.TokenRequest) (string, time.Time, error) {
	return s.Storage.CreateAccessToken(ctx, unwrap(r))
}

func (s *opStorage) CreateAccessAndRefreshTokens(ctx context.Context, r op.TokenRequest, current string) (string, string, time.Time, error) {
	return s.Storage.CreateAccessAndRefreshTokens(ctx, unwrap(r), current)
}

func unwrap(r op.TokenRequest) op.TokenRequest {
	if w, ok := r.(withMFA); ok {
		return w.AuthRequest
	}
	return r
}

// withMFA is an auth request with its authentication methods and context class.
type withMFA struct {
	op.AuthRequest
	mfa bool
}

func (w withMFA) GetAMR() []string {
	if !w.Done() {
		return nil
	}
	if w.mfa {
		return []string{"pwd", "otp"}
	}
	return []string{"pwd"}
}

func (w withMFA) GetACR() string {
	if w.mfa && w.Done() {
		return MFAACR
	}
	return ""
}

// secondFactor puts a one-time-code page between the password and the end of the login
// for users with an OTP; it hands every other login to the example's form (next).
type secondFactor struct {
	users *userStore
	st    *opStorage
	next  http.Handler

	mu      sync.Mutex
	pending map[string]*pendingOTP // random token → a login waiting for its code
}

// pendingOTP is a login whose password was right, waiting for the code.
type pendingOTP struct {
	authReq  string
	username string
	tries    int
	expires  time.Time
}

const (
	otpWindow   = 5 * time.Minute
	otpMaxTries = 5
)

var otpPage = template.Must(template.New("otp").Parse(`<!DOCTYPE html>
<html lang="en">
<head><meta charset="UTF-8"><title>Second factor</title></head>
<body style="display: flex; align-items: center; justify-content: center; height: 100vh;">
<form method="POST" action="/login/otp" style="width: 240px;">
<input type="hidden" name="token" value="{{.Token}}">
<p>Staff sign-in needs a second factor. Enter your one-time code.</p>
<div><label for="otp">One-time code:</label>
<input id="otp" name="otp" inputmode="numeric" autocomplete="one-time-code" style="width: 100%"></div>
<p style="color:red; min-height: 1rem;">{{.Error}}</p>
<button type="submit">Verify</button>
</form>
</body>
</html>`))

func renderOTP(w http.ResponseWriter, token, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_ = otpPage.Execute(w, struct{ Token, Error string }{token, msg})
}

// password checks the first factor. A user with an OTP whose password is right gets the
// code page; everything else (no OTP, wrong password, unknown user) goes to the example's
// handler, which answers as before.
func (f *secondFactor) password(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "cannot parse form", http.StatusBadRequest)
		return
	}
	u := f.users.GetUserByUsername(r.PostFormValue("username"))
	otp := f.users.otp(r.PostFormValue("username"))
	if u == nil || otp == "" || subtle.ConstantTimeCompare([]byte(u.Password), []byte(r.PostFormValue("password"))) != 1 {
		f.next.ServeHTTP(w, r)
		return
	}
	if _, err := f.st.AuthRequestByID(r.Context(), r.PostFormValue("id")); err != nil {
		http.Error(w, "unknown sign-in request", http.StatusBadRequest)
		return
	}
	token := rand.Text()
	now := time.Now()
	f.mu.Lock()
	for k, p := range f.pending {
		if now.After(p.expires) {
			delete(f.pending, k)
		}
	}
	f.pending[token] = &pendingOTP{authReq: r.PostFormValue("id"), username: u.Username, expires: now.Add(otpWindow)}
	f.mu.Unlock()
	renderOTP(w, token, "")
}

// otp checks the code. The right code finishes the login with the second factor recorded;
// a wrong one shows the page again, and the fifth wrong one (or an expired page) ends it.
func (f *secondFactor) otp(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "cannot parse form", http.StatusBadRequest)
		return
	}
	token := r.PostFormValue("token")
	f.mu.Lock()
	p := f.pending[token]
	if p == nil || time.Now().After(p.expires) {
		delete(f.pending, token)
		f.mu.Unlock()
		http.Error(w, "This sign-in has expired. Start again from the application.", http.StatusBadRequest)
		return
	}
	want := f.users.otp(p.username)
	if want == "" || subtle.ConstantTimeCompare([]byte(want), []byte(strings.TrimSpace(r.PostFormValue("otp")))) != 1 {
		p.tries++
		if p.tries >= otpMaxTries {
			delete(f.pending, token)
			f.mu.Unlock()
			http.Error(w, "Too many wrong codes. Start again from the application.", http.StatusBadRequest)
			return
		}
		f.mu.Unlock()
		renderOTP(w, token, "That code is not right.")
		return
	}
	delete(f.pending, token)
	f.mu.Unlock()
	u := f.users.GetUserByUsername(p.username)
	if u == nil {
		http.Error(w, "unknown user", http.StatusBadRequest)
		return
	}
	f.st.mu.Lock()
	f.st.mfa[p.authReq] = true
	f.st.mu.Unlock()
	if err := f.st.CheckUsernamePassword(u.Username, u.Password, p.authReq); err != nil {
		http.Error(w, "unknown sign-in request", http.StatusBadRequest)
		return
	}
	http.Redirect(w, r, "/auth/callback?id="+url.QueryEscape(p.authReq), http.StatusFound)
}

// GetClientByClientID returns the client with its post-logout redirect URIs.
func (s *opStorage) GetClientByClientID(ctx context.Context, clientID string) (op.Client, error) {
	c, err := s.Storage.GetClientByClientID(ctx, clientID)
	if err != nil {
		return nil, err
	}
	return clientWithLogout{Client: c, post: s.postLogout[clientID]}, nil
}

type clientWithLogout struct {
	op.Client
	post []string
}

func (c clientWithLogout) PostLogoutRedirectURIs() []string { return c.post }

// userStore implements storage.UserStore over the demo users.
type userStore struct {
	mu     sync.Mutex
	bySub  map[string]*storage.User
	byName map[string]*storage.User
	otps   map[string]string // username → demo one-time code
}

var _ storage.UserStore = (*userStore)(nil)

func newUserStore(users []User) (*userStore, error) {
	s := &userStore{bySub: map[string]*storage.User{}, byName: map[string]*storage.User{}, otps: map[string]string{}}
	for _, u := range users {
		if u.Subject == "" || u.Username == "" || u.Password == "" {
			return nil, errors.New("a user needs a subject, a username and a password")
		}
		if _, dup := s.bySub[u.Subject]; dup {
			return nil, errors.New("duplicate user subject " + u.Subject)
		}
		if _, dup := s.byName[u.Username]; dup {
			return nil, errors.New("duplicate username")
		}
		su := &storage.User{
			ID:                u.Subject,
			Username:          u.Username,
			Password:          u.Password,
			FirstName:         u.FirstName,
			LastName:          u.LastName,
			Email:             u.Email,
			EmailVerified:     u.Email != "",
			PreferredLanguage: language.English,
		}
		s.bySub[u.Subject] = su
		s.byName[u.Username] = su
		if u.OTP != "" {
			s.otps[u.Username] = u.OTP
		}
	}
	return s, nil
}

// GetUserByID returns the user whose subject is id, or nil.
func (s *userStore) GetUserByID(id string) *storage.User {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bySub[id]
}

// GetUserByUsername returns the user with that username, or nil.
func (s *userStore) GetUserByUsername(name string) *storage.User {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byName[name]
}

// otp returns the one-time code of the user with that username, "" for none.
func (s *userStore) otp(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.otps[name]
}

// ExampleClientID names the example's service (JWT profile) user, which Concord does not use.
func (s *userStore) ExampleClientID() string { return storage.ServiceUserID }
