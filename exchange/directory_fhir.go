package exchange

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/directory"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/records"
)

// The member directory as FHIR (standards.md §8), read-only: every member as an
// Organization (its OIDs and NPI as identifiers) and every endpoint the directory knows as
// an Endpoint (rest-hook origins, and the FHIR bases, MLLP receivers and Direct addresses
// members publish), plus the exchange itself (Organization/concord with its FHIR base,
// Endpoint/concord-fhir). The mapping is directory's (directory/fhir.go); this file loads
// it, checks scopes, audits and answers.
//
// Directory data is reference data holding no PHI: no consent decides it, but every
// request needs a member token with the type's scope (system/Endpoint.rs,
// system/Organization.rs) and writes the audit event a reference-data read or search
// writes (no patient; records.Searcher.AuditReference) before anything is disclosed.
//
//	GET  /fhir/Endpoint[?organization=&connection-type=&identifier=&status=&_id=&_count=&_offset=]
//	POST /fhir/Endpoint/_search
//	GET  /fhir/Endpoint/{id}            a directory Endpoint; a 32-hex id is a stored one (below)
//	GET  /fhir/Organization[?...]       member-sent reference Organizations and directory ones
//	POST /fhir/Organization/_search
//	GET  /fhir/Organization/{id}        member-<id> and concord are directory Organizations
//
// Endpoint writes are refused (refuseEndpointWrite, and in Bundles ownHandlerWrite):
// directory entries are registered by the operator (concord member endpoint). Before this
// view existed any R4 type, Endpoint included, was stored as its member sent it; such a
// stored Endpoint keeps its server-assigned id, which no directory id can take, and stays
// readable (and deletable) by the member through the generic handlers, but it is not a
// directory entry and is not searched.

// directorySource is meta.source of directory resources: [BaseURL]/directory, beside
// [BaseURL]/members/{id} for what a member sent.
func (s *Server) directorySource() string { return s.cfg.BaseURL + "/directory" }

// directoryView loads the directory's Organizations and Endpoints, by id. orgIDs limits it
// to those Organization ids (nil: all): member-<id> loads that member (with its NPI and
// published endpoints), concord the exchange. Rest-hook endpoints are listed only where
// notifications are served.
func (s *Server) directoryView(ctx context.Context, orgIDs []string) ([]directory.Organization, []directory.Endpoint, error) {
	var members []string
	exchange := orgIDs == nil
	if orgIDs != nil {
		members = []string{}
		for _, id := range orgIDs {
			if m, ok := strings.CutPrefix(id, "member-"); ok {
				members = append(members, m)
			}
			exchange = exchange || id == directory.ExchangeOrganizationID
		}
		if len(members) == 0 && !exchange {
			return nil, nil, nil
		}
	}
	var ls []directory.Listing
	if members == nil || len(members) > 0 {
		var err error
		if ls, err = s.Directory.Listings(ctx, members); err != nil {
			return nil, nil, err
		}
	}
	if s.Notify != nil && len(ls) > 0 {
		hooks, err := s.Notify.EndpointOrigins(ctx, s.Pool, members)
		if err != nil {
			return nil, nil, err
		}
		for i := range ls {
			ls[i].HookOrigins = hooks[ls[i].Member.ID]
		}
	}
	var orgs []directory.Organization
	var eps []directory.Endpoint
	if exchange {
		x := directory.Exchange{FHIRBase: s.FHIRBase()}
		orgs = append(orgs, directory.ExchangeOrganization(x))
		eps = append(eps, directory.ExchangeEndpoints(x)...)
	}
	for _, l := range ls {
		orgs = append(orgs, directory.MemberOrganization(l))
		eps = append(eps, directory.MemberEndpoints(l)...)
	}
	slices.SortFunc(orgs, func(a, b directory.Organization) int { return strings.Compare(a.ID, b.ID) })
	slices.SortFunc(eps, func(a, b directory.Endpoint) int {
		return cmp.Or(strings.Compare(a.OrgID, b.OrgID), strings.Compare(a.ConnectionType, b.ConnectionType),
			strings.Compare(a.Address, b.Address), strings.Compare(a.ID, b.ID))
	})
	return orgs, eps, nil
}

