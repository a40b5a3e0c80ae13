package portal

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/internal/errs"
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
	Org string // source record's member display name
}

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
		p.MPI = append(p.MPI, mpiRow{MPIReview: m, Org: name(m.Member)})
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
