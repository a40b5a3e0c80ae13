package store_test

import (
	"testing"

	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/mpi/store"
)

func TestPersonProvenance(t *testing.T) {
	e := newOpsEnv(t)
	a1 := e.link("a", "A1", ana())
	// Member b sends the same person with a new phone.
	b1 := e.link("b", "B1", patient("Ana", "Rivera", "female", "1984-03-12", "418 Willow Creek Rd", "951-555-0199", "523-41-7789"))
	if b1.Source.PersonID != a1.Source.PersonID {
		t.Fatalf("setup: b1 went to %s", b1.Outcome)
	}
	s := store.New(e.pool)
	v, err := s.Person(e.ctx, a1.Source.PersonID, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Sources) != 2 || v.Sources[0].MemberID != "a" || v.Sources[1].MemberID != "b" {
		t.Fatalf("sources by member: %+v", v.Sources)
	}
	if len(v.Name) != 1 || v.Name[0].Value != "Ana Rivera" || len(v.Name[0].From) != 2 {
		t.Fatalf("name provenance: %+v", v.Name)
	}
	if len(v.Phone) != 2 {
		t.Fatalf("phones: %+v", v.Phone)
	}
	// b sent last, so its phone comes first.
	if v.Phone[0].Value != "951-555-0199" || v.Phone[0].From[0].Member != "b" || v.Phone[1].From[0].Member != "a" {
		t.Fatalf("phone order/provenance: %+v", v.Phone)
	}
	if len(v.BirthDate) != 1 || v.BirthDate[0].Value != "1984-03-12" || len(v.Sex) != 1 || v.Sex[0].Value != "female" {
		t.Fatalf("birth date / sex: %+v %+v", v.BirthDate, v.Sex)
	}
	if len(v.Address) != 1 || v.Address[0].Value != "418 Willow Creek Rd, Riverside, CA 92501" || v.Address[0].From[0].At.IsZero() {
		t.Fatalf("address: %+v", v.Address)
	}

	// A retired person: a redirect, followed on request.
	m := e.link("c", "C1", patient("Marcus", "Baker", "male", "1971-07-30", "9 Elm Dr", "951-555-9999", "611-20-3344"))
	if _, err := e.ops.Merge(e.ctx, a1.Source.PersonID, m.Source.PersonID, e.steward); err != nil {
		t.Fatal(err)
	}
	r, err := s.Person(e.ctx, m.Source.PersonID, false)
	if err != nil || r.RetiredInto != a1.Source.PersonID || len(r.Sources) != 0 {
		t.Fatalf("retired without follow: %+v %v", r, err)
	}
	f, err := s.Person(e.ctx, m.Source.PersonID, true)
	if err != nil || f.ID != a1.Source.PersonID || f.Requested != m.Source.PersonID || len(f.Sources) != 3 || len(f.Name) != 2 {
		t.Fatalf("followed: id %s, %d sources, %d names (%v)", f.ID, len(f.Sources), len(f.Name), err)
	}
	if _, err := s.Person(e.ctx, store.NewPersonID(), true); errs.CodeOf(err) != errs.NotFound {
		t.Fatalf("unknown person: %v", err)
	}
}