// directoryCapability returns sc, the CapabilityStatement search entry of type t, as this
// file answers it, and the entry's documentation ("" for none): Endpoint takes the
// directory's own parameters (directory.ParseEndpointSearch) and includes its managing
// Organization; Organization also includes the directory Endpoints it references
// (Organization:endpoint), and says how the directory and member-sent Organizations are
// ordered and paged together (searchOrganizations); any other type is returned as it is.
func directoryCapability(t string, sc searchCap) (searchCap, string) {
	switch t {
	case "Endpoint":
		sc.Params, sc.Include, sc.RevInclude = endpointSearchParams, []string{"Endpoint:organization"}, nil
	case "Organization":
		sc.Include = append(slices.Clone(sc.Include), "Organization:endpoint")
		return sc, organizationSearchDoc
	}
	return sc, ""
}

// organizationSearchDoc is the CapabilityStatement documentation of Organization.
const organizationSearchDoc = "Organization search answers the member directory (Organization/member-{member id} and Organization/concord, " +
	"meta.source [base]/directory) together with the Organizations members sent. Without _sort the directory entries come first (by id), " +
	"then the member-sent ones, most recently updated first. _sort takes _lastUpdated, -_lastUpdated, name or -name. " +
	"_lastUpdated and -_lastUpdated order the member-sent Organizations, then the directory entries, which have no meta.lastUpdated. " +
	"name and -name (alone) order both together by name, case and accents ignored, ties by id, an Organization without a name last; " +
	"such a search orders at most 1000 member-sent Organizations (400 beyond: narrow it). Any other _sort (_id) is refused with 400. " +
	"Follow the next links to page: _offset positions the directory entries, _cursor the member-sent ones; under _sort=name, " +
	"_offset positions the whole ordered result. " +
	"_include=Organization:endpoint adds the directory Endpoints the page's Organizations reference, and " +
	"_revinclude=Endpoint:organization those its directory Organizations manage, when the token may read Endpoint. " +
	"_revinclude=PractitionerRole:organization and _revinclude=Location:organization add the member-sent PractitionerRoles and Locations " +
	"that name any Organization on the page, directory or member-sent, that the caller may see and its token may read."

// storedID reports whether id has the form of a server-assigned stored id (store.NewID),
// which no directory resource has.
func storedID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for _, r := range id {
		if (r < '0' || r > '9') && (r < 'a' || r > 'f') {
			return false
		}
	}
	return true
}

// asStored wraps a directory resource's body for writeBundle.
func asStored(typ, id string, body []byte) store.Stored {
	return store.Stored{Type: typ, ID: id, Body: body}
}

// searchQuery is the query of a search request: the URL query, merged with the form body
// of POST [type]/_search.
func searchQuery(c echo.Context) (url.Values, bool, error) {
	const op = "exchange.searchQuery"
	r := c.Request()
	q := r.URL.Query()
	post := r.Method == http.MethodPost
	if post && r.ContentLength != 0 {
		mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if mt != "application/x-www-form-urlencoded" {
			return nil, post, errs.E(op, errs.Unsupported, "send the search parameters as application/x-www-form-urlencoded")
		}
		if err := r.ParseForm(); err != nil {
			return nil, post, errs.E(op, errs.Invalid, "malformed form body")
		}
		for k, vs := range r.PostForm {
			q[k] = append(q[k], vs...)
		}
	}
	return q, post, nil
}

// pageLink is the link to the page of typ's search q starting at offset (directory
// paging: the directory is small and its order fixed, so an offset pages it).
func (s *Server) pageLink(typ string, q url.Values, offset int) string {
	return s.linkWith(typ, q, "_offset", strconv.Itoa(offset))
}

// cursorPageLink is the link to the page of typ's search q that the stored search's
// cursor (records.CursorParam) starts, the query kept beside it for the directory's part.
func (s *Server) cursorPageLink(typ string, q url.Values, cursor string) string {
	return s.linkWith(typ, q, records.CursorParam, cursor)
}

// linkWith is the link to typ's search q with its paging position set to param=value.
func (s *Server) linkWith(typ string, q url.Values, param, value string) string {
	next := url.Values{}
	for k, vs := range q {
		if k != "_offset" && k != records.CursorParam {
			next[k] = vs
		}
	}
	next.Set(param, value)
	return s.FHIRBase() + "/" + typ + "?" + next.Encode()
}

