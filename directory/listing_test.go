package directory

import (
	"context"
	"slices"
	"testing"

	"github.com/concord-hie/concord/internal/testkit"
)

// alphaBeta is a store on a fresh database with two members: Alpha Clinic
// (2.16.840.1.113883.3.1) and Beta Lab (2.16.840.1.113883.3.2).
func alphaBeta(t *testing.T) (*Store, Member, Member) {
	t.Helper()
	ctx := context.Background()
	s := NewStore(testkit.DB(t))
	a, err := s.AddMember(ctx, "Alpha Clinic", "2.16.840.1.113883.3.1")
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.AddMember(ctx, "Beta Lab", "2.16.840.1.113883.3.2")
	if err != nil {
		t.Fatal(err)
	}
	return s, a, b
}

func TestListings(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, a, _ := alphaBeta(t)
	if _, err := s.db.Exec(ctx, `INSERT INTO directory_authorities(system, member_id) VALUES ('urn:oid:2.16.840.1.113883.3.1.9', $1)`, a.ID); err != nil {
		t.Fatal(err)
	}
	all, err := s.Listings(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].Member != a || !slices.Equal(all[0].Systems, []string{"urn:oid:2.16.840.1.113883.3.1", "urn:oid:2.16.840.1.113883.3.1.9"}) ||
		all[1].Member.ID != "beta-lab" || len(all[1].Systems) != 1 {
		t.Fatalf("all: %+v", all)
	}
	some, err := s.Listings(ctx, []string{"beta-lab", "nobody"})
	if err != nil || len(some) != 1 || some[0].Member.ID != "beta-lab" {
		t.Fatalf("some: %+v %v", some, err)
	}
	none, err := s.Listings(ctx, []string{})
	if err != nil || len(none) != 0 {
		t.Fatalf("none: %+v %v", none, err)
	}
}
