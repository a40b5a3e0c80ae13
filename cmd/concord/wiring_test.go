package main

import (
	"context"
	"strings"
	"testing"

	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/portal"
)

// TestPatientLookupByPerson: the clinician's look-up by person finds the organization's
// own record (name, MRN) through an audited read, and is NotFound at an organization that
// holds no record of the person.
func TestPatientLookupByPerson(t *testing.T) {
	m := demoEnv(t)
	ctx := context.Background()
	region := demoRegion(m.cfg.DemoSeed)
	riverside := region.members[0].ID
	srcs, err := m.mpi.SourcesOfMember(ctx, riverside, region.mrn(0, 0))
	if err != nil || len(srcs) != 1 {
		t.Fatalf("Ana's source at %s: %v, %v", riverside, srcs, err)
	}
	person := string(srcs[0].PersonID)
	l := patientLookup{portalRecords{m.records, m.directory}, m.mpi}
	v := portal.Viewer{Role: portal.RoleClinician, Org: riverside, Actor: "https://idp.example|doc-1", RequestID: "lookup-by-person-1"}
	p, err := l.ByPerson(ctx, v, person)
	if err != nil || p.MRN != region.mrn(0, 0) || p.PersonID != person || !strings.Contains(p.Name, "Ana") {
		t.Fatalf("ByPerson: %+v, %v", p, err)
	}
	var n int
	if err := m.pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE request_id = $1 AND patient = $2 AND outcome = 'permit'`,
		v.RequestID, person).Scan(&n); err != nil || n != 1 {
		t.Fatalf("audit events of the look-up: %d, %v; want 1", n, err)
	}
	v.Org = "no-such-member"
	if _, err := l.ByPerson(ctx, v, person); errs.CodeOf(err) != errs.NotFound {
		t.Fatalf("at an organization without the person: %v; want NotFound", err)
	}
}
