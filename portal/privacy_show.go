package portal

import (
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/consent"
)

type privacyPage struct {
	Page
	Orgs          []privacyOrg
	CanCaregivers bool // caregiver access is offered
}

// privacyOrg is what one member organization would see for treatment.
type privacyOrg struct {
	ID      string
	Name    string
	Shared  int // classes allowed
	Classes []privacyClass
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
		CanCaregivers: s.proxies != nil}
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
