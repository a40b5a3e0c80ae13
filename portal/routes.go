package portal

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/web"
)

// Register mounts the portal on e at "/": its pages, sign-in and sign-out, and /static/.
// This is the portal's one route table. Every route runs the portal's own middleware
// (security headers, error page, CSRF, session, and but for signing in and out the
// checks of chain); e's global middleware (request ID, recovery, logging, body limit)
// runs first.
func (s *Server) Register(e *echo.Echo) {
	mw := s.chain()
	patient := append(mw[:len(mw):len(mw)], noStore, requireRole(RolePatient))
	// Pages a caregiver may also use while acting for a patient: reading, and messages.
	reader := append(mw[:len(mw):len(mw)], noStore, requireRole(RolePatient, RoleProxy))
	staff := append(mw[:len(mw):len(mw)], noStore, requireRole(RoleClinician, RoleOfficer))
	open := append(mw[:len(mw):len(mw)], noStore)
	// Signing in and out run without the checks of a signed-in request (see signInChain).
	auth := with(s.signInChain(), noStore)

	e.GET("/", s.showLanding, open...)
	e.POST("/auth/login", s.startLogin, auth...)
	e.GET("/auth/callback", s.finishLogin, auth...)
	e.POST("/logout", s.deleteSession, auth...)
	e.GET("/enrol", s.showEnrol, open...)
	e.GET("/labs", s.showLabs, reader...)
	e.GET("/summary", s.showSummary, reader...)
	e.GET("/summary/record.json", s.downloadRecord, with(reader, s.requireFreshAuth(backTo("/summary")))...)
	e.GET("/staff", s.showStaff, staff...)
	if s.privacy != nil {
		officer := append(mw[:len(mw):len(mw)], noStore, requireRole(RoleOfficer))
		e.GET("/access", s.showAccess, reader...)
		e.GET("/privacy", s.showPrivacy, patient...)
		// A choice that widens sharing needs a recent sign-in; setChoice checks, since
		// only the form says which way a choice goes.
		e.POST("/privacy/choice", s.setChoice, patient...)
		e.GET("/officer", s.showOfficerAudit, officer...)
		e.GET("/officer/reviews", s.showOfficerReviews, officer...)
		e.GET("/officer/accounting", s.showOfficerAccounting, officer...)
		e.GET("/officer/simulate", s.showOfficerSimulate, officer...)
		e.GET("/officer/consent", s.showOfficerConsent, officer...)
		// Recording a consent or a guardian for a patient, and merging or splitting
		// identities, need a recent sign-in (step-up), as break-the-glass does.
		consentPage := s.requireFreshAuth(officerConsentBack)
		e.POST("/officer/consent", s.recordPaperConsent, with(officer, consentPage)...)
		e.POST("/officer/guardians", s.registerGuardian, with(officer, consentPage)...)
		e.POST("/officer/guardians/revoke", s.revokeGuardian, with(officer, consentPage)...)
		e.GET("/access/accounting.csv", s.downloadOwnAccounting, reader...)
		e.POST("/officer/reviews/close", s.closeBreakGlassReview, officer...)
		e.POST("/officer/disputes/close", s.closeDispute, officer...)
		e.POST("/access/dispute", s.disputeAccess, patient...)
		e.POST("/access/notices/seen", s.markNoticeSeen, patient...)
		e.POST("/officer/mpi/resolve", s.resolveMPIReview, with(officer, s.requireFreshAuth(backTo("/officer/reviews")))...)
	}
	if s.patients != nil {
		clinician := append(mw[:len(mw):len(mw)], noStore, requireRole(RoleClinician))
		e.GET("/staff/patients", s.showPatientSearch, clinician...)
		e.POST("/staff/patients", s.findPatient, clinician...)
		e.GET("/staff/patients/:id", s.showStaffPatient, clinician...)
		if s.btg != nil {
			e.POST("/staff/patients/:id/break-glass", s.breakGlass, with(clinician, s.requireFreshAuth(staffPatientBack))...)
		}
	}
	if s.shares != nil && s.shared != nil {
		e.GET("/labs/share", s.showShares, patient...)
		// Making a link hands the results to whoever holds it: a recent sign-in, as for
		// the download. Revoking one narrows access and is never held back.
		e.POST("/labs/share", s.createShareLink, with(patient, s.requireFreshAuth(backTo("/labs/share")))...)
		e.POST("/labs/share/revoke", s.revokeShareLink, patient...)
		// A share link is opened by someone with no session: no session or CSRF cookie is
		// read or set; the token stays out of Referer headers and caches; the access log
		// names the route pattern, never the token; each client IP is rate-limited.
		e.GET("/share/:token", s.showShared, s.shareChain()...)
	}

	if s.docs != nil {
		e.GET("/documents", s.showDocuments, reader...)
		e.POST("/documents", s.uploadDocument, patient...)
		e.GET("/documents/:id", s.showDocument, reader...)
		e.GET("/documents/:id/file", s.downloadDocument, reader...)
	}
	if s.proxies != nil {
		// Who may act for the patient: managed by the patient only. An invitation is opened
		// by whoever it was sent to; accepting needs their own sign-in, which comes back to
		// the invitation. Its token stays out of Referer headers, even to this site; the
		// access log names the route pattern, never the token.
		signedIn := append(mw[:len(mw):len(mw)], noStore, requireRole(RolePatient, RoleUnenrolled, RoleProxy))
		e.GET("/caregivers", s.showCaregivers, patient...)
		// Inviting a caregiver, or letting one see sensitive information, gives someone else
		// the record: a recent sign-in, as for the download (setCaregiverSensitive checks,
		// since only its form says which way it goes). Removing access or hiding sensitive
		// information narrows access and is never held back.
		e.POST("/caregivers", s.inviteCaregiver, with(patient, s.requireFreshAuth(backTo("/caregivers")))...)
		e.POST("/caregivers/revoke", s.revokeCaregiver, patient...)
		e.POST("/caregivers/sensitive", s.setCaregiverSensitive, patient...)
		e.GET("/caregiver/:token", s.showCaregiverInvite, append(open[:len(open):len(open)], noReferrer)...)
		e.POST("/caregiver/:token", s.acceptCaregiverInvite, append(mw[:len(mw):len(mw)], noReferrer, noStore, requireRole(RolePatient, RoleUnenrolled))...)
		e.POST("/act-for", s.actFor, signedIn...)
	}
	if s.messages != nil {
		e.GET("/messages", s.showMessages, reader...)
		e.GET("/messages/new", s.showNewMessage, reader...)
		e.POST("/messages/new", s.createThread, reader...)
		e.GET("/messages/:id", s.showThread, reader...)
		e.POST("/messages/:id", s.replyThread, reader...)
		clinician := append(mw[:len(mw):len(mw)], noStore, requireRole(RoleClinician))
		e.GET("/staff/messages/:id", s.showStaffThread, clinician...)
		e.POST("/staff/messages/:id", s.replyThread, clinician...)
		e.POST("/staff/messages/:id/close", s.closeThread, clinician...)
	}

	static := http.StripPrefix("/static/", http.FileServer(http.FS(web.Static())))
	e.GET("/static/*", echo.WrapHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") { // no directory listings
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		static.ServeHTTP(w, r)
	})))
}

// with returns ms followed by more in a new array: Echo reads a route's middleware slice
// on every request, so two routes must never share one that a later append could change.
func with(ms []echo.MiddlewareFunc, more ...echo.MiddlewareFunc) []echo.MiddlewareFunc {
	return append(ms[:len(ms):len(ms)], more...)
}

// officerConsentBack is the officer's consent page for the person the form was about.
func officerConsentBack(c echo.Context) string {
	if p := c.FormValue("patient"); p != "" {
		return "/officer/consent?" + url.Values{"patient": {p}}.Encode()
	}
	return "/officer/consent"
}

// staffPatientBack is the clinician's page of the patient the request is about.
func staffPatientBack(c echo.Context) string {
	return "/staff/patients/" + url.PathEscape(c.Param("id"))
}
