package portal

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/internal/errs"
)

type caregiversPage struct {
	Page
	Grants        []ProxyGrant
	Relationships []struct{ Value, Label string }
	Form          caregiverForm
	Error         string
	NewURL        string // the invitation link, shown once
	NewExpiry     time.Time
}

type caregiverForm struct {
	Name         string
	Relationship string
}

// Validate trims the form and returns the sentence to show, or "".
func (f *caregiverForm) Validate() string {
	f.Name = strings.TrimSpace(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, f.Name))
	switch {
	case f.Name == "":
		return "Please write the caregiver's name."
	case len([]rune(f.Name)) > 100:
		return "Please keep the name to 100 characters."
	case !slices.ContainsFunc(proxyRelationships, func(r struct{ Value, Label string }) bool { return r.Value == f.Relationship }):
		return "Please choose how they are related to you."
	}
	return ""
}

// showCaregivers lists the patient's caregivers (pending and active) with the invitation
// form.
func (s *Server) showCaregivers(c echo.Context) error {
	return s.renderCaregivers(c, http.StatusOK, caregiversPage{Form: caregiverForm{Relationship: "caregiver"}})
}

func (s *Server) renderCaregivers(c echo.Context, status int, p caregiversPage) error {
	sess, _ := session(c)
	gs, err := s.proxies.Grants(c.Request().Context(), sess.PersonID, s.now())
	if err != nil {
		return err
	}
	p.Page, p.Grants, p.Relationships = s.page(c, "Caregivers"), gs, proxyRelationships
	p.NewExpiry = p.NewExpiry.In(s.cfg.Location)
	return s.render(c, status, "caregivers", p)
}

// inviteCaregiver makes an invitation link and shows it once. Only its SHA-256 is stored.
func (s *Server) inviteCaregiver(c echo.Context) error {
	sess, _ := session(c)
	f := caregiverForm{Name: c.FormValue("name"), Relationship: c.FormValue("relationship")}
	if msg := f.Validate(); msg != "" {
		return s.renderCaregivers(c, http.StatusBadRequest, caregiversPage{Form: f, Error: msg})
	}
	token, sum, err := newInviteToken()
	if err != nil {
		return err
	}
	now := s.now()
	_, err = s.proxies.Invite(c.Request().Context(), s.patientViewer(c, sess),
		ProxyGrant{PatientName: sess.Name, CaregiverName: f.Name, Relationship: f.Relationship}, sum, now)
	if errs.Is(err, errs.Conflict) {
		return s.renderCaregivers(c, http.StatusBadRequest, caregiversPage{Form: f,
			Error: "You have as many caregivers as allowed. Remove one you no longer need, then try again."})
	}
	if err != nil {
		return err
	}
	return s.renderCaregivers(c, http.StatusOK, caregiversPage{Form: caregiverForm{Relationship: "caregiver"},
		NewURL: s.cfg.BaseURL + "/caregiver/" + token, NewExpiry: now.Add(proxyInviteTTL)})
}

// proxyGrantKey holds, for a caregiver's request, the grant checkProxy found active.
const proxyGrantKey = "portal.proxyGrant"

// setCaregiverSensitive turns on or off whether one caregiver sees sensitive information.
func (s *Server) setCaregiverSensitive(c echo.Context) error {
	sess, _ := session(c)
	id, err := strconv.ParseInt(c.FormValue("grant"), 10, 64)
	if err != nil {
		return errs.E("portal.setCaregiverSensitive", errs.NotFound, "no such caregiver")
	}
	on := c.FormValue("on") == "1"
	if err := s.proxies.SetSensitive(c.Request().Context(), s.patientViewer(c, sess), id, on, s.now()); err != nil {
		return err
	}
	if on {
		s.setFlash(c, "Saved. They can now see sensitive information too, from their next page.")
	} else {
		s.setFlash(c, "Saved. Sensitive information is hidden from them again, from their next page.")
	}
	return c.Redirect(http.StatusSeeOther, "/caregivers")
}

