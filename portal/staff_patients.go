package portal

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/internal/errs"
)

// OrgPatient is one of a member organization's own patients, as its clinicians look it up:
// the organization's Patient id and MRN, the person the MPI links it to, and the name and
// birth date from the organization's own record (shown to confirm who it is; never logged).
type OrgPatient struct {
	ID        string
	MRN       string
	PersonID  string
	Name      string
	BirthDate string
}

// PatientLookup finds a member organization's own patients for its clinicians. Reading the
// organization's own Patient record is itself audited (a read of its own record).
type PatientLookup interface {
	// ByMRN returns the patient of org with medical record number mrn; errs.NotFound when
	// org has none, errs.Unavailable when the lookup or its audit event failed.
	ByMRN(ctx context.Context, v Viewer, mrn string) (OrgPatient, error)
	// ByID returns org's patient with FHIR Patient id id; errs.NotFound when org has no
	// such patient (another organization's patient is not found either).
	ByID(ctx context.Context, v Viewer, id string) (OrgPatient, error)
	// ByPerson returns org's patient linked to person personID (the first, when org holds
	// several records of the person); errs.NotFound when org holds none.
	ByPerson(ctx context.Context, v Viewer, personID string) (OrgPatient, error)
}

type staffPatientsPage struct {
	Page
	MRN   string
	Error string
}

type staffPatientPage struct {
	Page
	Patient OrgPatient
	OrgName string
	Tests   []labTest
	Summary HealthSummary
	Part2   *part2Notice
	// Emergency access: offered when the portal has it; Until is the active declaration's
	// expiry (zero when none).
	CanBreakGlass bool
	Until         time.Time
	Reasons       []string
	Error         string
	Declaration   btgForm // what the clinician chose and typed, shown again on an error
}

// btgForm is the emergency-access form's fields.
type btgForm struct{ Reason, Text string }

// staffViewer is the signed-in clinician or officer as the enforcement point and the
// stores see them, scoped to their member.
func staffViewer(c echo.Context) Viewer {
	sess, _ := session(c)
	return Viewer{Role: sess.Role, Org: sess.Org, Actor: sess.Issuer + "|" + sess.Subject, RequestID: requestID(c), SourceIP: c.RealIP()}
}

// showPatientSearch is the clinician's patient look-up form.
func (s *Server) showPatientSearch(c echo.Context) error {
	return s.render(c, http.StatusOK, "staff_patients", staffPatientsPage{Page: s.page(c, "Find a patient")})
}

// findPatient looks the MRN up among the clinician's organization's patients (a POST, so
// the MRN stays out of URLs and logs) and sends the clinician to the patient's page.
func (s *Server) findPatient(c echo.Context) error {
	mrn := strings.TrimSpace(c.FormValue("mrn"))
	p := staffPatientsPage{Page: s.page(c, "Find a patient"), MRN: mrn}
	if mrn == "" || len(mrn) > 64 {
		p.Error = "Enter the patient's medical record number (MRN) at your organization."
		return s.render(c, http.StatusBadRequest, "staff_patients", p)
	}
	pt, err := s.patients.ByMRN(c.Request().Context(), staffViewer(c), mrn)
	if errs.CodeOf(err) == errs.NotFound {
		sess, _ := session(c)
		p.Error = "Your organization (" + sess.OrgName + ") has no patient with that MRN."
		return s.render(c, http.StatusUnprocessableEntity, "staff_patients", p)
	}
	if err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/staff/patients/"+pt.ID)
}

// showStaffPatient shows one of the organization's patients and the lab results of their
// regional record that consent lets the clinician see for treatment, each labelled with the
// member that sent it. The read is decided and audited by the enforcement point.
func (s *Server) showStaffPatient(c echo.Context) error {
	var f btgForm
	restored := false
	if action, d, ok := s.takeDraft(c); ok && action == c.Request().URL.Path+"/break-glass" {
		f, restored = btgForm{Reason: d.Get("reason"), Text: d.Get("text")}, true // a declaration a step-up refused
	}
	return s.renderStaffPatient(c, http.StatusOK, "", f, restored)
}

// renderStaffPatient renders the patient's page; formError and f are the emergency-access
// form's error and fields, restored says f is a draft a step-up refused.
func (s *Server) renderStaffPatient(c echo.Context, status int, formError string, f btgForm, restored bool) error {
	ctx, v := c.Request().Context(), staffViewer(c)
	pt, err := s.patients.ByID(ctx, v, c.Param("id"))
	if err != nil {
		return err
	}
	sess, _ := session(c)
	p := staffPatientPage{Page: s.page(c, "Patient record"), Patient: pt, OrgName: sess.OrgName, CanBreakGlass: s.btg != nil,
		Reasons: consent.BreakGlassReasons(), Error: formError, Declaration: f}
	if restored {
		p.Flash = draftNote
	}
	if s.btg != nil {
		if p.Until, err = s.btg.Active(ctx, v, pt.PersonID); err != nil {
			return err
		}
		v.BreakGlass = !p.Until.IsZero()
		p.Until = p.Until.In(s.cfg.Location)
	}
	res, err := s.records.Labs(ctx, v, pt.PersonID)
	if err != nil {
		return err
	}
	if p.Summary, err = s.records.Summary(ctx, v, pt.PersonID); err != nil {
		return err
	}
	p.Tests = groupLabs(res, s.cfg.Location)
	p.Part2 = part2NoticeFor(p.Tests)
	return s.render(c, status, "staff_patient", p)
}

// breakGlass declares the clinician's emergency access to the patient on the page (reason
// code and text from the form), then shows the page again, now read under the declaration.
// The declaration opens an officer review and tells the patient.
func (s *Server) breakGlass(c echo.Context) error {
	ctx, v := c.Request().Context(), staffViewer(c)
	pt, err := s.patients.ByID(ctx, v, c.Param("id"))
	if err != nil {
		return err
	}
	f := btgForm{Reason: c.FormValue("reason"), Text: c.FormValue("text")}
	_, err = s.btg.Declare(ctx, v, pt.PersonID, f.Reason, f.Text)
	if errs.Is(err, errs.Invalid) {
		return s.renderStaffPatient(c, http.StatusBadRequest, "Choose the reason for the emergency and describe it (up to 1,000 characters).", f, false)
	}
	if err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/staff/patients/"+pt.ID)
}

// btgReasonWords names a break-the-glass reason code for the clinician.
func btgReasonWords(code string) string {
	switch code {
	case consent.BTGUnresponsive:
		return "Patient cannot communicate consent"
	case consent.BTGLifeThreatening:
		return "Immediate threat to life or limb"
	case consent.BTGUrgentTreatment:
		return "Urgent treatment needs the history now"
	case consent.BTGPoisoningOverdose:
		return "Suspected poisoning or overdose"
	case consent.BTGPublicSafety:
		return "Serious, imminent threat to others"
	}
	return code
}
