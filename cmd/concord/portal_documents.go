package main

import (
	"context"
	"io"
	"slices"
	"sort"
	"time"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/directory"
	"github.com/concord-hie/concord/documents"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/portal"
	"github.com/concord-hie/concord/records"
)

// portalDocuments serves the patient's documents page (portal.Documents): clinical
// documents through the enforcement point (records), their bytes through the documents
// service, and the patient's own uploads, each read audited before a byte leaves.
type portalDocuments struct {
	portalRecords
	docs  *documents.Service
	audit audit.Appender
	now   func() time.Time
}

// List implements portal.Documents: the person's clinical documents, near-duplicates
// (documents.ClusterListings: the same bytes, or the same type, author organization and
// clinical day) as one entry holding every copy, then the patient's uploads. The
// documents come through one consent-filtered compartment read (one audit event), so
// clustering sees only what v may see: a withheld copy counts nowhere and is
// never the primary. The primary is a copy the author organization sent itself (the
// author is that member's directory Organization), else the one with the latest clinical
// date, then the latest received (documents.ClusterListings); each copy stays its own
// document, listed once (a document with two contents too) and opened through Open. A row
// shows its primary's title and date, and rows are newest first by it.
func (p portalDocuments) List(ctx context.Context, v portal.Viewer) ([]portal.DocumentCluster, error) {
	refs := map[string]documents.Reference{}
	sts, err := p.rec.Compartment(ctx, p.viewer(v), v.PersonID, "DocumentReference", proxyKeep(v, func(st store.Stored) bool {
		d, ok := documents.ParseReference(st.Body)
		if !ok || d.Status == "entered-in-error" {
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
		t := refs[st.ID].Traits
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
		it := portal.DocumentItem{ID: pr.DocumentID, Title: d.Title, Date: d.Date, ContentType: pr.ContentType, Size: pr.Size, Status: pr.Status}
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

// Open implements portal.Documents: one authorized, audited read of document id (a
// DocumentReference, or the patient's own upload), whose content is opened only when want
// accepts the document's description.
func (p portalDocuments) Open(ctx context.Context, v portal.Viewer, id string, want func(portal.DocumentItem) bool) (*portal.DocumentFile, error) {
	const op = "portalDocuments.Open"
	ev := audit.Event{Actor: v.Actor, Role: string(v.Role), Purpose: consent.PurposePatientRequest, RequestID: v.RequestID, SourceIP: v.SourceIP}
	var ups []documents.PatientDocument
	var err error
	if v.Role == portal.RolePatient { // a patient's own uploads are theirs alone
		if ups, err = p.docs.PatientDocuments(ctx, v.PersonID, id); err != nil {
			return nil, err
		}
	}
	var cont documents.Content
	var d *records.Disclosure
	var item portal.DocumentItem
	if len(ups) == 1 {
		// The patient's own upload: no consent to decide, but the read is logged like any.
		cont = ups[0].Content
		item = uploadItem(ups[0])
		read := ev
		read.Time, read.Action, read.Outcome, read.Reason, read.Patient = p.now(), audit.Read, audit.Permit, "patient-upload", v.PersonID
		read.Resources = []audit.Resource{{Type: "DocumentReference", ID: id}}
		if err := p.audit.Append(ctx, read); err != nil {
			return nil, errs.E(op, errs.Unavailable, err)
		}
	} else {
		// What the list would not show (entered in error; for a caregiver, anything
		// sensitive) is not found, and its one audit event says it was not disclosed.
		var ref documents.Reference
		show := proxyKeep(v, func(st store.Stored) bool {
			var ok bool
			ref, ok = documents.ParseReference(st.Body)
			return ok && ref.Status != "entered-in-error"
		})
		if d, err = p.rec.ReadPendingIf(ctx, p.viewer(v), "DocumentReference", id, show); err != nil {
			return nil, err // a denial is NotFound, before the object store is touched
		}
		if cont, err = p.docs.ContentOfDocument(ctx, id); err != nil {
			_ = d.Wait()
			return nil, err
		}
		source := p.memberNames(ctx)[d.Stored.MemberID]
		if source == "" {
			source = d.Stored.MemberID
		}
		item = portal.DocumentItem{ID: id, Title: ref.Title, Date: ref.Date, Sources: []string{source},
			ContentType: cont.ContentType, Size: cont.Size, Status: ref.Status}
	}
	f := &portal.DocumentFile{Item: item, ContentType: cont.ContentType, Filename: cont.Filename(), Size: cont.Size, Close: func() error { return nil }}
	if want == nil || want(item) {
		tr, err := p.docs.Open(ctx, cont, ev)
		if err != nil {
			if d != nil {
				_ = d.Wait()
			}
			return nil, err
		}
		f.Write = func(w io.Writer) error { return tr.WriteRange(w, documents.ByteRange{Start: 0, End: -1}) }
		f.Close = tr.Close
	}
	if d != nil {
		if err := d.Wait(); err != nil { // nothing leaves before the read's event is durable
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

// uploadItem describes the patient's own upload u.
func uploadItem(u documents.PatientDocument) portal.DocumentItem {
	return portal.DocumentItem{ID: u.ID, Title: "Your upload", Date: u.Created, ContentType: u.Content.ContentType,
		Size: u.Content.Size, Status: "current", Uploaded: true}
}

func (p portalDocuments) Upload(ctx context.Context, v portal.Viewer, key, contentType string, body io.Reader) error {
	if v.PersonID == "" {
		return errs.E("portalDocuments.Upload", errs.Forbidden, "only a patient uploads their own documents")
	}
	_, err := p.docs.UploadPatientDocument(ctx, v.PersonID, documents.PatientUpload{IdempotencyKey: key, ContentType: contentType, Body: body})
	return err
}
