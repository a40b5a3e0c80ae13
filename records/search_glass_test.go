package records_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/records"
)

// TestBreakGlassAppliesToSearchEverythingAndIdentity: a viewer with purpose BTG and an
// active declaration for the person is decided with it in search, $everything and the
// identity transactions, as in Read, and each event is marked BreakGlass; without the
// declaration only its own member's records show.
func TestBreakGlassAppliesToSearchEverythingAndIdentity(t *testing.T) {
	f := setupRegional(t)
	ctx := context.Background()
	btg := records.Viewer{Client: "client-a", Org: "a", Role: consent.RoleSystem, Purpose: consent.PurposeBreakGlass, RequestID: "btg"}
	show := func() (search, everything, identity []string) {
		t.Helper()
		p, err := f.x.Search(ctx, btg, "Observation", query(t, "patient="+f.pa+"&_count=50"))
		if err != nil {
			t.Fatal(err)
		}
		search = ids(p.Matches)
		if p, err = f.x.Everything(ctx, btg, f.pa, query(t, "_count=50"), nil); err != nil {
			t.Fatal(err)
		}
		everything = ids(p.Matches)
		got, err := f.svc.IdentityPatients(ctx, btg, records.IdentityQuery{Persons: []string{f.p}, Reason: "match"})
		if err != nil {
			t.Fatal(err)
		}
		identity = ids(got[0])
		return
	}
	s, e, i := show()
	if slices.Contains(s, f.obsB[0]) || slices.Contains(e, f.obsB[0]) || slices.Contains(i, f.pb) {
		t.Fatalf("BTG without a declaration disclosed member b's records: search %v everything %v identity %v", s, e, i)
	}
	g, err := (consent.BreakGlassPolicy{}).Declare(true, consent.BTGUnresponsive, "unconscious in the ED", time.Now(), 0)
	if err != nil {
		t.Fatal(err)
	}
	bg := records.NewBreakGlassStore(f.pool)
	if err := db.InTx(ctx, f.pool, func(tx db.Querier) error {
		_, err := bg.Declare(ctx, tx, records.Declaration{PersonID: f.p, MemberID: "a", ClientID: "client-a", Glass: g, RequestID: "decl"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	n := len(f.log.events)
	s, e, i = show()
	if !slices.Contains(s, f.obsB[0]) || !slices.Contains(e, f.obsB[0]) || !slices.Contains(i, f.pb) {
		t.Fatalf("BTG with a declaration: search %v everything %v identity %v; want member b's result and Patient", s, e, i)
	}
	for _, ev := range f.log.events[n:] {
		if ev.Patient == f.p && !ev.BreakGlass {
			t.Fatalf("disclosure under the declaration audited without BreakGlass: %+v", ev)
		}
	}
}