// cursorLink is the next link of a stored search of typ whose next page is cursor (the
// sealed records.CursorParam); "" when cursor is "" (the last page).
func (s *Server) cursorLink(typ, cursor string) string {
	if cursor == "" {
		return ""
	}
	return s.FHIRBase() + "/" + typ + "?" + url.Values{records.CursorParam: {cursor}}.Encode()
}

// selfLink is the self link of a search of typ.
func (s *Server) selfLink(c echo.Context, typ string, post bool) string {
	self := s.FHIRBase() + "/" + typ
	switch {
	case post:
		self += "/_search"
	case c.Request().URL.RawQuery != "":
		self += "?" + c.Request().URL.RawQuery
	}
	return self
}

// auditedResources lists page entries for the audit event.
func auditedResources(sts []store.Stored) []audit.Resource {
	out := make([]audit.Resource, 0, len(sts))
	for _, st := range sts {
		out = append(out, audit.Resource{Type: st.Type, ID: st.ID})
	}
	return out
}

// allowedTypes returns whether the caller's token may read or search a type: what a
// resource of that type needs to be included in a page or in $everything that another
// scope admitted. It is the one such rule: searchResources and showEverything hand it to
// records (which leaves a type the token refuses out of the page, not an error) and the
// directory searches apply it to their own includes.
func allowedTypes(c echo.Context) func(typ string) bool {
	scopes := principal(c).Scopes
	return func(typ string) bool { return scopes.Allows(typ, 'r') || scopes.Allows(typ, 's') }
}

// searchEndpoints handles GET [base]/Endpoint and POST [base]/Endpoint/_search over the
// directory's Endpoints: a searchset with total (unless _total=none), paged by _offset.
// An unknown organization is an empty Bundle. _include=Endpoint:organization adds the
// page's managing Organizations (search mode include) when the token may read
// Organization; the audit event lists them with the matches.
func (a *SearchAPI) searchEndpoints(c echo.Context) error {
	if err := require(c, "Endpoint", 's'); err != nil {
		return err
	}
	q, post, err := searchQuery(c)
	if err != nil {
		return err
	}
	s, err := directory.ParseEndpointSearch(q, a.s.FHIRBase(), 20, a.s.cfg.MaxCount)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	orgIDs, _ := s.Organizations() // nil: every Organization's
	orgs, eps, err := a.s.directoryView(ctx, orgIDs)
	if err != nil {
		return err
	}
	var matches []directory.Endpoint
	for _, e := range eps {
		if s.Matches(e) {
			matches = append(matches, e)
		}
	}
	shown, nextOffset := s.Page(matches)
	page := records.Page{}
	managers := map[string]bool{}
	for _, e := range shown {
		page.Matches = append(page.Matches, asStored("Endpoint", e.ID, e.FHIR(a.s.directorySource())))
		managers[e.OrgID] = true
	}
	if s.IncludeOrganization && allowedTypes(c)("Organization") { // the managing Organizations, by id
		for _, o := range orgs {
			if managers[o.ID] {
				page.Included = append(page.Included, asStored("Organization", o.ID, o.FHIR(a.s.directorySource())))
			}
		}
	}
	if !s.NoTotal {
		n := len(matches)
		page.Total = &n
	}
	shownAll := append(slices.Clone(page.Matches), page.Included...)
	if err := a.x.AuditReference(ctx, viewer(c), audit.Query, q, auditedResources(shownAll)); err != nil {
		return err
	}
	next := ""
	if nextOffset >= 0 {
		next = a.s.pageLink("Endpoint", q, nextOffset)
	}
	return a.writeBundle(c, page, a.s.selfLink(c, "Endpoint", post), next)
}

// readEndpoint handles GET [base]/Endpoint/{id}: a directory Endpoint, or (a stored id)
// an Endpoint a member stored before the directory view, read through the enforcement
// point like any stored resource.
func (a *SearchAPI) readEndpoint(c echo.Context) error {
	id := c.Param("id")
	if storedID(id) {
		return a.s.delegate(c, a.s.readResource, "Endpoint", id)
	}
	if err := require(c, "Endpoint", 'r'); err != nil {
		return err
	}
	ctx := c.Request().Context()
	_, eps, err := a.s.directoryView(ctx, nil)
	if err != nil {
		return err
	}
	for _, e := range eps {
		if e.ID == id {
			return a.writeDirectoryRead(c, "Endpoint", id, e.FHIR(a.s.directorySource()))
		}
	}
	return errs.E("exchange.readEndpoint", errs.NotFound, "resource not found")
}

