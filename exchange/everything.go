package exchange

import (
	"net/url"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/records"
)

// showEverything handles GET [base]/Patient/{id}/$everything (_since, _type, _count,
// paged by _cursor): the consent-filtered regional record of the person behind the
// caller's own Patient. A Patient that does not exist or is another member's answers 404
// alike. Types the token's scopes do not allow to read are left out.
func (a *SearchAPI) showEverything(c echo.Context) error {
	const op = "exchange.showEverything"
	if c.Param("type") != "Patient" {
		return errs.E(op, errs.NotFound, "resource not found")
	}
	if err := require(c, "Patient", 'r'); err != nil {
		return err
	}
	id := c.Param("id")
	page, err := a.x.Everything(c.Request().Context(), viewer(c), id, c.QueryParams(), allowedTypes(c))
	if err != nil {
		return err
	}
	path := a.s.FHIRBase() + "/Patient/" + url.PathEscape(id) + "/$everything"
	self := path
	if raw := c.Request().URL.RawQuery; raw != "" {
		self += "?" + raw
	}
	next := ""
	if page.Next != "" {
		next = path + "?" + url.Values{records.CursorParam: {page.Next}}.Encode()
	}
	return a.writeBundle(c, page, self, next)
}
