package store_test

import (
	"testing"

	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/mpi/store"
)

func (e *opsEnv) retire(source, survivor int64) (store.Change, error) {
	var c store.Change
	err := db.InTx(e.ctx, e.pool, func(tx db.Querier) error {
		var err error
		c, err = e.ops.RetireSource(e.ctx, tx, source, survivor, e.steward)
		return err
	})
	return c, err
}

// A member's duplicate record retired into another of its records in the same person:
// the person keeps its other records and stays live; the retired record has a person of
// its own redirecting there; a second retire changes nothing; another member's record
// cannot be retired into it.
func TestRetireSourceWithinOnePerson(t *testing.T) {
	e := newOpsEnv(t)
	a1 := e.link("a", "A1", ana())
	a2 := e.link("a", "A2", ana())
	b1 := e.link("b", "B1", ana())
	person := a1.Source.PersonID
	if _, err := e.ops.Link(e.ctx, a2.Source.ID, person, e.steward); err != nil {
		t.Fatal(err)
	}
	if b1.Source.PersonID != person {
		t.Fatal("setup: same person not auto-linked")
	}
	c, err := e.retire(a2.Source.ID, a1.Source.ID)
	if err != nil {
		t.Fatal(err)
	}
	if c.Action != store.ActionSourceRetired || len(c.Moved) != 1 || c.Moved[0].From != string(person) || c.Moved[0].Patient != a2.Source.PatientID {
		t.Fatalf("change = %+v", c)
	}
	fresh := c.Moved[0].To
	if n := e.count(`SELECT count(*) FROM mpi_source_records WHERE person_id = $1`, string(person)); n != 2 {
		t.Fatalf("person holds %d records; want a1 and b1", n)
	}
	if n := e.count(`SELECT count(*) FROM mpi_persons WHERE id = $1 AND retired_into = $2`, fresh, string(person)); n != 1 {
		t.Fatal("the retired record's person does not redirect to the survivor's")
	}
	if n := e.count(`SELECT count(*) FROM mpi_persons WHERE id = $1 AND retired_into IS NULL`, string(person)); n != 1 {
		t.Fatal("the survivor's person was retired")
	}
	if n := e.count(`SELECT count(*) FROM outbox_events WHERE topic = $1 AND payload->>'action' = 'source-retired' AND payload->>'into' = $2 AND payload->>'retired' IS NULL`,
		store.TopicLinkChanged, string(person)); n != 1 {
		t.Fatal("no link-changed outbox event (or it names a retired person)")
	}
	if n := e.count(`SELECT count(*) FROM audit_events WHERE action = 'merge' AND reason = 'source-retired'`); n == 0 {
		t.Fatal("no audit event")
	}
	if c, err := e.retire(a2.Source.ID, a1.Source.ID); err != nil || c.Action != "" {
		t.Fatalf("retiring again: %+v %v; want no change", c, err)
	}
	if n := e.count(`SELECT count(*) FROM mpi_link_history WHERE source_id = $1 AND action = 'source-retired'`, a2.Source.ID); n != 1 {
		t.Fatalf("%d history rows; want 1", n)
	}
	if _, err := e.retire(b1.Source.ID, a1.Source.ID); errs.CodeOf(err) != errs.Invalid {
		t.Fatalf("another member's record retired: %v; want Invalid", err)
	}
}
