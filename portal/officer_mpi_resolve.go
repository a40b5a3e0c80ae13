package portal

import (
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/internal/errs"
)

// mpiResolveForm is an officer's decision on one MPI review item.
type mpiResolveForm struct {
	ID       int64
	Decision string // "link" or "keep-apart"
}

// Validate checks that the form names an item and a known decision.
func (f mpiResolveForm) Validate() error {
	if f.ID <= 0 || (f.Decision != "link" && f.Decision != "keep-apart") {
		return errs.E("portal.mpiResolveForm", errs.Invalid, "no review item or decision given")
	}
	return nil
}

// resolveMPIReview records the signed-in officer's decision on an MPI review item
// (CSRF-checked by the chain; the MPI audits it), then answers 303 to the reviews page with
// a flash. An unknown item is a 404; one already resolved is a conflict, which the error
// page answers with 400 like any request that cannot be done as asked.
func (s *Server) resolveMPIReview(c echo.Context) error {
	n, _ := strconv.ParseInt(c.FormValue("item"), 10, 64)
	f := mpiResolveForm{ID: n, Decision: c.FormValue("decision")}
	if err := f.Validate(); err != nil {
		return err
	}
	v := staffViewer(c)
	if err := s.privacy.ResolveMPIReview(c.Request().Context(), v, f.ID, f.Decision == "link"); err != nil {
		return err
	}
	msg := "Identity review #" + strconv.FormatInt(f.ID, 10) + ": the record was kept apart from the candidate."
	if f.Decision == "link" {
		msg = "Identity review #" + strconv.FormatInt(f.ID, 10) + ": the record was linked to the candidate."
	}
	s.setFlash(c, msg)
	return c.Redirect(http.StatusSeeOther, "/officer/reviews")
}