// readOrganization handles GET [base]/Organization/{id}: a directory Organization
// (member-<id>, concord), or any other id through the generic read.
func (a *SearchAPI) readOrganization(c echo.Context) error {
	id := c.Param("id")
	if !directory.IsDirectoryID(id) {
		return a.s.delegate(c, a.s.readResource, "Organization", id)
	}
	if err := require(c, "Organization", 'r'); err != nil {
		return err
	}
	orgs, _, err := a.s.directoryView(c.Request().Context(), []string{id})
	if err != nil {
		return err
	}
	for _, o := range orgs {
		if o.ID == id {
			return a.writeDirectoryRead(c, "Organization", id, o.FHIR(a.s.directorySource()))
		}
	}
	return errs.E("exchange.readOrganization", errs.NotFound, "resource not found")
}

// writeDirectoryRead audits the read of directory resource typ/id and answers body.
func (a *SearchAPI) writeDirectoryRead(c echo.Context, typ, id string, body []byte) error {
	if err := a.x.AuditReference(c.Request().Context(), viewer(c), audit.Read, nil, []audit.Resource{{Type: typ, ID: id}}); err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.Blob(http.StatusOK, mimeFHIR, body)
}

// directoryHistory answers history and vread under typ/{id}: the generic handler for a
// stored id, 405 for a directory resource, which has no versions.
func (a *SearchAPI) directoryHistory(typ string, vread bool) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Param("id")
		if directory.IsDirectoryID(id) || typ == "Endpoint" && !storedID(id) {
			if err := require(c, typ, 'r'); err != nil { // the scope first, as for every read
				return err
			}
			return historyNotServed(c)
		}
		h := a.s.historyResource
		if vread {
			h = a.s.vreadResource
		}
		return a.s.delegate(c, h, typ, id)
	}
}

// delegate runs a generic handler, which reads the type and id from the path, for typ/id.
func (s *Server) delegate(c echo.Context, h echo.HandlerFunc, typ, id string) error {
	names, values := []string{"type", "id"}, []string{typ, id}
	if vid := c.Param("vid"); vid != "" {
		names, values = append(names, "vid"), append(values, vid)
	}
	c.SetParamNames(names...)
	c.SetParamValues(values...)
	return h(c)
}

