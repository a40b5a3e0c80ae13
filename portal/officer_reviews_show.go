package portal

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

type officerReviewsPage struct {
	Page
	BreakGlass []breakGlassRow
	MPI        []mpiRow
}

type breakGlassRow struct {
	BreakGlassReview
	Org string // declaring member's display name
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
	p := officerReviewsPage{Page: s.page(c, "Reviews")}
	p.Flash = s.takeFlash(c)
	name := func(id string) string {
		if n := names[id]; n != "" {
			return n
		}
		return id
	}
	for _, b := range bg {
		b.Declared, b.Expires, b.Opened = b.Declared.In(s.cfg.Location), b.Expires.In(s.cfg.Location), b.Opened.In(s.cfg.Location)
		p.BreakGlass = append(p.BreakGlass, breakGlassRow{BreakGlassReview: b, Org: name(b.Member)})
	}
	for _, m := range items {
		m.Created = m.Created.In(s.cfg.Location)
		p.MPI = append(p.MPI, mpiRow{MPIReview: m, Org: name(m.Member)})
	}
	return s.render(c, http.StatusOK, "officer_reviews", p)
}
