package portal

import (
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/internal/errs"
)

// consentPage is the officer's view of one person's consent directives, with the form that
// records a signed paper form.
type consentPage struct {
	Page
	Patient string // the person ID looked up; "" before a look-up
	Looked  bool
	Current []consentRow // the latest version of each of the person's directives
	History []consentRow // every version, newest first
	Members []memberOption
	Kinds   []option
	Form    paperForm
	Error   string
	// Guardians: the person's caregiver grants and the form that registers a parent or
	// legal guardian (offered when the portal keeps caregivers).
	CanGuardians  bool
	Grants        []ProxyGrant
	Now           time.Time // for ProxyGrant.Ended
	Guardian      guardianForm
	GuardianError string
	MinEnd        string // the first and last end date the form takes, 2006-01-02
	MaxEnd        string
	NewURL        string // a registration's invitation link, shown once
	NewExpiry     time.Time
	NewEnds       time.Time // when the new grant ends; zero for no end
}

// guardianForm is what the officer typed to register a guardian. EndDate is the day the
// access ends (2006-01-02): for a parent of a child, the child's 18th birthday; for a legal
// guardian, the court order's review date, or "" for none.
type guardianForm struct {
	PatientName, Name, Relationship, Evidence, EndDate string
}

// consentRow is one version of a directive, in words.
type consentRow struct {
	Title, Org, Status, Signed, Source, Recorded string
	Version                                      int
	Active                                       bool
}

// guardianFormOf reads a guardian form's fields through get (a request's FormValue, or a
// kept draft's Get).
func guardianFormOf(get func(string) string) guardianForm {
	return guardianForm{PatientName: strings.TrimSpace(get("patient_name")), Name: strings.TrimSpace(get("name")),
		Relationship: get("relationship"), Evidence: strings.TrimSpace(get("evidence")), EndDate: strings.TrimSpace(get("end_date"))}
}

// paperForm is what the officer typed into the record form, shown back on an error.
type paperForm struct {
	Kind, Org, Action, Signed, FormRef string
}

// paperFormOf reads a paper-consent form's fields through get, as guardianFormOf does.
func paperFormOf(get func(string) string) paperForm {
	return paperForm{Kind: get("kind"), Org: get("org"), Action: get("action"),
		Signed: strings.TrimSpace(get("signed")), FormRef: strings.TrimSpace(get("formref"))}
}

var paperKinds = []option{
	{choiceOptOut, "Opt out: do not share for treatment"},
	{choiceDenyOrg, "Do not share with one organization"},
	{choiceSensitive, "Share sensitive information with one organization"},
	{choicePart2, "42 CFR Part 2: share substance use treatment records with one organization"},
}

// showOfficerConsent is the privacy officer's consent page for a person (?patient=, a
// person ID): the directives in force and every earlier version, and a form to record a
// consent the patient signed on paper. Reading the directives is audited (action read of
// Consent, purpose operations), so the patient's access log shows it.
func (s *Server) showOfficerConsent(c echo.Context) error {
	person := strings.TrimSpace(c.QueryParam("patient"))
	p, err := s.officerConsentPage(c, person, paperForm{Action: "on"})
	if err != nil {
		return err
	}
	p.Flash = s.takeFlash(c)
	// A form a step-up refused comes back as it was typed, for this person only.
	if action, d, ok := s.takeDraft(c); ok && d.Get("patient") == person && p.Looked {
		switch action {
		case "/officer/consent":
			p.Form, p.Flash = paperFormOf(d.Get), draftNote
		case "/officer/guardians":
			p.Guardian, p.Flash = guardianFormOf(d.Get), draftNote
		}
	}
	status := http.StatusOK
	if p.Error != "" {
		status = http.StatusBadRequest
	}
	return s.render(c, status, "officer_consent", p)
}

