package records_test

import (
	"context"
	"testing"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/records"
)

func TestSharedDecidesAsShareRoleAndAuditsTheUse(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	sh := records.Share{LinkID: 7, PersonID: f.person, RequestID: "r-share", SourceIP: "192.0.2.1"}
	got, err := f.svc.Shared(ctx, sh, "Observation", nil, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != f.obsA {
		t.Fatalf("all labs through a link: %d results; want only the unlabelled one (b's is PSY)", len(got))
	}
	if len(f.log.events) != 1 {
		t.Fatalf("audit: %d events; want one per use", len(f.log.events))
	}
	ev := f.log.events[0]
	if !ev.ShareLink || ev.Role != consent.RoleShare || ev.Purpose != consent.PurposePatientRequest || ev.Actor != "" ||
		ev.Patient != f.person || ev.RequestID != "r-share" || ev.TokenID != "share-link/7" || ev.Action != audit.Query ||
		ev.Outcome != audit.Permit || len(ev.Resources) != 1 {
		t.Fatalf("audit event = %+v", ev)
	}
	// With sensitive results chosen: both (right of access, no Part 2 here).
	sh.IncludeSensitive = true
	if got, err = f.svc.Shared(ctx, sh, "Observation", nil, 100); err != nil || len(got) != 2 || len(f.log.events[1].Resources) != 2 {
		t.Fatalf("all labs with sensitive ones: %d, %v", len(got), err)
	}
	sh.IncludeSensitive = false
	// A link naming the sensitive result shows it: the patient chose it.
	sh.ResourceID = f.obsB
	if got, err = f.svc.Shared(ctx, sh, "Observation", nil, 100); err != nil || len(got) != 1 || got[0].ID != f.obsB {
		t.Fatalf("the PSY result by name: %d, %v", len(got), err)
	}
	f.log.events = f.log.events[:1]

	// A link that names one result shows that one only, audited as a read.
	sh.ResourceID = f.obsA
	got, err = f.svc.Shared(ctx, sh, "Observation", nil, 100)
	if err != nil || len(got) != 1 || got[0].ID != f.obsA {
		t.Fatalf("one lab through a link: %d, %v", len(got), err)
	}
	if ev := f.log.events[1]; ev.Action != audit.Read || !ev.ShareLink || len(ev.Resources) != 1 {
		t.Fatalf("audit of a one-result link = %+v", ev)
	}
	// Another person's resource ID through this person's link: nothing.
	sh.ResourceID = "not-in-this-compartment"
	if got, err := f.svc.Shared(ctx, sh, "Observation", nil, 100); err != nil || len(got) != 0 {
		t.Fatalf("foreign resource through a link: %d, %v; want none", len(got), err)
	}
}

func TestSharedHonoursDenyAndFailsClosed(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	sh := records.Share{LinkID: 1, PersonID: f.person}
	f.dirs.dirs = append(f.dirs.dirs, consent.Directive{ID: "no-links", Kind: consent.KindPatient, PersonID: f.person,
		Status: consent.StatusActive, PolicyRule: consent.OptOut, Version: 1,
		Provision: consent.Provision{Type: consent.Deny, Actors: []consent.Actor{{Role: consent.RoleShare}}, Purposes: []string{consent.PurposePatientRequest}}})
	got, err := f.svc.Shared(ctx, sh, "Observation", nil, 100)
	if err != nil || len(got) != 0 {
		t.Fatalf("patient denied share links: %d, %v; want none", len(got), err)
	}
	if ev := f.log.events[0]; ev.Outcome != audit.Deny || !ev.ShareLink {
		t.Fatalf("denial audited as %+v", ev)
	}
	f.log.fail = true
	if got, err := f.svc.Shared(ctx, sh, "Observation", nil, 100); errs.CodeOf(err) != errs.Unavailable || got != nil {
		t.Fatalf("audit down: %d, %v; want none and Unavailable", len(got), err)
	}
}
