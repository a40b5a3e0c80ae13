package exchange

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/errs"
)

// History and vread are restricted to the member that owns the resource: earlier
// versions may hold what a later version (or a consent change) withdrew, and the
// regional view (records) filters current data only. Another member's resource answers
// exactly like an unknown one. Both go through records (OwnVersion, OwnHistory), which
// audits the read before anything leaves (503 when the audit log cannot be written).

// maxHistory caps the versions returned by one _history call.
const maxHistory = 100

// vreadResource handles GET [base]/[type]/[id]/_history/[vid]. A deleted version
// answers 410 Gone.
func (s *Server) vreadResource(c echo.Context) error {
	const op = "exchange.vreadResource"
	typ, id := c.Param("type"), c.Param("id")
	notFound := errs.E(op, errs.NotFound, "resource not found")
	if !fhir.IsResourceType(typ) {
		return notFound
	}
	if err := require(c, typ, 'r'); err != nil {
		return err
	}
	v, err := strconv.Atoi(c.Param("vid"))
	if err != nil || v < 1 {
		return notFound
	}
	st, err := s.Records.OwnVersion(c.Request().Context(), viewer(c), typ, id, v)
	if err != nil {
		if errs.CodeOf(err) == errs.NotFound {
			return notFound
		}
		return err
	}
	h := c.Response().Header()
	h.Set("ETag", store.ETag(st.Version))
	h.Set("Last-Modified", st.LastUpdated.UTC().Format(http.TimeFormat))
	h.Set("Cache-Control", "no-store")
	if st.Deleted {
		return c.Blob(http.StatusGone, mimeFHIR, fhir.OperationOutcome(fhir.Issue{Severity: fhir.SeverityError, Code: fhir.IssueDeleted, Diagnostics: "this version is a deletion"}))
	}
	return c.Blob(http.StatusOK, mimeFHIR, st.Body)
}

// historyResource handles GET [base]/[type]/[id]/_history: a history Bundle, newest
// first, at most maxHistory versions (or _count).
func (s *Server) historyResource(c echo.Context) error {
	const op = "exchange.historyResource"
	typ, id := c.Param("type"), c.Param("id")
	if !fhir.IsResourceType(typ) {
		return errs.E(op, errs.NotFound, "resource not found")
	}
	if err := require(c, typ, 'r'); err != nil {
		return err
	}
	limit := maxHistory
	if n, err := strconv.Atoi(c.QueryParam("_count")); err == nil && n > 0 && n < limit {
		limit = n
	}
	list, err := s.Records.OwnHistory(c.Request().Context(), viewer(c), typ, id, limit)
	if err != nil {
		return err
	}
	out, err := historyBundle(s.FHIRBase(), list)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.Blob(http.StatusOK, mimeFHIR, out)
}

type historyEntry struct {
	FullURL  string          `json:"fullUrl"`
	Resource json.RawMessage `json:"resource,omitempty"`
	Request  struct {
		Method string `json:"method"`
		URL    string `json:"url"`
	} `json:"request"`
	Response struct {
		Status       string `json:"status"`
		Etag         string `json:"etag"`
		LastModified string `json:"lastModified"`
	} `json:"response"`
}

// historyBundle renders versions as a Bundle of type history: a deletion carries no
// resource and request DELETE; version 1 is a POST, later versions PUT.
func historyBundle(base string, list []store.Stored) ([]byte, error) {
	out := struct {
		ResourceType string         `json:"resourceType"`
		Type         string         `json:"type"`
		Total        int            `json:"total"`
		Entry        []historyEntry `json:"entry"`
	}{ResourceType: "Bundle", Type: "history", Total: len(list)}
	for _, st := range list {
		var e historyEntry
		e.FullURL = base + "/" + st.Type + "/" + st.ID
		e.Request.URL = st.Type + "/" + st.ID
		e.Response.Etag = store.ETag(st.Version)
		e.Response.LastModified = fhir.FormatInstant(st.LastUpdated)
		switch {
		case st.Deleted:
			e.Request.Method, e.Response.Status = http.MethodDelete, "204 No Content"
		case st.Version == 1:
			e.Resource, e.Request.Method, e.Request.URL, e.Response.Status = st.Body, http.MethodPost, st.Type, "201 Created"
		default:
			e.Resource, e.Request.Method, e.Response.Status = st.Body, http.MethodPut, "200 OK"
		}
		out.Entry = append(out.Entry, e)
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, errs.E("exchange.historyBundle", errs.Internal, err)
	}
	return b, nil
}
