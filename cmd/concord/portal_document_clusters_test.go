package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/concord-hie/concord/directory"
	"github.com/concord-hie/concord/documents"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/portal"
)

// seedNearDuplicates stores, for demo person 0, one discharge summary (authored by her first
// clinic, for a visit ten days ago) as three documents with different bytes: the author's
// own copy, labelled psychiatric (PSY), and two re-renderings her second clinic sent. It
// returns their IDs in that order.
func seedNearDuplicates(t *testing.T, m *Main) []string {
	t.Helper()
	ctx := context.Background()
	region := demoRegion(m.cfg.DemoSeed)
	p := region.persons[0]
	author := region.members[p.Members[0]]
	visit := time.Now().UTC().AddDate(0, 0, -10).Truncate(24 * time.Hour).Add(9 * time.Hour)
	copies := []struct {
		member int
		label  string
		ct     string
		body   string
		date   time.Time
	}{
		{p.Members[0], "PSY", "text/plain", "Discharge summary\nAdmitted for observation.\n-- Riverside EHR\n", visit},
		{p.Members[1], "", "text/plain", "Discharge summary\nAdmitted for observation.\n-- forwarded by Valley\n", visit.Add(3 * time.Hour)},
		{p.Members[1], "", "application/xml", "<ClinicalDocument><title>Discharge summary</title></ClinicalDocument>", visit.Add(26 * time.Hour)},
	}
	var ids []string
	for _, c := range copies {
		err := db.InTx(ctx, m.pool, func(tx db.Querier) error {
			dm := region.members[c.member]
			src, err := m.mpi.SourceByIdentifier(ctx, tx, dm.OID, region.mrn(c.member, 0))
			if err != nil {
				return err
			}
			doc := map[string]any{
				"resourceType": "DocumentReference", "status": "current",
				"type":    map[string]any{"coding": []any{map[string]any{"system": "http://loinc.org", "code": "18842-5", "display": "Discharge summary"}}},
				"subject": map[string]any{"reference": "Patient/" + src.PatientID},
				"author":  []any{map[string]any{"reference": "Organization/" + directory.OrganizationID(author.ID)}},
				// The index date differs by copy; the visit is the same day.
				"date":    c.date.Format(time.RFC3339),
				"context": map[string]any{"period": map[string]any{"start": visit.Format(time.RFC3339)}},
				"content": []any{map[string]any{"attachment": map[string]any{"contentType": c.ct, "data": []byte(c.body)}}},
			}
			w := store.Write{MemberID: dm.ID, PatientID: src.PatientID, At: time.Now()}
			if c.label != "" {
				w.Security = []fhir.Coding{{System: "http://terminology.hl7.org/CodeSystem/v3-ActCode", Code: c.label}}
				doc["meta"] = map[string]any{"security": w.Security}
			}
			raw, err := json.Marshal(doc)
			if err != nil {
				return err
			}
			if w.Resource, err = fhir.Parse(raw); err != nil {
				return err
			}
			w.ID = store.NewID()
			if w.Resource, err = m.docs.IngestResource(ctx, tx, documents.Intake{MemberID: dm.ID, PatientID: src.PatientID, ID: w.ID, Resource: w.Resource}); err != nil {
				return err
			}
			ids = append(ids, w.ID)
			_, err = m.fhir.Put(ctx, tx, w)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

// TestPortalDocumentClusters: near-duplicates of one discharge summary (same type, author
// organization and visit day; different bytes, index dates and senders) are one entry with
// every copy, the author's own copy first; the demo's other documents keep their entries
// (the shared visit note still "2 copies from 2 organizations"). A copy withheld from the viewer
// (PSY: from a caregiver by the patient's choice, from a clinician for treatment by consent)
// changes the count and never leads. Every listed copy opens.
func TestPortalDocumentClusters(t *testing.T) {
	m := demoEnv(t)
	ctx := context.Background()
	region := demoRegion(m.cfg.DemoSeed)
	ids := seedNearDuplicates(t, m)
	pd := portalDocuments{portalRecords{m.records, m.directory}, m.docs, m.audit, time.Now}
	ana := portal.Viewer{PersonID: demoPersonID(t, m, 0), Role: portal.RolePatient, Actor: "iss|demo-ana", RequestID: "clusters-1"}

	discharge := func(v portal.Viewer) (portal.DocumentCluster, []portal.DocumentCluster) {
		t.Helper()
		cls, err := pd.List(ctx, v)
		if err != nil {
			t.Fatal(err)
		}
		var found []portal.DocumentCluster
		for _, c := range cls {
			for _, cp := range c.Copies {
				if cp.ID == ids[1] || cp.ID == ids[2] {
					found = append(found, c)
					break
				}
			}
		}
		if len(found) != 1 {
			t.Fatalf("the discharge summary's copies are in %d entries, want 1: %+v", len(found), cls)
		}
		return found[0], cls
	}
	copyIDs := func(c portal.DocumentCluster) string {
		var s []string
		for _, cp := range c.Copies {
			s = append(s, cp.ID)
		}
		return strings.Join(s, " ")
	}

	c, all := discharge(ana)
	if c.Item.Copies != "3 copies from 2 organizations" || c.Item.ID != ids[0] || len(c.Copies) != 3 || c.Copies[0].ID != ids[0] ||
		!strings.Contains(copyIDs(c), ids[1]) || !strings.Contains(copyIDs(c), ids[2]) || len(c.Item.Sources) != 2 {
		t.Fatalf("patient's entry: %+v (copies %s), want 3 copies from 2 organizations led by the author's own %s", c.Item, copyIDs(c), ids[0])
	}
	var note, clinical int
	for _, e := range all {
		if e.Item.Uploaded {
			continue
		}
		clinical++
		if e.Item.Title == "Progress note" && e.Item.Copies == "2 copies from 2 organizations" {
			note++
		}
	}
	if clinical != 3 || note != 1 {
		t.Errorf("%d clinical entries (want the demo's discharge summary, its visit note once, and this cluster); note entries %d: %+v", clinical, note, all)
	}
	for _, cp := range c.Copies {
		if cp.Received.IsZero() || cp.Size == 0 || cp.ContentType == "" || cp.Source == "" {
			t.Errorf("copy %+v lacks a fact the list shows", cp)
		}
		ana.RequestID = "clusters-open-" + cp.ID
		f, err := pd.Open(ctx, ana, cp.ID, nil)
		if err != nil {
			t.Fatalf("open copy %s: %v", cp.ID, err)
		}
		var b strings.Builder
		if err := f.Write(&b); err != nil || int64(b.Len()) != cp.Size {
			t.Errorf("copy %s: %d bytes of %d, %v", cp.ID, b.Len(), cp.Size, err)
		}
		f.Close()
	}

	carer := ana
	carer.Role, carer.Actor, carer.RequestID = portal.RoleProxy, "iss|demo-ben", "clusters-carer"
	doc := portal.Viewer{Role: portal.RoleClinician, Org: region.members[0].ID, Actor: "iss|demo-dr.riverside", PersonID: "", RequestID: "clusters-doc"}
	for name, v := range map[string]portal.Viewer{"caregiver": carer, "clinician": doc} {
		if v.PersonID == "" {
			v.PersonID = ana.PersonID
		}
		c, _ := discharge(v)
		if c.Item.Copies != "2 copies from 1 organization" || len(c.Copies) != 2 || c.Item.ID == ids[0] || strings.Contains(copyIDs(c), ids[0]) ||
			len(c.Item.Sources) != 1 || c.Item.Sources[0] != region.members[region.persons[0].Members[1]].Name {
			t.Errorf("%s's entry: %+v (copies %s), want the two visible copies only", name, c.Item, copyIDs(c))
		}
	}
}
