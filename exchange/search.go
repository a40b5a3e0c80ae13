package exchange

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/records"
)

// SearchAPI serves FHIR search (GET [type], POST [type]/_search) and
// Patient/{id}/$everything through records.Searcher, the consent-filtered search of the
// enforcement point.
type SearchAPI struct {
	s *Server
	x *records.Searcher
}

// NewSearchAPI returns the search routes of s, answered by x.
func NewSearchAPI(s *Server, x *records.Searcher) *SearchAPI { return &SearchAPI{s: s, x: x} }

// Register mounts the search routes on e, behind the exchange's media-type check and
// bearer-token authentication:
//
//	GET  /fhir/:type                     search
//	POST /fhir/:type/_search             search with a form body (PHI stays out of URLs)
//	GET  /fhir/:type/:id/$everything     Patient $everything
//
// and the member directory as FHIR (directory_fhir.go): Endpoint and Organization read,
// search (GET and POST _search), _history and vread, directory entries beside the
// member-sent Organizations.
func (a *SearchAPI) Register(e *echo.Echo) {
	mw := []echo.MiddlewareFunc{noStore, a.s.fhirMedia, a.s.authenticate}
	e.GET("/fhir/:type", a.searchResources, mw...)
	e.POST("/fhir/:type/_search", a.searchResources, mw...)
	e.GET("/fhir/:type/:id/$everything", a.showEverything, mw...)
	// The member directory as FHIR, read-only (directory_fhir.go).
	e.GET("/fhir/Endpoint", a.searchEndpoints, mw...)
	e.POST("/fhir/Endpoint/_search", a.searchEndpoints, mw...)
	e.GET("/fhir/Endpoint/:id", a.readEndpoint, mw...)
	e.GET("/fhir/Endpoint/:id/_history", a.directoryHistory("Endpoint", false), mw...)
	e.GET("/fhir/Endpoint/:id/_history/:vid", a.directoryHistory("Endpoint", true), mw...)
	e.GET("/fhir/Organization", a.searchOrganizations, mw...)
	e.POST("/fhir/Organization/_search", a.searchOrganizations, mw...)
	e.GET("/fhir/Organization/:id", a.readOrganization, mw...)
	e.GET("/fhir/Organization/:id/_history", a.directoryHistory("Organization", false), mw...)
	e.GET("/fhir/Organization/:id/_history/:vid", a.directoryHistory("Organization", true), mw...)
}

// withSearch returns types with "search-type" added for the types the exchange can
// search: Patient, reference data (records.ReferenceType: Organization, Practitioner,
// Medication, searched without a patient), and every type with a patient or subject
// parameter (a clinical search needs one). Types it adds have no other interaction.
func withSearch(types map[string][]string) map[string][]string {
	out := make(map[string][]string, len(types))
	for t, ops := range types {
		out[t] = append([]string(nil), ops...)
	}
	for _, c := range fhir.Capabilities() {
		searchable := c.Type == "Patient" || records.ReferenceType(c.Type)
		for _, p := range c.SearchParams {
			searchable = searchable || p.Name == "patient" || p.Name == "subject"
		}
		if searchable {
			out[c.Type] = append(out[c.Type], "search-type")
		}
	}
	return out
}

// searchParamCap and operationCap are CapabilityStatement.rest.resource elements.
type (
	searchParamCap = fhir.CapabilityParam
	operationCap   struct {
		Name       string `json:"name"`
		Definition string `json:"definition"`
	}
)

// searchCap is what the CapabilityStatement lists for one searchable type: the search
// parameters the store can answer (quantity and number parameters are not indexed, so they
// are left out), the _include and _revinclude values, and Patient's $everything.
type searchCap struct {
	Params     []searchParamCap
	Include    []string
	RevInclude []string
	Ops        []operationCap
}

// searchCapability returns the searchCap of type t with interactions ops; the zero value
// when t has no search-type interaction.
func searchCapability(t string, ops []string) searchCap {
	var out searchCap
	if !slices.Contains(ops, "search-type") {
		return out
	}
	for _, c := range fhir.Capabilities() {
		if c.Type != t {
			continue
		}
		for _, p := range c.SearchParams {
			if p.Type != "quantity" && p.Type != "number" {
				out.Params = append(out.Params, p)
			}
		}
		out.Include, out.RevInclude = c.SearchInclude, c.SearchRevInclude
	}
	if t == "Patient" {
		out.Ops = []operationCap{{Name: "everything", Definition: "http://hl7.org/fhir/OperationDefinition/Patient-everything"}}
	}
	return out
}

