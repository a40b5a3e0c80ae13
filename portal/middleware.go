package portal

import (
	"net/http"
	"slices"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/concord-hie/concord/internal/errs"
)

const (
	csrfKey    = "portal.csrf"
	sessionKey = "portal.session"
	sessIDKey  = "portal.session_id"
)

// cookieNames are the portal's cookie names and flags; __Host- needs Secure and Path=/.
type cookieNames struct {
	session string
	csrf    string
	secure  bool
}

func newCookieNames(insecure bool) cookieNames {
	if insecure {
		return cookieNames{session: "concord-session", csrf: "concord-csrf", secure: false}
	}
	return cookieNames{session: "__Host-session", csrf: "__Host-csrf", secure: true}
}

// chain returns the middleware of every portal route but sign-in and sign-out, outermost
// first: signInChain's, then checkLogin (the login still has the standing the session was
// given), checkProxy (a caregiver's grant is still active) and confirmCrossSite (a GET that
// another site started is only offered).
func (s *Server) chain() []echo.MiddlewareFunc {
	return with(s.signInChain(), s.checkLogin, s.checkProxy, s.confirmCrossSite)
}

// signInChain returns the middleware of sign-in, its callback and sign-out, outermost first:
// security headers, the error page, CSRF, then the optional session. It checks neither the
// login, nor a caregiver's grant, nor where the request came from: signing out must sign
// out whatever the session has become, a sign-in replaces it, and the OP's callback
// arrives from another site.
func (s *Server) signInChain() []echo.MiddlewareFunc {
	secure := middleware.SecureWithConfig(middleware.SecureConfig{
		XSSProtection:         "0",
		ContentTypeNosniff:    "nosniff",
		XFrameOptions:         "DENY",
		HSTSMaxAge:            63072000,
		ContentSecurityPolicy: s.csp,
		ReferrerPolicy:        "same-origin",
	})
	csrf := middleware.CSRFWithConfig(middleware.CSRFConfig{
		TokenLookup:    "form:_csrf",
		ContextKey:     csrfKey,
		CookieName:     s.cookie.csrf,
		CookiePath:     "/",
		CookieSecure:   s.cookie.secure,
		CookieHTTPOnly: true,
		CookieSameSite: http.SameSiteStrictMode,
		CookieMaxAge:   12 * 3600,
	})
	return []echo.MiddlewareFunc{secure, s.errorPages, csrf, s.loadSession}
}

// shareChain is the middleware of the pages a share link opens, outermost first: the
// security headers with Referrer-Policy no-referrer, the error page, no-store, and the
// per-IP rate limit. There is no session and no CSRF cookie: the holder is anonymous.
func (s *Server) shareChain() []echo.MiddlewareFunc {
	secure := middleware.SecureWithConfig(middleware.SecureConfig{
		XSSProtection:         "0",
		ContentTypeNosniff:    "nosniff",
		XFrameOptions:         "DENY",
		HSTSMaxAge:            63072000,
		ContentSecurityPolicy: s.csp,
		ReferrerPolicy:        "no-referrer",
	})
	return []echo.MiddlewareFunc{secure, s.errorPages, noStore, s.limiter.middleware}
}

// errorPages renders any error a portal handler (or the CSRF check) returns as the error
// page, so the portal's responses never depend on the host Echo's error handler.
func (s *Server) errorPages(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := next(c); err != nil {
			s.HTTPErrorHandler(err, c)
		}
		return nil
	}
}

// loadSession puts the caller's session, if any, in the context. A missing or expired
// session is no error here (pages that need one redirect); a failing session store is.
func (s *Server) loadSession(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		ck, err := c.Cookie(s.cookie.session)
		if err != nil || ck.Value == "" {
			return next(c)
		}
		sess, err := s.sessions.Load(c.Request().Context(), ck.Value)
		switch {
		case err == nil:
			if sess.Landing != "" {
				// The session's first request after sign-in, whatever it is and whichever
				// check stops it, uses the Landing pass up (confirmCrossSite).
				c.Set(landingKey, sess.Landing)
				sess.Landing = ""
				if err := s.sessions.Save(c.Request().Context(), ck.Value, sess); err != nil {
					return err
				}
			}
			c.Set(sessionKey, &sess)
			c.Set(sessIDKey, ck.Value)
		case errs.Is(err, errs.NotFound):
			s.clearSessionCookie(c)
		default:
			return err
		}
		return next(c)
	}
}

// requireRole lets a request through only with a signed-in session of one of roles. Without
// a session it redirects to the landing page; with another role it answers 404, as if the
// page did not exist.
func requireRole(roles ...Role) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			sess, ok := c.Get(sessionKey).(*Session)
			if !ok || sess.Role == "" {
				return c.Redirect(http.StatusSeeOther, "/")
			}
			if !slices.Contains(roles, sess.Role) {
				return errs.E("portal.requireRole", errs.NotFound, "no such page")
			}
			return next(c)
		}
	}
}

// noStore marks a response as not to be cached anywhere: every page that may hold PHI.
func noStore(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
		return next(c)
	}
}

// noReferrer sets Referrer-Policy no-referrer (over the chain's same-origin) on a page
// whose URL holds a secret, such as a caregiver invitation's token: no request from the
// page, to this site or another, names it.
func noReferrer(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		c.Response().Header().Set(echo.HeaderReferrerPolicy, "no-referrer")
		return next(c)
	}
}

func (s *Server) setSessionCookie(c echo.Context, id string) {
	c.SetCookie(&http.Cookie{
		Name:     s.cookie.session,
		Value:    id,
		Path:     "/",
		HttpOnly: true,
		Secure:   s.cookie.secure,
		SameSite: http.SameSiteLaxMode, // the OIDC callback is a cross-site top-level navigation
	})
}

func (s *Server) clearSessionCookie(c echo.Context) {
	c.SetCookie(&http.Cookie{
		Name:     s.cookie.session,
		Value:    "",
		Path:     "/",
		MaxAge:   -1,
		HttpOnly: true,
		Secure:   s.cookie.secure,
		SameSite: http.SameSiteLaxMode,
	})
}

// session returns the request's session and its ID, or nil.
func session(c echo.Context) (*Session, string) {
	sess, _ := c.Get(sessionKey).(*Session)
	id, _ := c.Get(sessIDKey).(string)
	return sess, id
}
