package portal

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// continuePage stands in for a signed-in page that another site opened: it offers the page
// instead of showing it.
type continuePage struct {
	Page
	Target string // the page asked for (path and query), linked from this origin
}

// confirmCrossSite runs last in chain: a signed-in GET (or HEAD) that another site started
// (fromOtherSite: a link or redirect on another site, or in a web mail) gets the
// "continue" page, which shows nothing of the record and changes nothing, instead of the
// page. Its link to the same path is followed from this origin, so the page then arrives
// same-origin. The session cookie is SameSite=Lax, which a top-level navigation from
// another site carries, and some GETs change state or write an audited read (a clinician's
// thread marks the patient's messages read); deep links from e-mail keep working, one
// click later. The first request after sign-in, to the session's Landing, is let through:
// it follows the OP's redirects, so it comes from the OP's site. Requests without a
// session, and signing in and out (signInChain), are not held.
func (s *Server) confirmCrossSite(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		sess, _ := session(c)
		if sess == nil || sess.Role == "" {
			return next(c)
		}
		req := c.Request()
		target := localPath(req.URL.RequestURI())
		landing, _ := c.Get(landingKey).(string) // loadSession took it from the session
		safe := req.Method == http.MethodGet || req.Method == http.MethodHead
		if !safe || !fromOtherSite(req) || (landing != "" && target == landing) {
			return next(c)
		}
		h := c.Response().Header()
		h.Set(echo.HeaderCacheControl, "no-store")
		// The path may hold a secret (a caregiver invitation's token): the link's request
		// names no referrer.
		h.Set(echo.HeaderReferrerPolicy, "no-referrer")
		p := continuePage{Page: s.page(c, "Continue to this page"), Target: target}
		p.route = "" // the page itself is not shown: no navigation link is marked current
		if p.Target == "" {
			p.Target = homeFor(sess.Role)
		}
		return s.render(c, http.StatusOK, "continue", p)
	}
}

// landingKey holds, for the session's first request after sign-in, the Landing that
// loadSession took out of the session.
const landingKey = "portal.landing"

// fromOtherSite reports whether the browser says that another site started req: its
// Sec-Fetch-Site is cross-site, or same-site (another origin under this registrable
// domain, which may be another application). same-origin and none (typed, a bookmark) are
// this site's or the user's own. A request without the header (a browser without Fetch
// Metadata, or no browser) is taken as this site's: the check is depth over SameSite and
// the CSRF check of every form, and would otherwise stop such a browser at every click.
func fromOtherSite(req *http.Request) bool {
	switch req.Header.Get("Sec-Fetch-Site") {
	case "cross-site", "same-site":
		return true
	}
	return false
}