// searchOrganizations handles GET [base]/Organization and POST [base]/Organization/_search:
// the directory's Organizations that match and the member-sent reference Organizations of
// records.Searcher, in one searchset. A directory entry matches by identifier
// (urn:ietf:rfc:3986|urn:oid:..., or the bare urn:oid:... value), name, active and _id; a
// clause on anything else (_lastUpdated) leaves the directory out.
//
// Order. Without _sort the directory entries come first (by id), then the stored matches
// in the store's order. _sort takes _lastUpdated and -_lastUpdated, which order both
// sources: the stored matches in that order, then the directory entries (by id), which
// carry no meta.lastUpdated and so sort last either way, as a stored resource without a
// value does (fhir.SortKey). name and -name, as the only key, order both sources together
// (nameSortedPage): the store orders by dates only, so the page is cut here from every
// match, ordered by folded name and id, and paged by _offset. Any other key (_id), or name
// beside another, is refused (errs.Invalid naming _sort) rather than half-applied.
//
// Includes. _include=Organization:endpoint and _revinclude=Endpoint:organization add
// directory Endpoints (includedEndpoints); any other _include or _revinclude goes to the
// stored search, which answers it for the member-sent Organizations, and a _revinclude of
// reference data (PractitionerRole:organization, Location:organization) is answered for
// the page's directory Organizations by revIncludeDirectoryOrganizations.
//
// Paging. The directory's part is paged by _offset, a position among the directory's
// matches (under _sort=name, among all matches), and the stored part by the stored
// search's sealed _cursor; the page where one part runs out is filled from the start of
// the other (_count less what is already on it). Next links carry the original query
// besides _offset or _cursor: records takes a cursor page's query from the cursor, and the
// directory part needs it. total, when given, counts both, on every page: _total=accurate
// counts the stored matches on a page the directory fills, and adds the directory's to a
// page of the stored search.
func (a *SearchAPI) searchOrganizations(c echo.Context) error {
	const typ, op = "Organization", "exchange.searchOrganizations"
	if err := require(c, typ, 's'); err != nil {
		return err
	}
	c.SetParamNames("type")
	c.SetParamValues(typ)
	q, post, err := searchQuery(c)
	if err != nil {
		return err
	}
	byName, desc, err := organizationSort(q["_sort"])
	if err != nil {
		return err
	}
	if byName && q.Has(records.CursorParam) {
		return errs.E(op, errs.Invalid, "a _sort=name search pages by _offset, not _cursor: follow its next links")
	}
	// One ScanTime deadline for the request: the stored search and the searches that
	// find what names the page's directory Organizations (revIncludeDirectoryOrganizations).
	ctx := a.x.ShareScan(c.Request().Context())
	allow := allowedTypes(c)
	// The stored search's query: q without the directory's _offset and _include, which
	// the stored search does not know (Organization:endpoint).
	stored, includeEndpoints := url.Values{}, false
	for k, vs := range q {
		switch k {
		case "_offset":
		case "_sort":
			if !byName { // the store orders by _lastUpdated; by name the page is ordered here
				stored[k] = vs
			}
		case "_include":
			for _, v := range vs {
				if v == "Organization:endpoint" || v == "Organization:endpoint:Endpoint" {
					includeEndpoints = true
				} else {
					stored.Add(k, v)
				}
			}
		default:
			stored[k] = vs
		}
	}
	offset := 0
	if q.Has("_offset") {
		if offset, err = strconv.Atoi(q.Get("_offset")); err != nil || offset < 0 || len(q["_offset"]) != 1 {
			return errs.E(op, errs.Invalid, "_offset must be a non-negative integer")
		}
	}
	var s fhir.Search
	var page records.Page           // the stored part and the total
	if q.Has(records.CursorParam) { // a later page of the stored search: its query is the cursor's
		if page, err = a.x.SearchAllowed(ctx, viewer(c), typ, stored, allow); err != nil {
			return err
		}
		s = page.Search
	} else {
		if s, err = (fhir.SearchOptions{DefaultCount: 20, MaxCount: a.s.cfg.MaxCount}).Parse(typ, stored); err != nil {
			return err
		}
		if len(s.Elements) > 0 {
			return errs.E(op, errs.Invalid, "_elements is not supported")
		}
	}
	matches, eps, err := a.directoryOrganizations(ctx, s)
	if err != nil {
		return err
	}
	var dir []store.Stored // the directory entries on this page
	next := ""
	// tail puts the directory matches from position from on the page, up to room of them.
	tail := func(from, room int) {
		from = min(from, len(matches))
		end := min(from+max(room, 0), len(matches))
		dir = matches[from:end]
		if end < len(matches) {
			next = a.s.pageLink(typ, q, end)
		}
	}
	sorted := len(s.Sort) > 0
	withTotal := func(p records.Page) {
		if p.Total != nil {
			n := *p.Total + len(matches)
			page.Total = &n
		}
	}
	switch {
	case byName && !s.SummaryCount && s.Count > 0:
		if page, dir, next, err = a.nameSortedPage(ctx, c, q, stored, s, matches, offset, desc, allow); err != nil {
			return err
		}
	case q.Has(records.CursorParam):
		withTotal(page) // the whole result, as the first page counted it
		if page.Next != "" {
			next = a.s.cursorPageLink(typ, q, page.Next)
		} else if sorted { // the stored matches end here; the directory's follow
			tail(0, s.Count-len(page.Matches))
		}
	case s.SummaryCount || s.Count == 0: // a count only: the stored search counts its part
		if page, err = a.x.SearchAllowed(ctx, viewer(c), typ, stored, allow); err != nil {
			return err
		}
		withTotal(page)
	case !sorted && len(matches)-min(offset, len(matches)) < s.Count || sorted && !q.Has("_offset"):
		// The stored search fills the page: what the directory leaves of it, or (with
		// _sort) all of it, the directory's entries following its last page. It audits
		// its own matches.
		if !sorted {
			dir = matches[min(offset, len(matches)):]
			stored.Set("_count", strconv.Itoa(s.Count-len(dir)))
		}
		if page, err = a.x.SearchAllowed(ctx, viewer(c), typ, stored, allow); err != nil {
			return err
		}
		withTotal(page)
		if page.Next != "" {
			next = a.s.cursorPageLink(typ, q, page.Next)
		} else if sorted {
			tail(0, s.Count-len(page.Matches))
		}
	default: // the directory fills the page; the stored matches are on other pages
		tail(offset, s.Count)
		if !sorted && next == "" {
			next = a.s.pageLink(typ, q, offset+s.Count) // where the stored matches start
		}
		if s.Total == fhir.TotalAccurate { // counted here, shown on other pages
			stored.Set("_count", "0")
			counted, err := a.x.SearchAllowed(ctx, viewer(c), typ, stored, allow)
			if err != nil {
				return err
			}
			withTotal(counted)
		}
	}
	switch {
	case byName: // nameSortedPage put dir among the matches
	case sorted:
		page.Matches = append(page.Matches, dir...)
	default:
		page.Matches = append(slices.Clone(dir), page.Matches...)
	}
	revEndpoints := slices.ContainsFunc(s.RevInclude, func(i fhir.Include) bool { return i.SourceType == "Endpoint" && i.Param == "organization" })
	var included []store.Stored // the directory Endpoints the page includes
	if (includeEndpoints || revEndpoints) && allow("Endpoint") {
		included = a.s.includedEndpoints(page.Matches, dir, eps, includeEndpoints, revEndpoints)
	}
	// What members sent that names the page's directory Organizations
	// (PractitionerRole:organization, Location:organization): found, decided and audited
	// by records; the stored part's own _revinclude records answered above, and it counts
	// toward the page's one limit.
	referring, err := a.revIncludeDirectoryOrganizations(ctx, c, s.RevInclude, page, dir, allow)
	if err != nil {
		return err
	}
	if shown := append(slices.Clone(dir), included...); len(shown) > 0 { // one more reference-data event
		if err := a.x.AuditReference(ctx, viewer(c), audit.Query, withoutCursor(q), auditedResources(shown)); err != nil {
			return err
		}
	}
	page.Included = append(append(page.Included, included...), referring...)
	return a.writeBundle(c, page, a.s.selfLink(c, typ, post), next)
}

