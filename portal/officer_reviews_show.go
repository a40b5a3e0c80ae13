package portal

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/mpi"
)

type officerReviewsPage struct {
	Page
	BreakGlass []breakGlassRow
	MPI        []mpiRow
	Disputes   []disputeRow
}

type disputeRow struct {
	Dispute
	Row accessRow // the disputed access in the patient's words
}

type breakGlassRow struct {
	BreakGlassReview
	Org      string // declaring member's display name
	User     string // the declaring login's subject (or whole actor), "" for a system
	UserFrom string // the declaring login's issuer, shown on hover
	Reason   string // the reason code in words
}

type mpiRow struct {
	MPIReview
	Org      string        // source record's member display name
	Evidence []mpiEvidence // Fields as the officer reads them
}

// mpiEvidence is one field's comparison in words.
type mpiEvidence struct {
	Label  string // the field ("Date of birth"), mpiFieldLabel
	Level  string // how the two values agree ("Day and month swapped"), mpiLevelWords
	Code   string // the model's field and level ("birthDate level 2"), shown on hover
	Weight float64
}

// mpiEvidenceOf puts per-field evidence in words, in the model's field order.
func mpiEvidenceOf(fs []MPIField) []mpiEvidence {
	out := make([]mpiEvidence, 0, len(fs))
	for _, f := range fs {
		out = append(out, mpiEvidence{Label: mpiFieldLabel(f.Name), Level: mpiLevelWords(f.Name, f.Level),
			Code: f.Name + " level " + strconv.Itoa(f.Level), Weight: f.Weight})
	}
	return out
}

// mpiFieldLabel names a field of mpi.FieldNames for a person ("family" is "Family name");
// a name it does not know comes back as it is.
func mpiFieldLabel(name string) string {
	switch name {
	case "given":
		return "Given name"
	case "family":
		return "Family name"
	case "birthDate":
		return "Date of birth"
	case "ssn":
		return "Social Security number"
	case "phone":
		return "Phone number"
	case "address":
		return "Address"
	case "city":
		return "City"
	case "sex":
		return "Sex"
	}
	return name
}

// mpiLevelWords says how the two records' values of field name agree at comparison level;
// a level it does not know is "Level n".
func mpiLevelWords(name string, level int) string {
	if level == 0 { // level 0 is null for every field
		return "Missing on one side"
	}
	if w, ok := mpiLevels[name][level]; ok {
		return w
	}
	return "Level " + strconv.Itoa(level)
}

// mpiLevels words mpi.Compare's levels per field, level 0 (null) aside: the Name*, DOB*,
// SSN* and Addr* constants; phone, city and sex are numbered in mpi.compareCheap and
// mpi.compareNames.
var mpiLevels = map[string]map[int]string{
	"given":  mpiNameLevels,
	"family": mpiNameLevels,
	"birthDate": {mpi.DOBExact: "Same", mpi.DOBDayMonthSwapped: "Day and month swapped", mpi.DOBOneEdit: "One digit different",
		mpi.DOBYearMonth: "Same year and month", mpi.DOBYearOff: "Same day and month, year one apart", mpi.DOBElse: "Different"},
	"ssn": {mpi.SSNExact: "Same", mpi.SSNLast4: "Same last four digits", mpi.SSNOneEdit: "One digit different", mpi.SSNElse: "Different"},
	"address": {mpi.AddrStreet: "Same house number and street", mpi.AddrNearZIP: "Same ZIP code, and house number or similar street",
		mpi.AddrZIP: "Same ZIP code only", mpi.AddrElse: "Different"},
	"city":  {1: "Same", 2: "Similar spelling", 3: "Different"},
	"phone": {1: "Same", 2: "Different"},
	"sex":   {1: "Same", 2: "Different"},
}

var mpiNameLevels = map[int]string{mpi.NameExact: "Same", mpi.NameNickname: "Nickname of the same name",
	mpi.NameJW92: "Nearly the same spelling", mpi.NameJW88: "Similar spelling", mpi.NameMetaphone: "Sounds the same",
	mpi.NameJW70: "Somewhat similar spelling", mpi.NameInitial: "Same initial", mpi.NameSwapped: "Given and family names swapped",
	mpi.NameElse: "Different"}

// showOfficerReviews lists the open break-the-glass reviews (each with a form to close it)
// and the open MPI review items with their score, guards and per-field evidence.
func (s *Server) showOfficerReviews(c echo.Context) error {
	ctx := c.Request().Context()
	names, err := s.privacy.MemberNames(ctx)
	if err != nil {
		return err
	}
	bg, err := s.privacy.BreakGlassReviews(ctx)
	if err != nil {
		return err
	}
	items, err := s.privacy.MPIReviews(ctx, 100)
	if err != nil {
		return err
	}
	ds, err := s.privacy.OpenDisputes(ctx)
	if err != nil {
		return err
	}
	p := officerReviewsPage{Page: s.page(c, "Reviews")}
	for _, d := range ds {
		d.Created = d.Created.In(s.cfg.Location)
		p.Disputes = append(p.Disputes, disputeRow{Dispute: d, Row: accessRowOf(d.Access, names, s.cfg.Location, false)})
	}
	p.Flash = s.takeFlash(c)
	name := func(id string) string {
		if n := names[id]; n != "" {
			return n
		}
		return id
	}
	for _, b := range bg {
		b.Declared, b.Expires, b.Opened = b.Declared.In(s.cfg.Location), b.Expires.In(s.cfg.Location), b.Opened.In(s.cfg.Location)
		from, user := splitActor(b.Actor)
		p.BreakGlass = append(p.BreakGlass, breakGlassRow{BreakGlassReview: b, Org: name(b.Member), User: user, UserFrom: from,
			Reason: btgReasonWords(b.ReasonCode)})
	}
	for _, m := range items {
		m.Created = m.Created.In(s.cfg.Location)
		p.MPI = append(p.MPI, mpiRow{MPIReview: m, Org: name(m.Member), Evidence: mpiEvidenceOf(m.Fields)})
	}
	return s.render(c, http.StatusOK, "officer_reviews", p)
}

// closeDispute closes a patient's report of an access with the officer's resolution, which
// the patient then reads in their access log.
func (s *Server) closeDispute(c echo.Context) error {
	id, err := strconv.ParseInt(c.FormValue("dispute"), 10, 64)
	if err != nil {
		return errs.E("portal.closeDispute", errs.NotFound, "no such report")
	}
	resolution := strings.TrimSpace(c.FormValue("resolution"))
	if resolution == "" || len([]rune(resolution)) > 1000 {
		s.setFlash(c, "Write a resolution for the patient (up to 1,000 characters) before closing the report.")
		return c.Redirect(http.StatusSeeOther, "/officer/reviews")
	}
	v := staffViewer(c)
	if err := s.privacy.CloseDispute(c.Request().Context(), v, id, resolution); err != nil {
		return err
	}
	s.setFlash(c, "Report closed. The patient sees your resolution in their access log.")
	return c.Redirect(http.StatusSeeOther, "/officer/reviews")
}