// officerConsentPage builds the page for person with form f; a person ID that cannot be
// one, or names nobody, is an error on the page, not an error page.
func (s *Server) officerConsentPage(c echo.Context, person string, f paperForm) (consentPage, error) {
	ctx := c.Request().Context()
	names, err := s.privacy.MemberNames(ctx)
	if err != nil {
		return consentPage{}, err
	}
	p := consentPage{Page: s.page(c, "Consent directives"), Patient: person, Members: memberOptions(names), Kinds: paperKinds, Form: f,
		Guardian: guardianForm{Relationship: "parent"}}
	if person == "" {
		return p, nil
	}
	if len(person) > 64 {
		p.Error = "The person ID is too long."
		return p, nil
	}
	v := staffViewer(c)
	versions, err := s.privacy.ConsentHistory(ctx, v, person)
	if err != nil {
		return consentPage{}, err
	}
	p.Looked = true
	if s.proxies != nil {
		p.CanGuardians, p.Now = true, s.now()
		if p.Grants, err = s.proxies.Grants(ctx, person, p.Now); err != nil {
			return consentPage{}, err
		}
		localGrants(p.Grants, s.cfg.Location)
		p.MinEnd, p.MaxEnd = grantEndBounds(p.Now, s.cfg.Location, maxGuardianYears)
	}
	latest := map[consent.DirectiveID]consentRow{}
	for _, ver := range versions {
		r := s.consentRow(ver, names)
		p.History = append(p.History, r)
		latest[ver.Directive.ID] = r // History is oldest first: the last one stays
	}
	for _, r := range latest {
		p.Current = append(p.Current, r)
	}
	sort.Slice(p.Current, func(i, j int) bool {
		if p.Current[i].Active != p.Current[j].Active {
			return p.Current[i].Active
		}
		return p.Current[i].Title+p.Current[i].Org < p.Current[j].Title+p.Current[j].Org
	})
	for i, j := 0, len(p.History)-1; i < j; i, j = i+1, j-1 {
		p.History[i], p.History[j] = p.History[j], p.History[i]
	}
	return p, nil
}

// consentRow puts one version in words: whom it names, whether it is in force, where it
// came from.
func (s *Server) consentRow(ver consent.Version, names map[string]string) consentRow {
	d := ver.Directive
	r := consentRow{Title: d.Title, Version: d.Version, Active: d.Status == consent.StatusActive,
		Recorded: ver.ValidFrom.In(s.cfg.Location).Format("2 Jan 2006 15:04")}
	if r.Title == "" {
		r.Title = "Consent directive " + string(d.ID)
	}
	for _, a := range d.Provision.Actors {
		if id, ok := strings.CutPrefix(a.Reference, "Organization/"); ok {
			r.Org = names[id]
			if r.Org == "" {
				r.Org = id
			}
		}
	}
	r.Status = "Withdrawn"
	if r.Active {
		r.Status = "In force"
	}
	if !ver.ValidTo.IsZero() {
		r.Status += " (replaced " + ver.ValidTo.In(s.cfg.Location).Format("2 Jan 2006") + ")"
	}
	if !d.DateTime.IsZero() {
		r.Signed = d.DateTime.In(s.cfg.Location).Format("2 Jan 2006")
	}
	switch {
	case d.SourceAttachment != nil && d.SourceAttachment.Title != "":
		r.Source = d.SourceAttachment.Title
	case d.SourceReference != "":
		r.Source = "Form in " + d.SourceReference
	case strings.HasPrefix(string(d.ID), "pc-"):
		r.Source = "Patient portal"
	default:
		r.Source = "Member system (FHIR Consent)"
	}
	return r
}

// recordPaperConsent records a consent form the patient signed on paper (CSRF-checked by
// the chain) as a new version of the choice it makes or withdraws, audited, in force for
// the next request; then 303 back to the person's page with a flash. A form the store
// refuses (bad date, unknown person, nothing to withdraw) comes back on the page, 400.
func (s *Server) recordPaperConsent(c echo.Context) error {
	ctx := c.Request().Context()
	person := strings.TrimSpace(c.FormValue("patient"))
	f := paperFormOf(c.FormValue)
	if f.Kind == choiceOptOut {
		f.Org = ""
	}
	pc := PaperConsent{Person: person, Kind: f.Kind, Org: f.Org, On: f.Action != "off", FormRef: f.FormRef}
	var problem string
	signed, err := time.ParseInLocation("2006-01-02", f.Signed, s.cfg.Location)
	switch {
	case !slices.ContainsFunc(paperKinds, func(o option) bool { return o.Value == f.Kind }):
		problem = "Choose what the form says."
	case f.Action != "on" && f.Action != "off":
		problem = "Choose whether the form gives or withdraws the choice."
	case err != nil:
		problem = "Enter the date the form was signed."
	case f.Kind != choiceOptOut && f.Org == "":
		problem = "Choose the organization the form names."
	}
	if problem == "" && f.Org != "" {
		names, err := s.privacy.MemberNames(ctx)
		if err != nil {
			return err
		}
		if names[f.Org] == "" {
			problem = "Choose the organization the form names."
		}
	}
	if problem == "" {
		pc.Signed = signed
		v := staffViewer(c)
		saved, err := s.privacy.RecordPaperConsent(ctx, v, pc, s.now())
		if err == nil {
			s.setFlash(c, "Recorded as version "+strconv.Itoa(saved.Version)+" of “"+saved.Title+"”. It applies from the next request.")
			return c.Redirect(http.StatusSeeOther, "/officer/consent?patient="+url.QueryEscape(person))
		}
		switch msg := errs.MessageOf(err); errs.CodeOf(err) {
		case errs.Invalid, errs.Conflict, errs.NotFound:
			if msg == "" {
				return err
			}
			problem = strings.ToUpper(msg[:1]) + msg[1:] + "."
		default:
			return err
		}
	}
	p, err := s.officerConsentPage(c, person, f)
	if err != nil {
		return err
	}
	p.Error = problem
	return s.render(c, http.StatusBadRequest, "officer_consent", p)
}