// newInviteToken returns a fresh invitation token and its SHA-256, the only form stored.
func newInviteToken() (string, []byte, error) {
	var raw [shareTokenBytes]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", nil, errs.E("portal.newInviteToken", errs.Internal, err)
	}
	token := base64.RawURLEncoding.EncodeToString(raw[:])
	sum := sha256.Sum256([]byte(token))
	return token, sum[:], nil
}

// revokeCaregiver ends a caregiver's access (or a pending invitation) at once.
func (s *Server) revokeCaregiver(c echo.Context) error {
	sess, _ := session(c)
	id, err := strconv.ParseInt(c.FormValue("grant"), 10, 64)
	if err != nil {
		return errs.E("portal.revokeCaregiver", errs.NotFound, "no such caregiver")
	}
	if err := s.proxies.Revoke(c.Request().Context(), s.patientViewer(c, sess), id, s.now()); err != nil {
		return err
	}
	s.setFlash(c, "Access removed. They can no longer see your record.")
	return c.Redirect(http.StatusSeeOther, "/caregivers")
}

type caregiverInvitePage struct {
	Page
	Token        string
	PatientName  string
	Relationship string
	SignedIn     bool
	// ReturnTo is this page's path, for the sign-in form to come back to; "" when signed in.
	ReturnTo string
	Error    string
}

// inviteGrant resolves an invitation token from the URL; unknown, expired, revoked and
// accepted invitations are the same 404.
func (s *Server) inviteGrant(c echo.Context) (ProxyGrant, []byte, error) {
	token := c.Param("token")
	if len(token) != base64URLLen(shareTokenBytes) {
		return ProxyGrant{}, nil, errs.E("portal.inviteGrant", errs.NotFound, "no such page")
	}
	sum := sha256.Sum256([]byte(token))
	g, err := s.proxies.InviteByHash(c.Request().Context(), sum[:], s.now())
	return g, sum[:], err
}

// showCaregiverInvite shows an invitation to the person it was sent to: whose record it
// opens, and a button to accept it once signed in with their own login. Signed out, its
// sign-in button carries the page's own path (return_to), so the sign-in comes back here.
func (s *Server) showCaregiverInvite(c echo.Context) error {
	g, _, err := s.inviteGrant(c)
	if err != nil {
		return err
	}
	sess, _ := session(c)
	p := caregiverInvitePage{Page: s.page(c, "Caregiver invitation"), Token: c.Param("token"), PatientName: g.PatientName,
		Relationship: relationshipLabel(g.Relationship), SignedIn: sess != nil && (sess.Role == RolePatient || sess.Role == RoleUnenrolled)}
	if !p.SignedIn {
		p.ReturnTo = "/caregiver/" + p.Token // inviteGrant accepted it: base64url only
	}
	return s.render(c, http.StatusOK, "caregiver_invite", p)
}

// acceptCaregiverInvite makes the signed-in login the caregiver of the invitation and
// switches to the patient's record.
func (s *Server) acceptCaregiverInvite(c echo.Context) error {
	sess, id := session(c)
	g, sum, err := s.inviteGrant(c)
	if err != nil {
		return err
	}
	v := s.patientViewer(c, sess)
	g, err = s.proxies.Accept(c.Request().Context(), v, sess.Name, sum, s.now())
	if errs.Is(err, errs.Invalid) || errs.Is(err, errs.Conflict) {
		p := caregiverInvitePage{Page: s.page(c, "Caregiver invitation"), Token: c.Param("token"), PatientName: g.PatientName, SignedIn: true,
			Error: "This invitation cannot be accepted with your login: it is your own, or you already have access to this record."}
		return s.render(c, http.StatusBadRequest, "caregiver_invite", p)
	}
	if err != nil {
		return err
	}
	sess.Grants = append(sess.Grants, ProxyRef{Grant: g.ID, Name: g.PatientName})
	if err := s.sessions.Save(c.Request().Context(), id, *sess); err != nil {
		return err
	}
	return s.switchTo(c, g.ID)
}

