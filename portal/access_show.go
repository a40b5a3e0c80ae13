package portal

import (
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/consent"
)

type accessPage struct {
	Page
	From, To string // the filter as typed, YYYY-MM-DD
	Error    string // a filter the page could not use
	Rows     []accessRow
	Capped   bool // the log hit its row limit: narrow the dates
}

// accessRow is one access in plain words.
type accessRow struct {
	Time       time.Time
	Org        string // member display name
	Role       string
	Purpose    string
	Action     string
	Data       string
	BreakGlass bool
	ShareLink  bool
}

// accessLogLimit is audit.AccessLog's row cap: reaching it means "narrow the period".
const accessLogLimit = 10000

// showAccess is "Who viewed my record": the signed-in patient's own access log, newest
// first, filtered by date. Only the session's person ID is ever asked for. Reading it is
// itself audited by Privacy.AccessLog (one audit.AuditQuery event, actor the patient's login)
// before the rows are shown, as an officer's audit search is.
func (s *Server) showAccess(c echo.Context) error {
	sess, _ := session(c)
	p := accessPage{Page: s.page(c, "Who viewed your record")}
	loc := s.cfg.Location
	p.From, p.To = strings.TrimSpace(c.QueryParam("from")), strings.TrimSpace(c.QueryParam("to"))
	from, to, ok := parseDateRange(p.From, p.To, loc)
	if !ok {
		p.Error = "Please enter dates as year-month-day, for example 2026-03-31, with the first date not after the second."
		return s.render(c, http.StatusBadRequest, "access", p)
	}
	ctx := c.Request().Context()
	names, err := s.privacy.MemberNames(ctx)
	if err != nil {
		return err
	}
	v := Viewer{PersonID: sess.PersonID, Role: sess.Role, Actor: sess.Issuer + "|" + sess.Subject, RequestID: requestID(c), SourceIP: c.RealIP()}
	acc, err := s.privacy.AccessLog(ctx, v, sess.PersonID, from, to)
	if err != nil {
		return err
	}
	p.Capped = len(acc) >= accessLogLimit
	for _, a := range acc {
		p.Rows = append(p.Rows, accessRowOf(a, names, loc))
	}
	return s.render(c, http.StatusOK, "access", p)
}

// parseDateRange parses optional YYYY-MM-DD dates in loc: from is the start of its day, to
// the end of its day. ok is false for a malformed date or from after to.
func parseDateRange(fs, ts string, loc *time.Location) (from, to time.Time, ok bool) {
	var err error
	if fs != "" {
		if from, err = time.ParseInLocation("2006-01-02", fs, loc); err != nil {
			return time.Time{}, time.Time{}, false
		}
	}
	if ts != "" {
		if to, err = time.ParseInLocation("2006-01-02", ts, loc); err != nil {
			return time.Time{}, time.Time{}, false
		}
		to = to.AddDate(0, 0, 1).Add(-time.Microsecond)
	}
	if !from.IsZero() && !to.IsZero() && from.After(to) {
		return time.Time{}, time.Time{}, false
	}
	return from, to, true
}

func accessRowOf(a audit.Access, names map[string]string, loc *time.Location) accessRow {
	r := accessRow{Time: a.Time.In(loc), Role: roleWords(a.Role), Purpose: purposeWords(a.Purpose),
		Action: actionWords(a.Action), BreakGlass: a.BreakGlass || a.Purpose == consent.PurposeBreakGlass || a.Action == audit.BreakGlass,
		ShareLink: a.ShareLink}
	switch {
	case a.Org != "" && names[a.Org] != "":
		r.Org = names[a.Org]
	case a.Org != "":
		r.Org = a.Org
	case a.ShareLink:
		r.Org = "Someone using your share link"
	case a.Role == consent.RolePatient:
		r.Org = "You"
	default:
		r.Org = "Concord"
	}
	if a.ShareLink && a.Role == "" {
		r.Role = "Share link holder"
	}
	var classes []string
	for _, t := range a.DataClasses {
		classes = append(classes, dataWords(t))
	}
	r.Data = strings.Join(classes, ", ")
	return r
}

// purposeWords names a v3-ActReason purpose of use in plain words.
func purposeWords(p string) string {
	switch p {
	case consent.PurposeTreatment:
		return "Treatment"
	case consent.PurposeEmergencyTreatment:
		return "Emergency treatment"
	case consent.PurposeBreakGlass:
		return "Emergency access"
	case consent.PurposePatientRequest:
		return "Your own request"
	case consent.PurposePayment:
		return "Payment"
	case consent.PurposeOperations:
		return "Health care operations"
	case consent.PurposePublicHealth:
		return "Public health"
	case "":
		return "Not stated"
	default:
		return p
	}
}

// roleWords names an actor role in plain words.
func roleWords(r string) string {
	switch r {
	case consent.RoleClinician:
		return "Clinician"
	case consent.RoleSystem:
		return "Organization's computer system"
	case consent.RolePatient:
		return "You"
	case consent.RoleProxy:
		return "Your representative"
	case consent.RoleOfficer:
		return "Privacy officer"
	case consent.RoleShare:
		return "Share link holder"
	case "":
		return "Not stated"
	default:
		return r
	}
}

// actionWords names what an access did.
func actionWords(a audit.Action) string {
	switch a {
	case audit.Read:
		return "Viewed"
	case audit.Query:
		return "Searched"
	case audit.Disclosure:
		return "Received a copy"
	case audit.Export:
		return "Exported"
	case audit.BreakGlass:
		return "Declared emergency access"
	default:
		return string(a)
	}
}

// dataWords names a FHIR resource type as a class of data.
func dataWords(t string) string {
	switch t {
	case "Observation":
		return "Lab results and measurements"
	case "Condition":
		return "Problems and diagnoses"
	case "MedicationRequest", "MedicationStatement", "MedicationAdministration":
		return "Medications"
	case "AllergyIntolerance":
		return "Allergies"
	case "Immunization":
		return "Immunizations"
	case "DocumentReference", "Binary":
		return "Documents"
	case "Encounter":
		return "Visits"
	case "Patient":
		return "Your details"
	case "DiagnosticReport":
		return "Test reports"
	case "Procedure":
		return "Procedures"
	default:
		return t
	}
}
