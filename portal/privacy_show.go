package portal

import (
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/internal/errs"
)

type privacyPage struct {
	Page
	Orgs          []privacyOrg
	CanCaregivers bool // caregiver access is offered
	OptedOut      bool // the patient opted out of sharing for treatment
}

// privacyOrg is what one member organization would see for treatment.
type privacyOrg struct {
	ID      string
	Name    string
	Shared  int // classes allowed
	Classes []privacyClass
	// The patient's choices for this organization.
	Denied, Sensitive bool
}

type privacyClass struct {
	Title       string
	Allow       bool
	Explanation string // consent's plain-language explanation, with display names
	DecidedBy   string // "Decided by your choice of 12 March 2026 (version 3)", "Decided by the regional … policy (version 1)", or ""
}

// showPrivacy is "Sharing and privacy": for each member organization, what a clinician
// there would see of the patient's record for treatment, now, class by class, with the
// explanation consent.Preview gives (the same text the officer's preview shows). It reads
// consent only: nothing is disclosed, so nothing is audited.
func (s *Server) showPrivacy(c echo.Context) error {
	sess, _ := session(c)
	ctx := c.Request().Context()
	names, err := s.privacy.MemberNames(ctx)
	if err != nil {
		return err
	}
	dirs, err := s.privacy.Directives(ctx, sess.PersonID)
	if err != nil {
		return err
	}
	p := privacyPage{Page: s.page(c, "Sharing and privacy"), Orgs: sharingPreview(dirs, names, sess.PersonID, s.now(), s.cfg.Location),
		CanCaregivers: s.proxies != nil, OptedOut: choiceActive(dirs, sess.PersonID, choiceOptOut, "")}
	for i := range p.Orgs {
		p.Orgs[i].Denied = choiceActive(dirs, sess.PersonID, choiceDenyOrg, p.Orgs[i].ID)
		p.Orgs[i].Sensitive = choiceActive(dirs, sess.PersonID, choiceSensitive, p.Orgs[i].ID)
	}
	p.Flash = s.takeFlash(c)
	return s.render(c, http.StatusOK, "privacy", p)
}

// sharingPreview decides, for every member and each standard class, a clinician's TREAT
// request for person at now, ordered by member name.
func sharingPreview(dirs []consent.Directive, names map[string]string, person string, now time.Time, loc *time.Location) []privacyOrg {
	orgName := func(ref string) string {
		if id, ok := strings.CutPrefix(ref, "Organization/"); ok {
			return names[id]
		}
		return ""
	}
	var orgs []privacyOrg
	for id, name := range names {
		if name == "" {
			name = id
		}
		o := privacyOrg{ID: id, Name: name}
		req := consent.Request{ActorRole: consent.RoleClinician, Org: id, Purpose: consent.PurposeTreatment, PersonID: person, At: now}
		for _, cd := range consent.Preview(dirs, req, consent.StandardClasses()) {
			if cd.Decision.Allow {
				o.Shared++
			}
			o.Classes = append(o.Classes, privacyClass{Title: cd.Class.Title, Allow: cd.Decision.Allow,
				Explanation: cd.Decision.Explain(orgName), DecidedBy: decidedBy(byDirective(dirs, cd.Decision.By), cd.Decision.Version, loc)})
		}
		orgs = append(orgs, o)
	}
	sort.Slice(orgs, func(i, j int) bool {
		if orgs[i].Name != orgs[j].Name {
			return orgs[i].Name < orgs[j].Name
		}
		return orgs[i].ID < orgs[j].ID
	})
	return orgs
}

// byDirective finds the directive a decision names.
func byDirective(dirs []consent.Directive, id consent.DirectiveID) *consent.Directive {
	for i := range dirs {
		if dirs[i].ID == id {
			return &dirs[i]
		}
	}
	return nil
}

func decidedBy(d *consent.Directive, version int, loc *time.Location) string {
	if d == nil {
		return ""
	}
	v := " (version " + strconv.Itoa(version) + ")"
	if d.Kind == consent.KindDefault {
		t := d.Title
		if t == "" {
			t = "regional policy"
		}
		return "Decided by the " + t + v
	}
	if !d.DateTime.IsZero() {
		return "Decided by your choice of " + d.DateTime.In(loc).Format("2 January 2006") + v
	}
	return "Decided by your own choice" + v
}

// setChoice saves one of the patient's sharing choices from a button on the privacy page
// (kind, org, on) and returns to the page, which shows its effect at once. A choice that
// does not narrow sharing (choiceNarrows) needs a recent sign-in: otherwise askStepUp,
// back to the privacy page, and nothing is saved.
func (s *Server) setChoice(c echo.Context) error {
	sess, _ := session(c)
	ctx := c.Request().Context()
	kind, org, on := c.FormValue("kind"), c.FormValue("org"), c.FormValue("on") == "1"
	if !choiceNarrows(kind, on) && !s.freshAuth(sess) {
		return s.askStepUp(c, "/privacy")
	}
	if org != "" {
		names, err := s.privacy.MemberNames(ctx)
		if err != nil {
			return err
		}
		if _, ok := names[org]; !ok {
			return errs.E("portal.setChoice", errs.NotFound, "no such organization")
		}
	}
	if err := s.privacy.SetChoice(ctx, s.patientViewer(c, sess), kind, org, on, s.now()); err != nil {
		return err
	}
	s.setFlash(c, "Saved. Your choice applies from now on.")
	return c.Redirect(http.StatusSeeOther, "/privacy")
}

// choiceNarrows reports whether saving choice kind as on can only narrow what is shared:
// making a denial (opting out, or stopping one organization) or withdrawing the permit for
// sensitive information. Everything else widens sharing (withdrawing a denial, letting an
// organization see sensitive information) or is no choice the portal knows, and needs a
// recent sign-in.
func choiceNarrows(kind string, on bool) bool {
	switch kind {
	case choiceOptOut, choiceDenyOrg:
		return on
	case choiceSensitive:
		return !on
	}
	return false
}
