package exchange

import (
	"encoding/json"
	"maps"
	"net/url"
	"slices"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/directory"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/records"
)

// directoryOrgIncludes are the _include parameters of stored reference data whose target
// may be a directory Organization (member-<id>, concord). The directory is not in the
// resource store, so records' include finds nothing for such a target;
// includeDirectoryOrganizations adds it. Each names the search's source type and parameter
// and reads the references of one stored body.
var directoryOrgIncludes = []struct {
	source, param string
	refs          func(body []byte) []string
}{
	{"PractitionerRole", "organization", func(body []byte) []string {
		var r struct{ Organization struct{ Reference string } }
		if json.Unmarshal(body, &r) != nil || r.Organization.Reference == "" {
			return nil
		}
		return []string{r.Organization.Reference}
	}},
}

// includeDirectoryOrganizations completes the includes of a page records answered: for
// each _include of directoryOrgIncludes the page asked for, the directory Organizations its
// matches reference (relative, or absolute on this server's FHIR base, a version naming the
// Organization as it stands) are added to page.Included in id order, search mode include,
// but none that is already on the page. Directory data is reference data that no consent
// decides, but the token must allow Organization (allowedTypes), as records requires of
// what it includes; without it nothing is added. The directory is loaded once for the
// page. What is added is audited as a reference-data query (q, the cursor left out) before
// it is returned. It returns the directory's error when the directory cannot be read, or
// errs.Unavailable when the event cannot be committed; then page must not be disclosed.
func (a *SearchAPI) includeDirectoryOrganizations(c echo.Context, q url.Values, page *records.Page) error {
	if len(page.Matches) == 0 || !allowedTypes(c)("Organization") {
		return nil
	}
	want := map[string]bool{}
	for _, inc := range page.Search.Include {
		if inc.TargetType != "" && inc.TargetType != "Organization" {
			continue
		}
		for _, d := range directoryOrgIncludes {
			if inc.SourceType != d.source || inc.Param != d.param {
				continue
			}
			for _, m := range page.Matches {
				if m.Type != d.source {
					continue
				}
				for _, raw := range d.refs(m.Body) {
					ref, err := fhir.ParseReference(raw)
					if err == nil && ref.Type == "Organization" && directory.IsDirectoryID(ref.ID) &&
						(ref.Kind == fhir.RefRelative || ref.Kind == fhir.RefAbsolute && ref.Base == a.s.FHIRBase()) {
						want[ref.ID] = true
					}
				}
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
	if err := a.x.AuditReference(ctx, viewer(c), audit.Query, withoutCursor(q), auditedResources(added)); err != nil {
		return err
	}
	page.Included = append(page.Included, added...)
	return nil
}
