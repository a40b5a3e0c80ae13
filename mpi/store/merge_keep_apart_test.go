package store_test

import (
	"testing"

	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/mpi/store"
)

// keepApartEnv sets up a cannot-link decision whose person was then merged on: b1 is kept
// out of P (a1's person), and P is merged into M (Marcus). It returns b1's source, b1's own
// person Q and M.
func keepApartEnv(t *testing.T) (e *opsEnv, b1 int64, q, m store.PersonID) {
	t.Helper()
	e = newOpsEnv(t)
	a1 := e.link("a", "A1", ana())
	b := e.link("b", "B1", ana())
	if b.Source.PersonID != a1.Source.PersonID {
		t.Fatal("setup: same person not auto-linked")
	}
	p := a1.Source.PersonID
	u, err := e.ops.Unlink(e.ctx, b.Source.ID, e.steward)
	if err != nil {
		t.Fatal(err)
	}
	m = e.link("c", "C1", patient("Marcus", "Baker", "male", "1971-07-30", "9 Elm Dr", "951-555-9999", "611-20-3344")).Source.PersonID
	if _, err := e.ops.Merge(e.ctx, m, p, e.steward); err != nil {
		t.Fatal(err)
	}
	return e, b.Source.ID, store.PersonID(u.Moved[0].To), m
}

// TestMergeHonoursCannotLinkThroughRedirect checks that a keep-apart decision still blocks
// a merge after the person it names was merged into another: merging the kept-out record's
// person into that other person would put it back with the records it was kept from.
func TestMergeHonoursCannotLinkThroughRedirect(t *testing.T) {
	for _, tt := range []struct {
		name    string
		reverse bool // keep the kept-out record's person, lose the merged-on one
	}{
		{"into the merged-on person", false},
		{"the merged-on person into it", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e, _, q, m := keepApartEnv(t)
			keep, lose := m, q
			if tt.reverse {
				keep, lose = q, m
			}
			_, err := e.ops.Merge(e.ctx, keep, lose, e.steward)
			if got, want := errs.CodeOf(err), errs.Conflict; got != want {
				t.Fatalf("merge across a cannot-link decision via a merge redirect: %v (%v); want %v", got, err, want)
			}
		})
	}
}

// TestLinkWithdrawsCannotLinkThroughRedirect checks that a steward's Link into a person
// withdraws a cannot-link decision naming a person since merged into it, so automation is
// not left with a constraint against the link the steward just made.
func TestLinkWithdrawsCannotLinkThroughRedirect(t *testing.T) {
	e, b1, _, m := keepApartEnv(t)
	if _, err := e.ops.Link(e.ctx, b1, m, e.steward); err != nil {
		t.Fatal(err)
	}
	got, err := store.CannotLink(e.ctx, e.pool, b1)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Fatalf("after linking the source into %s, CannotLink = %v; want none", m, got)
	}
}
