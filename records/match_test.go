package records_test

import (
	"context"
	"testing"
	"time"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/consent"
	mpistore "github.com/concord-hie/concord/mpi/store"
	"github.com/concord-hie/concord/records"
)

func TestIdentityPatients(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	q := records.IdentityQuery{Persons: []string{f.person, string(mpistore.NewPersonID())}, One: true, Reason: "match"}

	// Member a sees its own Patient, and only that one.
	a := records.Viewer{Client: "a1", Org: "a", Role: consent.RoleSystem, Purpose: consent.PurposeTreatment}
	got, err := f.svc.IdentityPatients(ctx, a, q)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || len(got[0]) != 1 || got[0][0].MemberID != "a" || got[1] != nil {
		t.Fatalf("own member view: %+v", got)
	}
	// Member c (no record of its own) sees another member's Patient for treatment.
	c := a
	c.Client, c.Org = "c1", "c"
	if got, err = f.svc.IdentityPatients(ctx, c, q); err != nil || len(got[0]) != 1 || got[0][0].MemberID == "c" {
		t.Fatalf("treatment view of member c: %+v %v", got, err)
	}
	all := q
	all.One = false
	if got, err = f.svc.IdentityPatients(ctx, c, all); err != nil || len(got[0]) != 2 {
		t.Fatalf("all permitted Patients for c: %d %v", len(got[0]), err)
	}
	// Without purpose TREAT member c sees nothing — exactly as for an unknown person.
	pay := c
	pay.Purpose = consent.PurposePayment
	if got, err = f.svc.IdentityPatients(ctx, pay, q); err != nil || got[0] != nil || got[1] != nil {
		t.Fatalf("payment view: %+v %v", got, err)
	}
	// The patient opts out: member c sees nothing and the denial is audited; member a still
	// sees its own.
	f.dirs.dirs = append(f.dirs.dirs, consent.Directive{ID: "optout", Version: 1, PersonID: f.person, Kind: consent.KindPatient,
		PolicyRule: consent.OptOut, Status: consent.StatusActive, DateTime: time.Now().Add(-time.Hour),
		Provision: consent.Provision{Type: consent.Deny, Purposes: []string{consent.PurposeTreatment}}})
	n := len(f.log.events)
	if got, err = f.svc.IdentityPatients(ctx, c, q); err != nil || got[0] != nil {
		t.Fatalf("after opt-out member c sees %+v %v", got, err)
	}
	if len(f.log.events) != n+1 || f.log.events[n].Outcome != audit.Deny || f.log.events[n].Patient != f.person || f.log.events[n].Reason == "" {
		t.Fatalf("opt-out denial audit: %+v", f.log.events[n:])
	}
	if got, err = f.svc.IdentityPatients(ctx, a, q); err != nil || len(got[0]) != 1 {
		t.Fatalf("own record after opt-out: %+v %v", got, err)
	}
	// Keep narrows to a domain; audit down fails closed.
	dom := q
	dom.Keep = func(s mpistore.Source) bool { return s.MemberID == "b" }
	if got, err = f.svc.IdentityPatients(ctx, a, dom); err != nil || got[0] != nil {
		t.Fatalf("member a, domain b, after opt-out: %+v %v", got, err)
	}
	f.log.fail = true
	if _, err := f.svc.IdentityPatients(ctx, a, q); err == nil {
		t.Fatal("audit down: answered")
	}
}
