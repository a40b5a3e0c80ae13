package exchange

import (
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/errs"
)

func itoa(n int) string { return strconv.Itoa(n) }

// readResource handles GET [base]/[type]/[id] through the enforcement point: whatever the
// caller may not see answers exactly like what does not exist.
func (s *Server) readResource(c echo.Context) error {
	typ := c.Param("type")
	if !fhir.IsResourceType(typ) {
		return errs.E("exchange.readResource", errs.NotFound, "resource not found")
	}
	if err := require(c, typ, 'r'); err != nil {
		return err
	}
	st, rel, err := s.Records.ReadRelease(c.Request().Context(), viewer(c), typ, c.Param("id"))
	if err != nil {
		return err
	}
	body, err := discloseBody(st.Body, rel) // a Part 2 record carries the §2.32 notice (part2.go)
	if err != nil {
		return err
	}
	h := c.Response().Header()
	h.Set("ETag", store.ETag(st.Version))
	h.Set("Last-Modified", st.LastUpdated.UTC().Format(http.TimeFormat))
	h.Set("Cache-Control", "no-store")
	return c.Blob(http.StatusOK, mimeFHIR, body)
}