// registerGuardian registers a parent or legal guardian for the person (CSRF-checked by the
// chain) after the officer checked the documents, and shows the invitation link once, for
// the officer to hand over; the guardian accepts it with their own login like any
// caregiver. The officer gives the day the access ends (a child's 18th birthday, a court
// order's review date), or none. A refused form comes back on the page, 400.
func (s *Server) registerGuardian(c echo.Context) error {
	if s.proxies == nil {
		return errs.E("portal.registerGuardian", errs.NotFound, "no such page")
	}
	person := strings.TrimSpace(c.FormValue("patient"))
	f := guardianFormOf(c.FormValue)
	now := s.now()
	var ends time.Time
	var problem string
	switch {
	case f.PatientName == "" || len(f.PatientName) > 100:
		problem = "Enter the patient's name as the guardian should see it (at most 100 characters)."
	case f.Name == "" || len(f.Name) > 100:
		problem = "Enter the guardian's name (at most 100 characters)."
	case f.Relationship != "parent" && f.Relationship != "guardian":
		problem = "Choose parent or legal guardian."
	case f.Evidence == "" || len(f.Evidence) > 64 || !printable(f.Evidence):
		problem = "Enter the reference of the documents you checked (1 to 64 characters)."
	case f.EndDate == "" && f.Relationship == "parent":
		// A parent acts for a child: the access must end when the child comes of age.
		problem = "Enter the day a parent's access ends: the child's 18th birthday."
	case f.EndDate != "":
		ends, problem = parseGrantEnd(f.EndDate, now, s.cfg.Location, maxGuardianYears)
	}
	var link string
	var expiry time.Time
	if problem == "" {
		token, sum, err := newInviteToken()
		if err != nil {
			return err
		}
		_, err = s.proxies.Invite(c.Request().Context(), staffViewer(c),
			ProxyGrant{PersonID: person, PatientName: f.PatientName, CaregiverName: f.Name, Relationship: f.Relationship,
				Evidence: f.Evidence, EndsAt: ends}, sum, now)
		switch {
		case err == nil:
			link, expiry = s.cfg.BaseURL+"/caregiver/"+token, now.Add(proxyInviteTTL)
			f = guardianForm{Relationship: "parent"}
		case errs.Is(err, errs.NotFound):
			problem = "No such person."
		case errs.Is(err, errs.Conflict):
			problem = "This person has as many caregivers as allowed. Remove one first."
		default:
			return err
		}
	}
	p, err := s.officerConsentPage(c, person, paperForm{Action: "on"})
	if err != nil {
		return err
	}
	p.Guardian, p.GuardianError, p.NewURL, p.NewExpiry = f, problem, link, expiry.In(s.cfg.Location)
	if link != "" && !ends.IsZero() {
		p.NewEnds = ends.In(s.cfg.Location)
	}
	status := http.StatusOK
	if problem != "" {
		status = http.StatusBadRequest
	}
	return s.render(c, status, "officer_consent", p)
}

// revokeGuardian ends one caregiver grant of the person at once (CSRF-checked by the chain)
// and returns to the person's page.
func (s *Server) revokeGuardian(c echo.Context) error {
	person := strings.TrimSpace(c.FormValue("patient"))
	id, err := strconv.ParseInt(c.FormValue("grant"), 10, 64)
	if s.proxies == nil || err != nil || person == "" {
		return errs.E("portal.revokeGuardian", errs.NotFound, "no such caregiver")
	}
	v := staffViewer(c)
	v.PersonID = person
	if err := s.proxies.Revoke(c.Request().Context(), v, id, s.now()); err != nil {
		return err
	}
	s.setFlash(c, "Access removed. They can no longer see this person's record.")
	return c.Redirect(http.StatusSeeOther, "/officer/consent?patient="+url.QueryEscape(person))
}
