package portal

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/labstack/echo/v4"
	"golang.org/x/oauth2"

	"github.com/concord-hie/concord/internal/errs"
)

// finishLogin is the OIDC redirect target. It accepts the code only for the flow kept in
// this browser's pre-login session (state compared in constant time, the flow used once and
// within LoginWindow), exchanges it with the PKCE verifier, verifies the ID token (signature,
// issuer, audience, expiry) and its nonce, requires the UserInfo subject to equal the ID
// token's, and then resolves the login only through explicit records: staff first, then an
// enrolled person, else the enrolment page. A staff login whose ID token carries no
// second-factor evidence (see Config.StaffMFAOff) gets the "second factor needed" page and no
// session. A step-up started while acting for a patient acts for them again when
// resumeActingFor allows it. The signed-in session gets a new ID and goes to the flow's
// return path when it still passes localPath, else to its role's home; that path is the
// session's Landing, the one request from another site that confirmCrossSite lets through.
func (s *Server) finishLogin(c echo.Context) error {
	const op = "portal.finishLogin"
	ctx := c.Request().Context()
	refuse := func(why string, cause error) error {
		if cause == nil {
			return errs.E(op, errs.Unauthenticated, "sign-in refused", errors.New(why))
		}
		return errs.E(op, errs.Unauthenticated, "sign-in refused", fmt.Errorf("%s: %w", why, cause))
	}

	pre, preID := session(c)
	if pre == nil || pre.Flow == nil || pre.Role != "" {
		return refuse("no sign-in in progress", nil)
	}
	f := *pre.Flow
	// The flow is single use: drop the pre-login session before anything else, so a replayed
	// or failed callback cannot try again with it.
	if err := s.sessions.Delete(ctx, preID); err != nil {
		return err
	}
	s.clearSessionCookie(c)

	q := c.QueryParams()
	if q.Get("error") != "" {
		return refuse("the OP returned an error", nil)
	}
	if f.State == "" || subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(f.State)) != 1 {
		return refuse("state mismatch", nil)
	}
	if f.Verifier == "" || f.Nonce == "" {
		return refuse("flow without PKCE verifier or nonce", nil)
	}
	if s.now().Sub(f.Started) > s.cfg.LoginWindow {
		return refuse("sign-in took too long", nil)
	}
	code := q.Get("code")
	if code == "" {
		return refuse("no code", nil)
	}

	provider, oauth, err := s.op(ctx)
	if err != nil {
		return err
	}
	octx := oidc.ClientContext(ctx, s.hc)
	tok, err := oauth.Exchange(octx, code, oauth2.VerifierOption(f.Verifier))
	if err != nil {
		return refuse("code exchange", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return refuse("no id_token", nil)
	}
	idt, err := provider.Verifier(&oidc.Config{ClientID: s.cfg.ClientID, Now: s.now}).Verify(octx, raw)
	if err != nil {
		return refuse("id token verification", err)
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(f.Nonce)) != 1 {
		return refuse("nonce mismatch", nil)
	}
	ui, err := provider.UserInfo(octx, oauth2.StaticTokenSource(tok))
	if err != nil {
		return refuse("userinfo", err)
	}
	if ui.Subject != idt.Subject {
		return refuse("userinfo subject differs from id token subject", nil)
	}
	var claims struct {
		Name       string `json:"name"`
		GivenName  string `json:"given_name"`
		FamilyName string `json:"family_name"`
	}
	_ = ui.Claims(&claims)
	name := claims.Name
	if name == "" {
		name = strings.TrimSpace(claims.GivenName + " " + claims.FamilyName)
	}

	var auth struct {
		ACR      string   `json:"acr"`
		AMR      []string `json:"amr"`
		AuthTime int64    `json:"auth_time"`
	}
	if err := idt.Claims(&auth); err != nil {
		return refuse("id token claims", err)
	}
	sess := Session{Issuer: idt.Issuer, Subject: idt.Subject, IDToken: raw, Name: name,
		MFA: hasMFA(auth.ACR, auth.AMR, s.cfg.MFAACR), AuthTime: authTime(s.now(), idt.IssuedAt, auth.AuthTime)}
	st, err := s.staff.StaffForLogin(ctx, idt.Issuer, idt.Subject)
	switch {
	case err == nil:
		sess.Role, sess.Org, sess.OrgName, sess.Name = st.Role, st.Org, st.OrgName, st.Name
	case errs.Is(err, errs.NotFound):
		pid, err := s.identity.PersonForLogin(ctx, idt.Issuer, idt.Subject)
		switch {
		case err == nil:
			sess.Role, sess.PersonID = RolePatient, pid
		case errs.Is(err, errs.NotFound):
			sess.Role = RoleUnenrolled
		default:
			return err
		}
	default:
		return err
	}
	if err := s.loadGrants(c, &sess); err != nil {
		return err
	}
	if (sess.Role == RoleClinician || sess.Role == RoleOfficer) && !sess.MFA && !s.cfg.StaffMFAOff {
		s.log.LogAttrs(ctx, slog.LevelInfo, "portal sign-in refused: staff without a second factor",
			slog.String("request_id", requestID(c)),
			slog.String("role", string(sess.Role)),
			slog.String("org", sess.Org))
		return s.render(c, http.StatusForbidden, "mfa_required", mfaRequiredPage{Page: s.page(c, "Second factor needed"), ReturnTo: localPath(f.ReturnTo), StepUp: f.StepUp})
	}
	s.resumeActingFor(c, &sess, f)
	if f.Draft != nil && f.StepUpLogin == sess.Issuer+"|"+sess.Subject {
		sess.Draft = f.Draft
	}
	dest := homeFor(sess.Role)
	if p := localPath(f.ReturnTo); p != "" {
		dest = p
	}
	sess.Landing = dest
	id, err := s.sessions.Create(ctx, sess)
	if err != nil {
		return err
	}
	s.setSessionCookie(c, id)
	s.log.LogAttrs(ctx, slog.LevelInfo, "portal sign-in",
		slog.String("request_id", requestID(c)),
		slog.String("role", string(sess.Role)),
		slog.String("person", sess.PersonID),
		slog.String("org", sess.Org))
	return c.Redirect(http.StatusSeeOther, dest)
}

