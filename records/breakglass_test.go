package records_test

import (
	"context"
	"testing"
	"time"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
	mpistore "github.com/concord-hie/concord/mpi/store"
	"github.com/concord-hie/concord/records"
)

func TestBreakGlassDeclarationScopeExpiryAndDissent(t *testing.T) {
	f := newStoreFixture(t)
	ctx := context.Background()
	t0 := time.Now()
	clock := t0
	svc := records.New(store.New(f.pool), mpistore.New(f.pool), f.cache, f.log, func() time.Time { return clock })
	bg := records.NewBreakGlassStore(f.pool)
	btg := records.Viewer{Client: "b1", Org: "b", Role: consent.RoleSystem, Purpose: consent.PurposeBreakGlass, RequestID: "btg-1"}
	read := func(v records.Viewer) bool {
		t.Helper()
		v, err := bg.ForPerson(ctx, f.pool, v, f.person, clock)
		if err != nil {
			t.Fatal(err)
		}
		_, err = svc.Read(ctx, v, "Observation", f.obs)
		if err != nil && errs.CodeOf(err) != errs.NotFound {
			t.Fatal(err)
		}
		return err == nil
	}
	f.setOptOut(t, true) // the patient opted out of treatment sharing
	if read(memberB) {
		t.Fatal("treatment read after the opt-out: permitted")
	}
	if read(btg) {
		t.Fatal("BTG read with no declaration: permitted")
	}
	if _, err := (consent.BreakGlassPolicy{}).Declare(false, consent.BTGUnresponsive, "unconscious in the ED", t0, 0); errs.CodeOf(err) != errs.Forbidden {
		t.Fatalf("declaring without the permission: %v; want Forbidden", err)
	}
	g, err := (consent.BreakGlassPolicy{}).Declare(true, consent.BTGUnresponsive, "unconscious in the ED", t0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var d records.Declaration
	if err := db.InTx(ctx, f.pool, func(tx db.Querier) error {
		d, err = bg.Declare(ctx, tx, records.Declaration{PersonID: f.person, MemberID: "b", ClientID: "b1", Glass: g, RequestID: "decl-1"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var tasks, notes int
	if err := f.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM consent_review_tasks WHERE break_glass_id = $1 AND status = 'open'),
		(SELECT count(*) FROM consent_patient_notifications WHERE break_glass_id = $1 AND sent_at IS NULL)`, d.ID).Scan(&tasks, &notes); err != nil {
		t.Fatal(err)
	}
	if tasks != 1 || notes != 1 {
		t.Fatalf("declaration opened %d review tasks and %d notifications; want 1 and 1", tasks, notes)
	}

	n := len(f.log.events)
	if !read(btg) {
		t.Fatal("BTG read with a valid declaration: denied")
	}
	if ev := f.log.events[n]; !ev.BreakGlass || ev.Purpose != consent.PurposeBreakGlass || ev.Outcome != audit.Permit || ev.Reason != consent.BreakGlassOverride.String() {
		t.Fatalf("BTG use audited as %+v; want a permit with BreakGlass and purpose BTG", ev)
	}
	if read(memberB) {
		t.Fatal("a declaration leaked into a TREAT request")
	}
	other := btg
	other.Client = "b2"
	if read(other) {
		t.Fatal("another client of the same member used the declaration")
	}
	clock = t0.Add(59 * time.Minute)
	if !read(btg) {
		t.Fatal("declaration lapsed before its hour")
	}
	clock = t0.Add(60 * time.Minute)
	if read(btg) {
		t.Fatal("BTG read at expiry: permitted")
	}

	// A dissent that names BTG wins over a valid declaration.
	clock = t0.Add(time.Minute)
	dissent := consent.Directive{ID: consent.DirectiveID("nobtg-" + f.person[:8]), PersonID: f.person, Kind: consent.KindPatient,
		PolicyRule: consent.OptOut, Status: consent.StatusActive, DateTime: t0.UTC().Truncate(time.Second),
		Provision: consent.Provision{Type: consent.Deny, Purposes: []string{consent.PurposeBreakGlass}}}
	if err := db.InTx(ctx, f.pool, func(tx db.Querier) error {
		_, _, err := f.cstore.Save(ctx, tx, dissent, "test")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if read(btg) {
		t.Fatal("BTG read against a dissent that excludes BTG: permitted")
	}
}
