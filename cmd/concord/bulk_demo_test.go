package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
)

// TestDemoBulkExport runs a Bulk Data export against the demo as a member's EHR would:
// a real client-credentials token (the demo registers bulk export by name), a roster
// Group of the member's own Patient for Ana, kick-off, manifest, and the Observation file,
// which holds Ana's labs from every member that sent them, each naming its source, with
// one export audit event per download.
func TestDemoBulkExport(t *testing.T) {
	m := demoEnv(t)
	base := m.cfg.BaseURL + "/fhir"
	region := demoRegion(m.cfg.DemoSeed)
	member := region.members[0] // Riverside Family Clinic knows Ana
	tok := tokenFor(t, m, member.ID, "system/*.cruds system/BulkExport.r")

	status, body, _ := fhirDo(t, "POST", base+"/Patient", tok, patientJSON(region.persons[0], member, region.mrn(0, 0)))
	var pat struct{ ID string }
	if status != http.StatusOK || json.Unmarshal(body, &pat) != nil || pat.ID == "" {
		t.Fatalf("Ana's Patient at Riverside: %d %s", status, body)
	}
	status, body, _ = fhirDo(t, "POST", base+"/Group", tok, []byte(`{"resourceType":"Group","type":"person","actual":true,"member":[{"entity":{"reference":"Patient/`+pat.ID+`"}}]}`))
	var group struct{ ID string }
	if status != http.StatusCreated || json.Unmarshal(body, &group) != nil {
		t.Fatalf("roster: %d %s", status, body)
	}
	if status, body, _ := fhirDo(t, "GET", base+"/Group/"+group.ID+"/$export", token(t, m, member.ID), nil, "Prefer", "respond-async"); status != http.StatusForbidden {
		t.Fatalf("kick-off without the bulk export scope: %d %s, want 403", status, body)
	}
	status, body, hdr := fhirDo(t, "GET", base+"/Group/"+group.ID+"/$export?_type=Observation", tok, nil, "Prefer", "respond-async")
	if status != http.StatusAccepted || hdr.Get("Content-Location") == "" {
		t.Fatalf("kick-off: %d %s", status, body)
	}
	status, body, _ = fhirDo(t, "GET", hdr.Get("Content-Location"), tok, nil)
	var manifest struct{ Output []struct{ Type, URL string } }
	if status != http.StatusOK || json.Unmarshal(body, &manifest) != nil || len(manifest.Output) != 1 {
		t.Fatalf("manifest: %d %s", status, body)
	}
	status, body, hdr = fhirDo(t, "GET", manifest.Output[0].URL, tok, nil, "Accept", "application/fhir+ndjson")
	if status != http.StatusOK || hdr.Get("Content-Type") != "application/fhir+ndjson" {
		t.Fatalf("file: %d %q %s", status, hdr.Get("Content-Type"), body)
	}
	sources := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var obs struct {
			ResourceType string
			Meta         struct{ Source string }
		}
		if err := json.Unmarshal(sc.Bytes(), &obs); err != nil || obs.ResourceType != "Observation" || obs.Meta.Source == "" {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		sources[obs.Meta.Source]++
	}
	if len(sources) < 2 {
		t.Fatalf("Ana's labs came from %v; want the regional record (several members)", sources)
	}
	var events int
	if err := m.pool.QueryRow(t.Context(), `SELECT count(*) FROM audit_events WHERE action = 'export' AND outcome = 'permit' AND org = $1 AND role = 'system'`,
		member.ID).Scan(&events); err != nil || events != 1 {
		t.Fatalf("%d export audit events (%v), want 1 for the one download", events, err)
	}
}