// resumeActingFor makes sess, just signed in through flow f, act for the patient f was
// acting for when its step-up began (f.ActFor): only if it is the same login (f.StepUpLogin)
// and the grant is active for it now, the check switchTo and checkProxy make. Otherwise
// sess stays the login's own, without an error: an ended grant or a different login is
// no reason to refuse the sign-in. A failed check is logged and counts as ended.
func (s *Server) resumeActingFor(c echo.Context, sess *Session, f loginFlow) {
	if f.ActFor == 0 || s.proxies == nil || (sess.Role != RolePatient && sess.Role != RoleUnenrolled) {
		return
	}
	login := sess.Issuer + "|" + sess.Subject
	if login != f.StepUpLogin {
		return
	}
	ctx := c.Request().Context()
	g, err := s.proxies.Active(ctx, f.ActFor, login, s.now())
	if err != nil {
		if !errs.Is(err, errs.NotFound) {
			s.log.LogAttrs(ctx, slog.LevelWarn, "portal sign-in: caregiver grant not checked, signed in as the login's own",
				slog.String("request_id", requestID(c)), slog.String("code", errs.CodeOf(err).String()))
		}
		return
	}
	actAs(sess, g)
}

// mfaMethods are the RFC 8176 authentication method references that show a second factor:
// "mfa" (multiple factors), "otp" (a one-time password) and "hwk" (a hardware-bound key,
// such as a security key).
var mfaMethods = []string{"mfa", "otp", "hwk"}

// hasMFA reports whether an ID token's acr and amr show a second factor: acr equals wantACR,
// or amr names one of mfaMethods.
func hasMFA(acr string, amr []string, wantACR string) bool {
	if wantACR != "" && acr == wantACR {
		return true
	}
	for _, m := range amr {
		if slices.Contains(mfaMethods, m) {
			return true
		}
	}
	return false
}

// mfaRequiredPage explains a refused staff sign-in and offers one with a second factor.
type mfaRequiredPage struct {
	Page
	ReturnTo string // the refused sign-in's return path, carried into the next attempt
	StepUp   bool   // the refused sign-in was a step-up: so is the next attempt
}

// authTime returns when the user authenticated, on this server's clock (now): the ID
// token's auth_time is on the OP's clock, so its distance from the token's iat (same clock)
// is taken back from now. Every authorization request asks for max_age (startLogin), so the
// OP must say when it authenticated (OpenID Connect Core §3.1.2.1); a token without
// auth_time, or without iat to measure it against, gives the zero time: a sign-in that is
// never recent enough for step-up, whatever was asked.
func authTime(now, issuedAt time.Time, claim int64) time.Time {
	if claim <= 0 || issuedAt.IsZero() {
		return time.Time{}
	}
	age := issuedAt.Sub(time.Unix(claim, 0))
	if age < 0 {
		age = 0
	}
	return now.Add(-age)
}
