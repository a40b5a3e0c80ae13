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
	Now           time.Time // for ProxyGrant.Ended
	Relationships []struct{ Value, Label string }
	Ends          []option // the choices of when access ends
	MinEnd        string   // the first and last end date the form takes, 2006-01-02
	MaxEnd        string
	Form          caregiverForm
	Error         string
	NewURL        string // the invitation link, shown once
	NewExpiry     time.Time
	NewEnds       time.Time // when the new grant ends; zero for no end
	Restored      bool      // Form is a draft a step-up refused (takeDraft)
}

// maxGrantYears is how far ahead a patient may set a caregiver's end date;
// maxGuardianYears is the same for an officer registering a guardian (a parent's access
// for a newborn runs to their 18th birthday).
const (
	maxGrantYears    = 10
	maxGuardianYears = 18
)

// grantEnds are the caregiver form's choices of when access ends.
var grantEnds = []option{
	{"none", "No end date"}, {"30d", "After 30 days"}, {"90d", "After 90 days"}, {"1y", "After 1 year"}, {"date", "On a date"},
}

type caregiverForm struct {
	Name         string
	Relationship string
	Ends         string // one of grantEnds
	EndDate      string // with Ends "date": the day access ends, 2006-01-02
	// EndsAt is, after Validate, when access ends; zero for no end date.
	EndsAt time.Time
}

// Validate trims the form, works out EndsAt from the choice of end (now on the portal's
// clock, days in loc) and returns the sentence to show, or "".
func (f *caregiverForm) Validate(now time.Time, loc *time.Location) string {
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
	f.EndsAt = time.Time{}
	switch f.Ends {
	case "none":
	case "30d":
		f.EndsAt = now.Add(30 * 24 * time.Hour)
	case "90d":
		f.EndsAt = now.Add(90 * 24 * time.Hour)
	case "1y":
		f.EndsAt = now.AddDate(1, 0, 0)
	case "date":
		var msg string
		if f.EndsAt, msg = parseGrantEnd(f.EndDate, now, loc, maxGrantYears); msg != "" {
			return msg
		}
	default:
		return "Please choose when their access ends."
	}
	return ""
}

// parseGrantEnd reads s, a date typed as 2006-01-02, as the day a grant ends: access stops
// at the start of that day in loc. It returns the sentence to show when s is no such date,
// is not after today (at now), or is more than maxYears from today.
func parseGrantEnd(s string, now time.Time, loc *time.Location, maxYears int) (time.Time, string) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, "Please enter the date access ends."
	}
	d, err := time.ParseInLocation("2006-01-02", s, loc)
	if err != nil || d.Format("2006-01-02") != s {
		return time.Time{}, "Please enter the date access ends as a real date, year-month-day (for example 2027-05-14)."
	}
	today := startOfDay(now, loc)
	switch {
	case !d.After(today):
		return time.Time{}, "The date access ends must be after today."
	case d.After(today.AddDate(maxYears, 0, 0)):
		return time.Time{}, "The date access ends can be at most " + strconv.Itoa(maxYears) + " years from today."
	}
	return d, ""
}

// startOfDay returns the start of t's day in loc.
func startOfDay(t time.Time, loc *time.Location) time.Time {
	y, m, d := t.In(loc).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, loc)
}

// grantEndBounds returns the first and last dates (2006-01-02) an end date may take, for
// the date input's min and max.
func grantEndBounds(now time.Time, loc *time.Location, maxYears int) (string, string) {
	today := startOfDay(now, loc)
	return today.AddDate(0, 0, 1).Format("2006-01-02"), today.AddDate(maxYears, 0, 0).Format("2006-01-02")
}

// localGrants puts the grants' times in loc, for the page to show.
func localGrants(gs []ProxyGrant, loc *time.Location) {
	for i := range gs {
		if !gs[i].Accepted.IsZero() {
			gs[i].Accepted = gs[i].Accepted.In(loc)
		}
		if !gs[i].EndsAt.IsZero() {
			gs[i].EndsAt = gs[i].EndsAt.In(loc)
		}
	}
}