// organizationSort reads the _sort of an Organization search: byName for name or -name
// (desc), which must be its only key; _lastUpdated and -_lastUpdated, alone or together,
// are the store's to apply (neither byName nor an error). Any other key, or name beside
// another, is errs.Invalid naming _sort.
func organizationSort(sorts []string) (byName, desc bool, err error) {
	const op = "exchange.organizationSort"
	var keys []string
	for _, raw := range sorts {
		keys = append(keys, strings.Split(raw, ",")...)
	}
	for _, k := range keys {
		switch strings.TrimPrefix(k, "-") {
		case "_lastUpdated":
		case "name":
			if len(keys) != 1 {
				return false, false, errs.E(op, errs.Invalid, "_sort=name (or -name) on Organization takes no other sort key")
			}
			return true, strings.HasPrefix(k, "-"), nil
		default:
			return false, false, errs.E(op, errs.Invalid, "_sort on Organization takes _lastUpdated, -_lastUpdated, name or -name")
		}
	}
	return false, false, nil
}

// maxNameSorted is the most member-sent Organizations a _sort=name search orders: it
// reads all of its matches on every page, so a search with more is errs.Invalid (narrow it).
const maxNameSorted = 1000

// nameSortedPage answers the page at offset of an Organization search ordered by name
// (descending when desc): the directory's matches (dirMatches, all of them) and every
// member-sent Organization the stored search (stored, without _sort) finds, ordered
// together by name as string search folds it (fhir.NormalizeString: case and accents
// ignored), then by id; an Organization without a name sorts last either way. It returns
// the page (matches in that order, its total unless _total=none, and the _include and
// _revinclude results of its member-sent Organizations), the directory entries among its
// matches, and the next link (_offset, the query kept), "" on the last page.
//
// The member-sent matches are read through the enforcement point in pages of MaxCount,
// each audited as records audits a search: every page of a name-ordered search lists all
// of them in its audit events, not only those it shows (the safe side, for reference
// data). More than maxNameSorted of them, or a read cut short by the request's ScanTime,
// is errs.Invalid: ordered from part of the matches, the pages would disagree.
func (a *SearchAPI) nameSortedPage(ctx context.Context, c echo.Context, q, stored url.Values, s fhir.Search, dirMatches []store.Stored,
	offset int, desc bool, allow func(string) bool) (page records.Page, dir []store.Stored, next string, err error) {
	const typ, op = "Organization", "exchange.nameSortedPage"
	narrow := errs.E(op, errs.Invalid, fmt.Sprintf("_sort=name orders at most %d member-sent Organizations: narrow the search", maxNameSorted))
	v := viewer(c)
	// Every member-sent match, without the page's includes.
	all := url.Values{}
	for k, vs := range stored {
		switch k {
		case "_include", "_revinclude", "_count", "_total":
		default:
			all[k] = vs
		}
	}
	all.Set("_count", strconv.Itoa(a.s.cfg.MaxCount))
	all.Set("_total", "none")
	var sent []store.Stored
	part2 := map[string]records.Part2Release{}
	keep := func(p records.Page) {
		for k, r := range p.Part2 {
			part2[k] = r
		}
	}
	for pq := all; ; {
		p, err := a.x.SearchAllowed(ctx, v, typ, pq, allow)
		if err != nil {
			return records.Page{}, nil, "", err
		}
		sent = append(sent, p.Matches...)
		keep(p)
		if len(sent) > maxNameSorted {
			return records.Page{}, nil, "", narrow
		}
		if p.Next == "" {
			break
		}
		if len(p.Matches) < p.Search.Count { // the request's ScanTime ran out
			return records.Page{}, nil, "", narrow
		}
		pq = url.Values{records.CursorParam: {p.Next}}
	}

	type keyed struct {
		st   store.Stored
		name string // folded; "" for none
	}
	entries := make([]keyed, 0, len(dirMatches)+len(sent))
	for _, st := range slices.Concat(dirMatches, sent) {
		var body struct{ Name string }
		_ = json.Unmarshal(st.Body, &body) // stored and directory bodies are valid FHIR
		entries = append(entries, keyed{st, fhir.NormalizeString(body.Name)})
	}
	slices.SortFunc(entries, func(x, y keyed) int {
		switch {
		case x.name == "" && y.name != "":
			return 1
		case x.name != "" && y.name == "":
			return -1
		}
		byName := strings.Compare(x.name, y.name)
		if desc {
			byName = -byName
		}
		return cmp.Or(byName, strings.Compare(x.st.ID, y.st.ID))
	})
	if s.Total != fhir.TotalNone {
		n := len(entries)
		page.Total = &n
	}
	from := min(offset, len(entries))
	end := min(from+s.Count, len(entries))
	if end < len(entries) {
		next = a.s.pageLink(typ, q, end)
	}
	isDir := map[string]bool{}
	for _, st := range dirMatches {
		isDir[st.ID] = true
	}
	var ids []string // the page's member-sent Organizations
	for _, e := range entries[from:end] {
		page.Matches = append(page.Matches, e.st)
		if isDir[e.st.ID] {
			dir = append(dir, e.st)
		} else {
			ids = append(ids, e.st.ID)
		}
	}
	// The page's own includes: asked of the enforcement point for its member-sent
	// Organizations (by _id), with one MaxRevIncluded for the page.
	if len(ids) > 0 && (len(stored["_include"]) > 0 || len(stored["_revinclude"]) > 0) {
		revAdded := 0
		for chunk := range slices.Chunk(ids, fhir.MaxOrValues) {
			iq := url.Values{"_id": {strings.Join(chunk, ",")}, "_count": {strconv.Itoa(len(chunk))}, "_total": {"none"},
				"_include": stored["_include"], "_revinclude": stored["_revinclude"]}
			p, err := a.x.SearchAllowed(ctx, v, typ, iq, allow)
			if err != nil {
				return records.Page{}, nil, "", err
			}
			for _, st := range p.Included {
				if slices.ContainsFunc(s.RevInclude, func(inc fhir.Include) bool { return inc.SourceType == st.Type }) {
					revAdded++
				}
			}
			if revAdded > records.MaxRevIncluded {
				return records.Page{}, nil, "", errs.E(op, errs.Invalid,
					fmt.Sprintf("_revinclude would add more than %d resources to this page: lower _count", records.MaxRevIncluded))
			}
			page.Included = append(page.Included, p.Included...)
			keep(p)
		}
	}
	if len(part2) > 0 {
		page.Part2 = part2
	}
	page.Search = s
	return page, dir, next, nil
}