// actFor switches the session to one of the login's grants (form field grant), or back to
// the login's own role with grant "self".
func (s *Server) actFor(c echo.Context) error {
	if c.FormValue("grant") == "self" {
		sess, id := session(c)
		if sess.ProxyGrant != 0 {
			restoreOwn(sess)
			if err := s.sessions.Save(c.Request().Context(), id, *sess); err != nil {
				return err
			}
		}
		return c.Redirect(http.StatusSeeOther, homeFor(sess.Role))
	}
	gid, err := strconv.ParseInt(c.FormValue("grant"), 10, 64)
	if err != nil {
		return errs.E("portal.actFor", errs.NotFound, "no such record")
	}
	return s.switchTo(c, gid)
}

// switchTo checks grant gid against the store (active, held by this login) and makes the
// session act for its patient.
func (s *Server) switchTo(c echo.Context, gid int64) error {
	sess, id := session(c)
	login := sess.Issuer + "|" + sess.Subject
	g, err := s.proxies.Active(c.Request().Context(), gid, login)
	if err != nil {
		return err // NotFound: not this login's, or revoked
	}
	if sess.ProxyGrant == 0 {
		sess.OwnRole, sess.OwnPerson = sess.Role, sess.PersonID
	}
	sess.Role, sess.PersonID, sess.ProxyGrant, sess.ActingFor = RoleProxy, g.PersonID, g.ID, g.PatientName
	if err := s.sessions.Save(c.Request().Context(), id, *sess); err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/labs")
}

// restoreOwn makes sess the login's own again.
func restoreOwn(sess *Session) {
	sess.Role, sess.PersonID = sess.OwnRole, sess.OwnPerson
	sess.ProxyGrant, sess.ActingFor, sess.OwnRole, sess.OwnPerson = 0, "", "", ""
}

// checkProxy runs after loadSession: a caregiver's session is checked against its grant on
// every request, so a revocation takes effect at the caregiver's next click. A revoked grant
// returns the session to the login's own role and sends them home with a note.
func (s *Server) checkProxy(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		sess, id := session(c)
		if s.proxies == nil || sess == nil || sess.Role != RoleProxy {
			return next(c)
		}
		g, err := s.proxies.Active(c.Request().Context(), sess.ProxyGrant, sess.Issuer+"|"+sess.Subject)
		if err == nil {
			c.Set(proxyGrantKey, g) // read by patientViewer: this request's grant, as of now
			return next(c)
		}
		if !errs.Is(err, errs.NotFound) {
			return err
		}
		name := sess.ActingFor
		restoreOwn(sess)
		sess.Grants = slices.DeleteFunc(sess.Grants, func(r ProxyRef) bool { return r.Name == name })
		sess.Flash = "Your access to " + name + "'s record has ended."
		if err := s.sessions.Save(c.Request().Context(), id, *sess); err != nil {
			return err
		}
		return c.Redirect(http.StatusSeeOther, homeFor(sess.Role))
	}
}

// loadGrants fills sess.Grants for a login at sign-in.
func (s *Server) loadGrants(c echo.Context, sess *Session) error {
	if s.proxies == nil || (sess.Role != RolePatient && sess.Role != RoleUnenrolled) {
		return nil
	}
	gs, err := s.proxies.ActingFor(c.Request().Context(), sess.Issuer+"|"+sess.Subject)
	if err != nil {
		return err
	}
	for _, g := range gs {
		sess.Grants = append(sess.Grants, ProxyRef{Grant: g.ID, Name: g.PatientName})
	}
	return nil
}

func relationshipLabel(v string) string {
	for _, r := range proxyRelationships {
		if r.Value == v {
			return r.Label
		}
	}
	return v
}

// ownOr is a page title: own for the patient themself, the patient's name and suffix for a
// caregiver acting for them ("Ana Rivera's lab results").
func ownOr(sess *Session, own, suffix string) string {
	if sess.Role == RoleProxy && sess.ActingFor != "" {
		return sess.ActingFor + suffix
	}
	return own
}