// showCaregivers lists the patient's caregivers (pending and active) with the invitation
// form.
func (s *Server) showCaregivers(c echo.Context) error {
	p := caregiversPage{Form: caregiverForm{Relationship: "caregiver", Ends: "none"}}
	if action, d, ok := s.takeDraft(c); ok && action == "/caregivers" {
		p.Form, p.Restored = caregiverFormOf(d.Get), true // an invitation a step-up refused
	}
	return s.renderCaregivers(c, http.StatusOK, p)
}

// caregiverFormOf reads an invitation form's fields through get (a request's FormValue,
// or a kept draft's Get).
func caregiverFormOf(get func(string) string) caregiverForm {
	f := caregiverForm{Name: get("name"), Relationship: get("relationship"), Ends: get("ends"), EndDate: get("end_date")}
	if f.Ends == "" {
		f.Ends = "none" // a form from before the choice existed
	}
	return f
}

func (s *Server) renderCaregivers(c echo.Context, status int, p caregiversPage) error {
	sess, _ := session(c)
	now := s.now()
	gs, err := s.proxies.Grants(c.Request().Context(), sess.PersonID, now)
	if err != nil {
		return err
	}
	localGrants(gs, s.cfg.Location)
	p.Page, p.Grants, p.Now, p.Relationships, p.Ends = s.page(c, "Caregivers"), gs, now, proxyRelationships, grantEnds
	if p.Restored {
		p.Flash = draftNote
	}
	p.MinEnd, p.MaxEnd = grantEndBounds(now, s.cfg.Location, maxGrantYears)
	p.NewExpiry = p.NewExpiry.In(s.cfg.Location)
	if !p.NewEnds.IsZero() {
		p.NewEnds = p.NewEnds.In(s.cfg.Location)
	}
	return s.render(c, status, "caregivers", p)
}

// inviteCaregiver makes an invitation link and shows it once. Only its SHA-256 is stored.
func (s *Server) inviteCaregiver(c echo.Context) error {
	sess, _ := session(c)
	f := caregiverFormOf(c.FormValue)
	now := s.now()
	if msg := f.Validate(now, s.cfg.Location); msg != "" {
		return s.renderCaregivers(c, http.StatusBadRequest, caregiversPage{Form: f, Error: msg})
	}
	token, sum, err := newInviteToken()
	if err != nil {
		return err
	}
	_, err = s.proxies.Invite(c.Request().Context(), s.patientViewer(c, sess),
		ProxyGrant{PatientName: sess.Name, CaregiverName: f.Name, Relationship: f.Relationship, EndsAt: f.EndsAt}, sum, now)
	if errs.Is(err, errs.Conflict) {
		return s.renderCaregivers(c, http.StatusBadRequest, caregiversPage{Form: f,
			Error: "You have as many caregivers as allowed. Remove one you no longer need, then try again."})
	}
	if err != nil {
		return err
	}
	return s.renderCaregivers(c, http.StatusOK, caregiversPage{Form: caregiverForm{Relationship: "caregiver", Ends: "none"},
		NewURL: s.cfg.BaseURL + "/caregiver/" + token, NewExpiry: now.Add(proxyInviteTTL), NewEnds: f.EndsAt})
}

// proxyGrantKey holds, for a caregiver's request, the grant checkProxy found active.
const proxyGrantKey = "portal.proxyGrant"

// setCaregiverSensitive turns on or off whether one caregiver sees sensitive information.
// Turning it on widens what someone else sees, so it needs a recent sign-in (askStepUp,
// back to the caregivers page); turning it off never does.
func (s *Server) setCaregiverSensitive(c echo.Context) error {
	sess, _ := session(c)
	on := c.FormValue("on") == "1"
	if on && !s.freshAuth(sess) {
		return s.askStepUp(c, "/caregivers")
	}
	id, err := strconv.ParseInt(c.FormValue("grant"), 10, 64)
	if err != nil {
		return errs.E("portal.setCaregiverSensitive", errs.NotFound, "no such caregiver")
	}
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
	EndsAt       time.Time // when the grant ends; zero for no end
	SignedIn     bool
	// ReturnTo is this page's path, for the sign-in form to come back to; "" when signed in.
	ReturnTo string
	Error    string
}

