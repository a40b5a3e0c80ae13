package store_test

import (
	"slices"
	"testing"
	"time"

	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/mpi/store"
)

// consentEnv is an opsEnv with a consent store, for the consent side of merges.
type consentEnv struct {
	*opsEnv
	cs *consent.Store
}

func newConsentMergeEnv(t *testing.T) *consentEnv {
	t.Helper()
	return &consentEnv{opsEnv: newOpsEnv(t), cs: consent.NewStore()}
}

// optOut saves, for person, a directive denying organization x and returns it.
func (e *consentEnv) optOut(id string, person store.PersonID) consent.Directive {
	e.t.Helper()
	d := consent.Directive{ID: consent.DirectiveID(id), PersonID: string(person), Kind: consent.KindPatient,
		PolicyRule: consent.OptOut, Status: consent.StatusActive, DateTime: time.Date(2026, 3, 12, 0, 0, 0, 0, time.UTC),
		Provision: consent.Provision{Type: consent.Deny, Actors: []consent.Actor{{Role: consent.ParticipationRecipient, Reference: "Organization/x"}}}}
	if err := db.InTx(e.ctx, e.pool, func(tx db.Querier) error {
		_, _, err := e.cs.Save(e.ctx, tx, d, "officer-1")
		return err
	}); err != nil {
		e.t.Fatal(err)
	}
	return d
}

// ids returns the IDs of what Load returns for person now.
func (e *consentEnv) ids(person store.PersonID) []consent.DirectiveID {
	e.t.Helper()
	dirs, err := e.cs.Load(e.ctx, e.pool, string(person))
	if err != nil {
		e.t.Fatal(err)
	}
	return directiveIDs(dirs)
}

// idsAt returns the IDs of what LoadAt returns for person at t.
func (e *consentEnv) idsAt(person store.PersonID, t time.Time) []consent.DirectiveID {
	e.t.Helper()
	dirs, err := e.cs.LoadAt(e.ctx, e.pool, string(person), t)
	if err != nil {
		e.t.Fatal(err)
	}
	return directiveIDs(dirs)
}

func directiveIDs(dirs []consent.Directive) []consent.DirectiveID {
	out := []consent.DirectiveID{}
	for _, d := range dirs {
		out = append(out, d.ID)
	}
	slices.Sort(out)
	return out
}

func (e *consentEnv) version(person store.PersonID) int64 {
	e.t.Helper()
	v, err := e.cs.Versions(e.ctx, e.pool, string(person))
	if err != nil {
		e.t.Fatal(err)
	}
	return v.Person
}

func (e *consentEnv) now() time.Time {
	e.t.Helper()
	var t time.Time
	if err := e.pool.QueryRow(e.ctx, `SELECT clock_timestamp()`).Scan(&t); err != nil {
		e.t.Fatal(err)
	}
	return t
}

// TestMergeAppliesTheLostPersonsDirectives checks that a steward merge makes the lost
// person's directives govern the kept person (so a patient's opt-out keeps covering the
// records that moved), that an unmerge gives each person back only its own, that each
// change bumps both persons' consent versions (cached decisions go stale), and that
// LoadAt answers with the merge family as it was at the time asked about.
func TestMergeAppliesTheLostPersonsDirectives(t *testing.T) {
	e := newConsentMergeEnv(t)
	keep := e.link("a", "A1", ana()).Source.PersonID
	lose := e.link("c", "C1", patient("Marcus", "Baker", "male", "1971-07-30", "9 Elm Dr", "951-555-9999", "611-20-3344")).Source.PersonID
	own := e.optOut("keep-optout", keep).ID
	lost := e.optOut("lose-optout", lose).ID
	before := e.now()
	vKeep, vLose := e.version(keep), e.version(lose)

	c, err := e.ops.Merge(e.ctx, keep, lose, e.steward)
	if err != nil {
		t.Fatal(err)
	}
	both := []consent.DirectiveID{own, lost}
	slices.Sort(both)
	if got := e.ids(keep); !slices.Equal(got, both) {
		t.Errorf("after the merge, Load(keep) = %v; want %v", got, both)
	}
	if got := e.ids(lose); !slices.Equal(got, both) {
		t.Errorf("after the merge, Load(retired person) = %v; want %v (it resolves to keep)", got, both)
	}
	if e.version(keep) <= vKeep || e.version(lose) <= vLose {
		t.Errorf("the merge left consent versions keep %d→%d, lose %d→%d; want both bumped", vKeep, e.version(keep), vLose, e.version(lose))
	}
	merged := e.now()

	// A directive saved for the retired person while merged bumps the live person too.
	vKeep = e.version(keep)
	late := e.optOut("lose-late", lose).ID
	if e.version(keep) <= vKeep {
		t.Errorf("saving a directive of the retired person left keep's consent version at %d", vKeep)
	}

	vKeep, vLose = e.version(keep), e.version(lose)
	if _, err := e.ops.Unmerge(e.ctx, c.Merge, e.steward); err != nil {
		t.Fatal(err)
	}
	if got, want := e.ids(keep), []consent.DirectiveID{own}; !slices.Equal(got, want) {
		t.Errorf("after the unmerge, Load(keep) = %v; want %v", got, want)
	}
	loseOwn := []consent.DirectiveID{late, lost}
	slices.Sort(loseOwn)
	if got := e.ids(lose); !slices.Equal(got, loseOwn) {
		t.Errorf("after the unmerge, Load(lose) = %v; want %v", got, loseOwn)
	}
	if e.version(keep) <= vKeep || e.version(lose) <= vLose {
		t.Errorf("the unmerge left consent versions keep %d→%d, lose %d→%d; want both bumped", vKeep, e.version(keep), vLose, e.version(lose))
	}

	// As of each time, the family as it was then.
	if got, want := e.idsAt(keep, before), []consent.DirectiveID{own}; !slices.Equal(got, want) {
		t.Errorf("LoadAt(keep, before the merge) = %v; want %v", got, want)
	}
	if got := e.idsAt(keep, merged); !slices.Equal(got, both) {
		t.Errorf("LoadAt(keep, while merged) = %v; want %v", got, both)
	}
}

// TestRetireSourceAppliesTheEmptiedPersonsDirectives checks the HL7 merge (A40): when a
// member merges a patient record into another, the person it empties is retired into the
// survivor's person, whose decisions then include the emptied person's directives, with
// the consent version bumped.
func TestRetireSourceAppliesTheEmptiedPersonsDirectives(t *testing.T) {
	e := newConsentMergeEnv(t)
	survivor := e.link("a", "A1", ana()).Source
	gone := e.link("a", "A2", patient("Marcus", "Baker", "male", "1971-07-30", "9 Elm Dr", "951-555-9999", "611-20-3344")).Source
	if gone.PersonID == survivor.PersonID {
		t.Fatal("setup: the two records were linked to one person")
	}
	lost := e.optOut("gone-optout", gone.PersonID).ID
	v := e.version(survivor.PersonID)
	if err := db.InTx(e.ctx, e.pool, func(tx db.Querier) error {
		_, err := e.ops.RetireSource(e.ctx, tx, gone.ID, survivor.ID, e.steward)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if got := e.ids(survivor.PersonID); !slices.Contains(got, lost) {
		t.Errorf("after the HL7 merge, Load(survivor's person) = %v; want it to include %s", got, lost)
	}
	if e.version(survivor.PersonID) <= v {
		t.Errorf("the HL7 merge left the survivor's consent version at %d", v)
	}
}
