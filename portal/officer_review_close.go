package portal

import (
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/internal/errs"
)

// reviewCloseForm closes one break-the-glass review task.
type reviewCloseForm struct {
	ID int64
}

// Validate checks that the form names a task.
func (f reviewCloseForm) Validate() error {
	if f.ID <= 0 {
		return errs.E("portal.reviewCloseForm", errs.Invalid, "no review task given")
	}
	return nil
}

// closeBreakGlassReview closes an open break-the-glass review as reviewed by the signed-in
// officer (CSRF-checked by the chain), then answers 303 to the reviews page with a flash.
// An unknown or already closed task is a 404.
func (s *Server) closeBreakGlassReview(c echo.Context) error {
	n, _ := strconv.ParseInt(c.FormValue("task"), 10, 64)
	f := reviewCloseForm{ID: n}
	if err := f.Validate(); err != nil {
		return err
	}
	if err := s.privacy.CloseBreakGlassReview(c.Request().Context(), staffViewer(c), f.ID); err != nil {
		return err
	}
	s.setFlash(c, "Review "+strconv.FormatInt(f.ID, 10)+" closed.")
	return c.Redirect(http.StatusSeeOther, "/officer/reviews")
}