// inviteGrant resolves an invitation token from the URL; unknown, expired, revoked and
// accepted invitations, and those whose grant has ended, are the same 404.
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
	if !g.EndsAt.IsZero() {
		p.EndsAt = g.EndsAt.In(s.cfg.Location)
	}
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

// switchTo checks grant gid against the store (active now, held by this login) and makes
// the session act for its patient. A grant that is no longer active leaves the session's
// list of grants (kept since sign-in) and is the normal 404.
func (s *Server) switchTo(c echo.Context, gid int64) error {
	sess, id := session(c)
	login := sess.Issuer + "|" + sess.Subject
	g, err := s.proxies.Active(c.Request().Context(), gid, login, s.now())
	listed := func(r ProxyRef) bool { return r.Grant == gid }
	if errs.Is(err, errs.NotFound) && slices.ContainsFunc(sess.Grants, listed) {
		sess.Grants = slices.DeleteFunc(sess.Grants, listed)
		if serr := s.sessions.Save(c.Request().Context(), id, *sess); serr != nil {
			return serr
		}
	}
	if err != nil {
		return err // NotFound: not this login's, revoked or ended
	}
	actAs(sess, g)
	if err := s.sessions.Save(c.Request().Context(), id, *sess); err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/labs")
}

// actAs makes sess act for g's patient, keeping the login's own role and person to switch
// back to (unless it already acts for someone). g must be active for sess's login now.
func actAs(sess *Session, g ProxyGrant) {
	if sess.ProxyGrant == 0 {
		sess.OwnRole, sess.OwnPerson = sess.Role, sess.PersonID
	}
	sess.Role, sess.PersonID, sess.ProxyGrant, sess.ActingFor = RoleProxy, g.PersonID, g.ID, g.PatientName
}

// restoreOwn makes sess the login's own again.
func restoreOwn(sess *Session) {
	sess.Role, sess.PersonID = sess.OwnRole, sess.OwnPerson
	sess.ProxyGrant, sess.ActingFor, sess.OwnRole, sess.OwnPerson = 0, "", "", ""
}

// checkProxy runs after checkLogin: a caregiver's session is checked against its grant on
// every request but signing in and out (see signInChain), so a revocation, or the grant's end date passing, takes effect at the
// caregiver's next click, however old the session. A grant no longer active returns the
// session to the login's own role and sends them home with a note.
func (s *Server) checkProxy(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		sess, id := session(c)
		if s.proxies == nil || sess == nil || sess.Role != RoleProxy {
			return next(c)
		}
		g, err := s.proxies.Active(c.Request().Context(), sess.ProxyGrant, sess.Issuer+"|"+sess.Subject, s.now())
		if err == nil {
			c.Set(proxyGrantKey, g) // read by patientViewer: this request's grant, as of now
			return next(c)
		}
		if !errs.Is(err, errs.NotFound) {
			return err
		}
		name, gid := sess.ActingFor, sess.ProxyGrant
		restoreOwn(sess)
		sess.Grants = slices.DeleteFunc(sess.Grants, func(r ProxyRef) bool { return r.Grant == gid })
		sess.Flash = "Your access to " + name + "'s record has ended."
		if err := s.sessions.Save(c.Request().Context(), id, *sess); err != nil {
			return err
		}
		return c.Redirect(http.StatusSeeOther, homeFor(sess.Role))
	}
}

// loadGrants fills sess.Grants for a login at sign-in, leaving out grants that have ended.
// The list is only what the switcher offers: every switch and every request as a caregiver
// checks the grant again.
func (s *Server) loadGrants(c echo.Context, sess *Session) error {
	if s.proxies == nil || (sess.Role != RolePatient && sess.Role != RoleUnenrolled) {
		return nil
	}
	gs, err := s.proxies.ActingFor(c.Request().Context(), sess.Issuer+"|"+sess.Subject)
	if err != nil {
		return err
	}
	now := s.now()
	for _, g := range gs {
		if !g.Ended(now) {
			sess.Grants = append(sess.Grants, ProxyRef{Grant: g.ID, Name: g.PatientName})
		}
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
