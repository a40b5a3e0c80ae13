package portal

import (
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/consent"
)

type simulatePage struct {
	Page
	Form     simulateForm
	Members  []memberOption
	Roles    []option
	Purposes []option
	Error    string
	Classes  []privacyClass
	Ran      bool
	OrgName  string
	AtText   string // the moment decided, as shown
}

type option struct{ Value, Label string }

type simulateForm struct {
	Patient, Org, Role, Purpose, At string // At: YYYY-MM-DDTHH:MM in the portal's zone, "" for now
}

var simulateRoles = []option{{consent.RoleClinician, "Clinician"}, {consent.RoleSystem, "Member system"}, {consent.RolePatient, "The patient"}, {consent.RoleProxy, "A caregiver (proxy)"}}

var simulatePurposes = []option{{consent.PurposeTreatment, "Treatment"}, {consent.PurposeEmergencyTreatment, "Emergency treatment"},
	{consent.PurposePayment, "Payment"}, {consent.PurposeOperations, "Health care operations"}, {consent.PurposePublicHealth, "Public health"},
	{consent.PurposePatientRequest, "The patient's own request"}}

// showOfficerSimulate is the officer's consent simulator: what an actor of a member, in a
// role and for a purpose, would see of a person's record at a moment (now, or as of a past
// time from the directives then in force), class by class, with the explanation the patient
// reads. It discloses no record; reading the person's directives is audited.
func (s *Server) showOfficerSimulate(c echo.Context) error {
	q := c.QueryParams()
	f := simulateForm{Patient: strings.TrimSpace(q.Get("patient")), Org: q.Get("org"), Role: q.Get("role"), Purpose: q.Get("purpose"), At: strings.TrimSpace(q.Get("at"))}
	if f.Role == "" {
		f.Role, f.Purpose = consent.RoleClinician, consent.PurposeTreatment
	}
	ctx := c.Request().Context()
	names, err := s.privacy.MemberNames(ctx)
	if err != nil {
		return err
	}
	p := simulatePage{Page: s.page(c, "Consent simulator"), Form: f, Roles: simulateRoles, Purposes: simulatePurposes}
	p.Members = memberOptions(names)
	if f.Patient == "" {
		return s.render(c, http.StatusOK, "officer_simulate", p)
	}
	at := s.now()
	if f.At != "" {
		t, err := time.ParseInLocation("2006-01-02T15:04", f.At, s.cfg.Location)
		if err != nil {
			p.Error = "Enter the moment as a date and time, or leave it empty for now."
			return s.render(c, http.StatusBadRequest, "officer_simulate", p)
		}
		at = t
	}
	switch {
	case len(f.Patient) > 64:
		p.Error = "The person ID is too long."
	case names[f.Org] == "" && f.Role != consent.RolePatient && f.Role != consent.RoleProxy:
		p.Error = "Choose the organization asking."
	case !slices.ContainsFunc(simulateRoles, func(o option) bool { return o.Value == f.Role }):
		p.Error = "Choose a role from the list."
	case !slices.ContainsFunc(simulatePurposes, func(o option) bool { return o.Value == f.Purpose }):
		p.Error = "Choose a purpose from the list."
	}
	if p.Error != "" {
		return s.render(c, http.StatusBadRequest, "officer_simulate", p)
	}
	v := staffViewer(c)
	dirs, err := s.privacy.DirectivesAt(ctx, v, f.Patient, at)
	if err != nil {
		return err
	}
	orgName := func(ref string) string {
		if id, ok := strings.CutPrefix(ref, "Organization/"); ok {
			return names[id]
		}
		return ""
	}
	req := consent.Request{ActorRole: f.Role, Org: f.Org, Purpose: f.Purpose, PersonID: f.Patient, At: at}
	for _, cd := range consent.Preview(dirs, req, consent.StandardClasses()) {
		p.Classes = append(p.Classes, privacyClass{Title: cd.Class.Title, Allow: cd.Decision.Allow,
			Explanation: cd.Decision.Explain(orgName), DecidedBy: decidedBy(byDirective(dirs, cd.Decision.By), cd.Decision.Version, s.cfg.Location)})
	}
	p.Ran, p.OrgName, p.AtText = true, names[f.Org], at.In(s.cfg.Location).Format("2 January 2006 15:04")
	return s.render(c, http.StatusOK, "officer_simulate", p)
}
