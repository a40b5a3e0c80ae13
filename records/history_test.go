package records_test

import (
	"context"
	"testing"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/records"
)

func TestOwnVersionAndHistoryAuditFirst(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	own := records.Viewer{Client: "a1", Org: "a", Role: "system", Purpose: "TREAT"}
	st, err := f.svc.OwnVersion(ctx, own, "Observation", f.obsA, 1)
	if err != nil || st.ID != f.obsA {
		t.Fatalf("own version: %v", err)
	}
	if len(f.log.events) != 1 || f.log.events[0].Action != audit.Read || f.log.events[0].Reason != "own-record" || f.log.events[0].Patient != f.person {
		t.Fatalf("events after the version read: %+v; want one Read own-record for the person", f.log.events)
	}
	if list, err := f.svc.OwnHistory(ctx, own, "Observation", f.obsA, 10); err != nil || len(list) != 1 || len(f.log.events) != 2 {
		t.Fatalf("own history: %d versions, %v, %d events", len(list), err, len(f.log.events))
	}
	other := records.Viewer{Client: "c1", Org: "c", Role: "system", Purpose: "TREAT"}
	if _, err := f.svc.OwnVersion(ctx, other, "Observation", f.obsA, 1); errs.CodeOf(err) != errs.NotFound {
		t.Fatalf("another member's version: %v; want NotFound", err)
	}
	if _, err := f.svc.OwnHistory(ctx, other, "Observation", f.obsA, 10); errs.CodeOf(err) != errs.NotFound {
		t.Fatalf("another member's history: %v; want NotFound", err)
	}
	// Both refusals are audited as denials for the person; an unknown id has no person.
	for _, ev := range f.log.events[2:] {
		if ev.Outcome != audit.Deny || ev.Reason != "not-owner" || ev.Patient != f.person || ev.Org != "c" {
			t.Fatalf("event of a refused version or history: %+v; want Deny not-owner for the person", ev)
		}
	}
	if len(f.log.events) != 4 {
		t.Fatalf("%d events; want 4 (two reads, two denials)", len(f.log.events))
	}
	f.log.fail = true
	if _, err := f.svc.OwnVersion(ctx, own, "Observation", f.obsA, 1); errs.CodeOf(err) != errs.Unavailable {
		t.Fatalf("version read with the audit log down: %v; want Unavailable", err)
	}
	if _, err := f.svc.OwnHistory(ctx, own, "Observation", f.obsA, 10); errs.CodeOf(err) != errs.Unavailable {
		t.Fatalf("history with the audit log down: %v; want Unavailable", err)
	}
}
