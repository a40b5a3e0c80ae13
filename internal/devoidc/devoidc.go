// Package devoidc runs an embedded development OpenID Connect provider for `concord demo` and
// for tests: zitadel/oidc's example OP (code flow with PKCE S256, JWKS, UserInfo, end_session)
// with Concord's demo users and clients, served on loopback. Sign-in goes through the OP's real
// HTML login form at /login/username.
//
// It is for development only: passwords are compared in plain text, keys live in memory and
// change at every start, and the issuer is plain http://localhost:PORT/.
package devoidc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"

	"github.com/concord-hie/concord/internal/errs"
)

// User is a demo account. Subject is the stable `sub` claim; Username and Password are what
// the login form takes. The ID token carries only `sub`; names and email come from UserInfo.
type User struct {
	Subject   string
	Username  string
	Password  string
	FirstName string
	LastName  string
	Email     string
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

	st := &opStorage{Storage: storage.NewStorageWithClients(us, cs), postLogout: post}
	// A nil logger keeps SetupServer from replacing the process's default slog logger.
	router := exampleop.SetupServer(issuer, st, nil, false)
	s := &Server{
		issuer: issuer,
		srv: &http.Server{
			Handler:           router,
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
// example's own clients cannot carry.
type opStorage struct {
	*storage.Storage
	postLogout map[string][]string
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
}

var _ storage.UserStore = (*userStore)(nil)

func newUserStore(users []User) (*userStore, error) {
	s := &userStore{bySub: map[string]*storage.User{}, byName: map[string]*storage.User{}}
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

// ExampleClientID names the example's service (JWT profile) user, which Concord does not use.
func (s *userStore) ExampleClientID() string { return storage.ServiceUserID }