// includedEndpoints returns, in the directory's order, the directory Endpoints (of eps) a
// page of Organizations includes: with endpoints (_include=Organization:endpoint) those
// any Organization of orgs references, a member-sent one too (a reference as
// fhir.ParseReference reads it, relative or absolute on this server's FHIR base, with or
// without a version: the Endpoint is included as it stands); with managed
// (_revinclude=Endpoint:organization) those the directory Organizations of dir manage. A
// member-sent Organization's reference to anything but a directory Endpoint includes
// nothing: such an Endpoint is no directory entry and is not shared.
func (s *Server) includedEndpoints(orgs, dir []store.Stored, eps []directory.Endpoint, endpoints, managed bool) []store.Stored {
	want := map[string]bool{}
	if endpoints {
		for _, o := range orgs {
			var body struct {
				Endpoint []struct{ Reference string }
			}
			if json.Unmarshal(o.Body, &body) != nil {
				continue
			}
			for _, r := range body.Endpoint {
				ref, err := fhir.ParseReference(r.Reference)
				if err == nil && ref.Type == "Endpoint" &&
					(ref.Kind == fhir.RefRelative || ref.Kind == fhir.RefAbsolute && ref.Base == s.FHIRBase()) {
					want[ref.ID] = true // a version too names the Endpoint, included as it stands
				}
			}
		}
	}
	managers := map[string]bool{}
	if managed {
		for _, o := range dir {
			managers[o.ID] = true
		}
	}
	var out []store.Stored
	for _, e := range eps {
		if want[e.ID] || managers[e.OrgID] {
			out = append(out, asStored("Endpoint", e.ID, e.FHIR(s.directorySource())))
		}
	}
	return out
}

