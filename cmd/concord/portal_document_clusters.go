package main

import (
	"context"
	"encoding/json"
	"slices"
	"sort"

	"github.com/concord-hie/concord/directory"
	"github.com/concord-hie/concord/documents"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/portal"
)

var _ portal.DocumentClusters = portalDocuments{}

// Clusters implements portal.DocumentClusters: what List lists, with near-duplicate
// clinical documents (documents.ClusterListings) as one entry holding every copy. The
// documents come through the same consent-filtered compartment read as List's (one audit
// event), so clustering sees only what v may see: a withheld copy counts nowhere and is
// never the primary. The primary is a copy the author organization sent itself (the
// author is that member's directory Organization), else the one with the latest clinical
// date, then the latest received (documents.ClusterListings); each copy stays its own
// document, listed once (a document with two contents too) and opened through Open. A row
// shows its primary's title and date as List does, and rows are newest first by it.
func (p portalDocuments) Clusters(ctx context.Context, v portal.Viewer) ([]portal.DocumentCluster, error) {
	refs := map[string]docRef{}
	sts, err := p.rec.Compartment(ctx, p.viewer(v), v.PersonID, "DocumentReference", proxyKeep(v, func(st store.Stored) bool {
		var d docRef
		if json.Unmarshal(st.Body, &d) != nil || d.Status == "entered-in-error" {
			return false
		}
		refs[st.ID] = d
		return true
	}), 500)
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(sts))
	traits := make(map[string]documents.Traits, len(sts))
	for _, st := range sts {
		ids = append(ids, st.ID)
		t := documents.TraitsOf(st.Body)
		t.Person, t.MemberID = v.PersonID, st.MemberID
		t.FromAuthor = t.AuthorOrg == "Organization/"+directory.OrganizationID(st.MemberID)
		traits[st.ID] = t
	}
	listings, err := p.docs.Group(ctx, ids)
	if err != nil {
		return nil, err
	}
	names := p.memberNames(ctx)
	name := func(mid string) string {
		if n := names[mid]; n != "" {
			return n
		}
		return mid
	}
	var out []portal.DocumentCluster
	for _, cl := range documents.ClusterListings(listings, traits) {
		pr := cl.Primary()
		d := refs[pr.DocumentID]
		it := portal.DocumentItem{ID: pr.DocumentID, Title: d.title(), Date: d.date(), ContentType: pr.ContentType, Size: pr.Size, Status: pr.Status}
		for _, mid := range cl.Members() {
			if n := name(mid); !slices.Contains(it.Sources, n) {
				it.Sources = append(it.Sources, n)
			}
		}
		if cl.Documents() > 1 {
			it.Copies = cl.Summary()
		}
		e := portal.DocumentCluster{Item: it}
		for _, c := range cl.Copies {
			if slices.ContainsFunc(e.Copies, func(x portal.DocumentCopy) bool { return x.ID == c.DocumentID }) {
				continue // another content of a document listed already: the document opens once
			}
			e.Copies = append(e.Copies, portal.DocumentCopy{ID: c.DocumentID, Source: name(c.MemberID), Received: c.Received,
				ContentType: c.ContentType, Size: c.Size, Status: c.Status})
		}
		out = append(out, e)
	}
	// Newest first by the date each row shows (stable: ClusterListings' order breaks ties).
	sort.SliceStable(out, func(i, j int) bool { return out[i].Item.Date.After(out[j].Item.Date) })
	if v.Role == portal.RoleProxy {
		return out, nil // a patient's own uploads are theirs alone
	}
	ups, err := p.docs.PatientDocuments(ctx, v.PersonID)
	if err != nil {
		return nil, err
	}
	for _, u := range ups {
		out = append(out, portal.DocumentCluster{Item: uploadItem(u)})
	}
	return out, nil
}