// searchResources handles GET [base]/[type]?... and POST [base]/[type]/_search. The
// POST form body and the URL query are merged. A request carrying _cursor pages an
// earlier search: its query comes from the sealed cursor. An _include that reaches a
// directory Organization (PractitionerRole:organization) has it added after records
// answers (includeDirectoryOrganizations).
func (a *SearchAPI) searchResources(c echo.Context) error {
	const op = "exchange.searchResources"
	typ := c.Param("type")
	if !fhir.IsResourceType(typ) {
		return errs.E(op, errs.NotFound, "resource type not found")
	}
	if err := require(c, typ, 's'); err != nil {
		return err
	}
	q, post, err := searchQuery(c)
	if err != nil {
		return err
	}
	if q.Has("_elements") {
		return errs.E(op, errs.Invalid, "_elements is not supported")
	}
	page, err := a.x.SearchAllowed(c.Request().Context(), viewer(c), typ, q, allowedTypes(c))
	if err != nil {
		return err
	}
	// Directory Organizations are not in the store records includes from.
	if err := a.includeDirectoryOrganizations(c, &page); err != nil {
		return err
	}
	return a.writeBundle(c, page, a.s.selfLink(c, typ, post), a.s.cursorLink(typ, page.Next))
}

// writeBundle renders a searchset Bundle. Stored bodies were validated and stamped on
// the way in, so they are embedded as stored, without re-parsing; a Part 2 record gets the
// §2.32 notice and its consent in meta, and the Bundle one OperationOutcome entry
// (search.mode outcome) with the notice (part2.go).
func (a *SearchAPI) writeBundle(c echo.Context, page records.Page, self, next string) error {
	bodies := map[*store.Stored][]byte{}
	for _, list := range [][]store.Stored{page.Matches, page.Included} {
		for i := range list {
			st := &list[i]
			var rel *records.Part2Release
			if r, ok := page.Part2Of(*st); ok {
				rel = &r
			}
			body, err := discloseBody(st.Body, rel)
			if err != nil {
				return err
			}
			bodies[st] = body
		}
	}
	var b bytes.Buffer
	b.Grow(256 + 64*len(page.Matches) + bodySize(page.Matches) + bodySize(page.Included))
	b.WriteString(`{"resourceType":"Bundle","type":"searchset","timestamp":`)
	writeJSONString(&b, fhir.FormatInstant(a.s.Now().UTC().Truncate(time.Millisecond)))
	if page.Total != nil {
		b.WriteString(`,"total":`)
		b.WriteString(itoa(*page.Total))
	}
	b.WriteString(`,"link":[{"relation":"self","url":`)
	writeJSONString(&b, self)
	b.WriteString(`}`)
	if next != "" {
		b.WriteString(`,{"relation":"next","url":`)
		writeJSONString(&b, next)
		b.WriteString(`}`)
	}
	b.WriteString(`]`)
	if len(page.Matches)+len(page.Included) > 0 {
		b.WriteString(`,"entry":[`)
		first := true
		entry := func(st *store.Stored, mode string) {
			if !first {
				b.WriteByte(',')
			}
			first = false
			b.WriteString(`{"fullUrl":`)
			writeJSONString(&b, a.s.FHIRBase()+"/"+st.Type+"/"+st.ID)
			b.WriteString(`,"resource":`)
			b.Write(bytes.TrimSpace(bodies[st]))
			b.WriteString(`,"search":{"mode":"` + mode + `"}}`)
		}
		for i := range page.Matches {
			entry(&page.Matches[i], "match")
		}
		for i := range page.Included {
			entry(&page.Included[i], "include")
		}
		if len(page.Part2) > 0 {
			b.WriteString(`,{"resource":`)
			b.Write(part2Outcome())
			b.WriteString(`,"search":{"mode":"outcome"}}`)
		}
		b.WriteString(`]`)
	}
	b.WriteString(`}`)
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.Blob(http.StatusOK, mimeFHIR, b.Bytes())
}

func bodySize(list []store.Stored) int {
	n := 0
	for _, st := range list {
		n += len(st.Body)
	}
	return n
}

func writeJSONString(b *bytes.Buffer, s string) {
	out, _ := json.Marshal(s) // a string always encodes
	b.Write(out)
}
