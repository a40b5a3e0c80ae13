package exchange

import (
	"cmp"
	"context"
	"maps"
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

// Directory Organizations (member-<id>, concord) are not in the resource store, so what
// records includes and reverse-includes through the store's reference index never reaches
// them. This file completes both directions:
//
//   - [type]?_include=[type]:[param] for every reference parameter of the search table that
//     can point at an Organization (reachesOrganization: PractitionerRole:organization,
//     Location:organization, List:item, ...) adds the directory Organizations the page's
//     matches reference (includeDirectoryOrganizations);
//   - Organization?_revinclude=[type]:[param] of a reference-data type
//     (PractitionerRole:organization, Location:organization) adds the member-sent resources
//     that reference the page's directory Organizations, found by records' own search so
//     that each is decided and audited by the enforcement point
//     (revIncludeDirectoryOrganizations). Endpoint:organization is the directory's own
//     (includedEndpoints in directory_fhir.go).

// reachesOrganization reports whether the _include source:param can reach an Organization:
// param is a reference parameter of source in the search table (fhir.Params) whose targets
// include Organization or are any type. The table is the one the CapabilityStatement lists
// searchInclude from, so every advertised include that can name a directory Organization is
// served by includeDirectoryOrganizations.
func reachesOrganization(source, param string) bool {
	for _, p := range fhir.Params(source) {
		if p.Name == param {
			return p.Type == fhir.ParamReference && (len(p.Targets) == 0 || slices.Contains(p.Targets, "Organization"))
		}
	}
	return false
}

// directoryOrgRefs returns the ids of the directory Organizations that body, a stored
// resource, references through any parameter of params, as the store indexes it
// (fhir.Extract): relative references, or absolute ones on this server's FHIR base, with
// or without a version (the Organization is included as it stands). A body that does not
// parse references nothing.
func (s *Server) directoryOrgRefs(body []byte, params map[string]bool) []string {
	r, err := fhir.Parse(body)
	if err != nil {
		return nil
	}
	var out []string
	for _, iv := range fhir.Extract(r) {
		if !params[iv.Param] || iv.Type != fhir.ParamReference || iv.RefType != "Organization" || !directory.IsDirectoryID(iv.RefID) {
			continue
		}
		if iv.RefURL != "" { // absolute: only on this server
			if ref, err := fhir.ParseReference(iv.RefURL); err != nil || ref.Kind != fhir.RefAbsolute || ref.Base != s.FHIRBase() {
				continue
			}
		}
		out = append(out, iv.RefID)
	}
	return out
}

// includeDirectoryOrganizations completes the includes of a page records answered: for
// each _include of the page's search that reaches an Organization (reachesOrganization;
// without a target type or with target Organization), the directory Organizations its
// matches reference (directoryOrgRefs) are added to page.Included in id order, search mode
// include, but none that is already on the page. Directory data is reference data that no
// consent decides, but the token must allow Organization (allowedTypes), as records
// requires of what it includes; without it nothing is added. The directory is loaded once
// for the page. What is added is audited as a reference-data query before it is
// returned, with the query records' event for the page records (page.Query: on a cursor
// page the search's own, sealed in the cursor). It returns the directory's error when the directory cannot
// be read, or errs.Unavailable when the event cannot be committed; then page must not be
// disclosed.
func (a *SearchAPI) includeDirectoryOrganizations(c echo.Context, page *records.Page) error {
	if len(page.Matches) == 0 || !allowedTypes(c)("Organization") {
		return nil
	}
	params := map[string]bool{} // of the searched type, whose _include may name a directory Organization
	for _, inc := range page.Search.Include {
		if (inc.TargetType == "" || inc.TargetType == "Organization") && inc.SourceType == page.Search.ResourceType &&
			reachesOrganization(inc.SourceType, inc.Param) {
			params[inc.Param] = true
		}
	}
	if len(params) == 0 {
		return nil
	}
	want := map[string]bool{}
	for _, m := range page.Matches {
		if m.Type == page.Search.ResourceType {
			for _, id := range a.s.directoryOrgRefs(m.Body, params) {
				want[id] = true
			}
		}
	}
	for _, list := range [][]store.Stored{page.Matches, page.Included} {
		for _, st := range list {
			if st.Type == "Organization" {
				delete(want, st.ID)
			}
		}
	}
	if len(want) == 0 {
		return nil
	}
	ctx := c.Request().Context()
	orgs, _, err := a.s.directoryView(ctx, slices.Sorted(maps.Keys(want)))
	if err != nil {
		return err
	}
	var added []store.Stored
	for _, o := range orgs { // by id
		if want[o.ID] {
			added = append(added, asStored("Organization", o.ID, o.FHIR(a.s.directorySource())))
		}
	}
	if len(added) == 0 {
		return nil
	}
	if err := a.x.AuditReference(ctx, viewer(c), audit.Query, page.Query, auditedResources(added)); err != nil {
		return err
	}
	page.Included = append(page.Included, added...)
	return nil
}

// revIncludeDirectoryOrganizations returns what the _revinclude list revs of an
// Organization search adds for dir, the directory Organizations on the page, beyond the
// directory's own Endpoints: for each _revinclude whose source is reference data
// (records.ReferenceType: PractitionerRole:organization, Location:organization) of a type
// allow accepts, the resources of that type whose param names one of them, found by
// records' search ([source]?[param]=Organization/member-a,...; every page of it, through
// its cursor), so that each is kept only when the caller may see it (its own member's, or
// shared reference data) and is in the audit event records writes for that search, as an
// ordinary search's _revinclude is. The reference index keeps only a reference's type and
// id, so that search also finds references to another server's Organization/member-a;
// only those that name this server's, as directoryOrgRefs reads them (relative, or
// absolute on this server's FHIR base), are kept: records has audited the others, and
// they are not disclosed. A _revinclude of any other source type (List:item) adds
// nothing, as it adds nothing to records' search of reference data, which discloses no
// patient's resource. page is what records answered for the stored Organizations, with
// dir among its matches: nothing on it is added again. The result is sorted by type and
// id.
//
// The searches run under ctx, which carries the request's ScanTime deadline
// (records.Searcher.ShareScan), the one the page's stored search began: they are phases
// of that request, as records' own _revinclude is, not requests with a deadline each.
//
// It returns errs.Invalid when the page would carry more than records.MaxRevIncluded
// resources that a _revinclude added, these and those records' own _revinclude put on
// it counted together, one limit for the page as on a page of records' (what the caller
// may not see counts toward no limit), or when the deadline passes before the searches
// are done (records: the _revinclude took too long; never cut short); and records' error
// when a search fails. The events of the searches already run stay in the log.
func (a *SearchAPI) revIncludeDirectoryOrganizations(ctx context.Context, c echo.Context, revs []fhir.Include, page records.Page,
	dir []store.Stored, allow func(string) bool) ([]store.Stored, error) {
	const op = "exchange.revIncludeDirectoryOrganizations"
	if len(dir) == 0 {
		return nil, nil
	}
	refs := make([]string, 0, len(dir))
	ids := map[string]bool{} // of dir
	for _, o := range dir {
		refs = append(refs, "Organization/"+o.ID)
		ids[o.ID] = true
	}
	seen := map[string]bool{}
	for _, st := range page.Matches {
		seen[st.Type+"/"+st.ID] = true
	}
	already := 0 // what records' _revinclude put on the page, all of it visible
	for _, st := range page.Included {
		seen[st.Type+"/"+st.ID] = true
		if slices.ContainsFunc(revs, func(inc fhir.Include) bool { return inc.SourceType == st.Type }) {
			already++
		}
	}
	var out []store.Stored
	done := map[fhir.Include]bool{}
	for _, inc := range revs {
		inc.TargetType = "" // validated: empty or Organization
		if inc.SourceType == "Endpoint" || done[inc] || !records.ReferenceType(inc.SourceType) || !allow(inc.SourceType) {
			continue
		}
		done[inc] = true
		params := map[string]bool{inc.Param: true}
		names := func(st store.Stored) bool { // one of dir, on this server
			return slices.ContainsFunc(a.s.directoryOrgRefs(st.Body, params), func(id string) bool { return ids[id] })
		}
		for chunk := range slices.Chunk(refs, fhir.MaxOrValues) {
			q := url.Values{inc.Param: {strings.Join(chunk, ",")}, "_count": {strconv.Itoa(a.s.cfg.MaxCount)}, "_total": {"none"}}
			for {
				p, err := a.x.SearchAllowed(ctx, viewer(c), inc.SourceType, q, allow)
				if err != nil {
					return nil, err
				}
				for _, st := range p.Matches {
					if k := st.Type + "/" + st.ID; !seen[k] && names(st) {
						seen[k] = true
						out = append(out, st)
					}
				}
				if already+len(out) > records.MaxRevIncluded {
					return nil, errs.E(op, errs.Invalid, "_revinclude would add more than "+strconv.Itoa(records.MaxRevIncluded)+
						" resources to this page: lower _count, or narrow the search")
				}
				if p.Next == "" {
					break
				}
				q = url.Values{records.CursorParam: {p.Next}}
			}
		}
	}
	slices.SortFunc(out, func(x, y store.Stored) int {
		return cmp.Or(strings.Compare(x.Type, y.Type), strings.Compare(x.ID, y.ID))
	})
	return out, nil
}