// withoutCursor is q without records.CursorParam, as an audit event records a query.
func withoutCursor(q url.Values) url.Values {
	out := url.Values{}
	for k, vs := range q {
		if k != records.CursorParam {
			out[k] = vs
		}
	}
	return out
}

// directoryOrganizations returns the directory's Organizations that match s, by id, as
// the entries of a search, and every directory Endpoint, for the page's includes.
func (a *SearchAPI) directoryOrganizations(ctx context.Context, s fhir.Search) ([]store.Stored, []directory.Endpoint, error) {
	orgs, eps, err := a.s.directoryView(ctx, nil)
	if err != nil {
		return nil, nil, err
	}
	var matches []store.Stored
	for _, o := range orgs {
		if o.Matches(s) {
			matches = append(matches, asStored("Organization", o.ID, o.FHIR(a.s.directorySource())))
		}
	}
	return matches, eps, nil
}

// refuseEndpointWrite answers a member's POST, PUT or DELETE of an Endpoint: 405 with an
// OperationOutcome. Directory Endpoints are registered by the exchange operator; a DELETE
// of an Endpoint stored before the directory view (a stored id) goes to the generic delete.
func (s *Server) refuseEndpointWrite(c echo.Context) error {
	if id := c.Param("id"); c.Request().Method == http.MethodDelete && !directoryEndpointDelete("Endpoint", http.MethodDelete, id) {
		return s.delegate(c, s.deleteResource, "Endpoint", id)
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.Blob(http.StatusMethodNotAllowed, mimeFHIR, fhir.OperationOutcome(fhir.Issue{Severity: fhir.SeverityError,
		Code:        fhir.IssueNotSupported,
		Diagnostics: "Endpoint is read-only: directory endpoints are registered by the exchange operator (concord member endpoint), not written by members"}))
}
