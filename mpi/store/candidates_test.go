package store_test

import (
	"testing"

	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/mpi"
	"github.com/concord-hie/concord/mpi/store"
)

func TestScoreCandidates(t *testing.T) {
	e := newOpsEnv(t)
	a1 := e.link("a", "A1", ana())
	twin := e.link("c", "C1", patient("Eva", "Rivera", "female", "1984-03-12", "418 Willow Creek Rd", "951-555-0142", "523-41-7790"))
	var sources int
	count := func() int {
		return e.count(`SELECT count(*) FROM mpi_source_records`) + e.count(`SELECT count(*) FROM mpi_persons`)
	}
	sources = count()
	rec, err := e.m.Record(ana())
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.m.Score(e.ctx, e.pool, &rec)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 || got[0].Person != a1.Source.PersonID || !got[0].Certain || got[0].Band != mpi.AutoLink {
		t.Fatalf("best candidate: %+v", got)
	}
	for i, s := range got {
		if s.Probability < 0 || s.Probability > 1 || (i > 0 && (s.Weight > got[i-1].Weight || s.Probability > got[i-1].Probability || s.Certain)) {
			t.Fatalf("candidate %d out of order or out of range: %+v", i, got)
		}
		if s.Person == twin.Source.PersonID && s.Band == mpi.AutoLink {
			t.Fatalf("the twin graded auto-link: %+v", s)
		}
	}
	stranger, err := e.m.Record(patient("Marcus", "Baker", "male", "1971-07-30", "9 Elm Dr", "951-555-9999", "611-20-3344"))
	if err != nil {
		t.Fatal(err)
	}
	got, err = e.m.Score(e.ctx, e.pool, &stranger)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range got {
		if s.Band != mpi.NoLink || s.Certain {
			t.Fatalf("stranger scored %+v", s)
		}
	}
	if count() != sources {
		t.Fatal("scoring created rows")
	}
}

// TestScoreSource: ScoreSource rates a record against one member Patient's source record
// alone. Ana's person holds member a's record (exactly the query) and member b's (after a
// move: another street and phone); the person's best edge is a's, and b's record alone
// scores lower, so a $match answer naming b's Patient says nothing of a's record, which
// its caller may not see (session review). A Patient without a source record is NotFound.
func TestScoreSource(t *testing.T) {
	e := newOpsEnv(t)
	a1 := e.link("a", "A1", ana())
	b1 := e.link("b", "B1", patient("Ana", "Rivera", "female", "1984-03-12", "77 Harbor Ave", "951-555-0177", "523-41-7789"))
	if b1.Source.PersonID != a1.Source.PersonID {
		t.Fatalf("b's record of Ana was not linked to her person (%s)", b1.Outcome)
	}
	rec, err := e.m.Record(ana())
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.m.Score(e.ctx, e.pool, &rec)
	if err != nil || len(got) == 0 || got[0].Person != a1.Source.PersonID {
		t.Fatalf("Score: %+v %v", got, err)
	}
	pa, err := e.m.ScoreSource(e.ctx, e.pool, &rec, "pat-a-A1")
	if err != nil || pa != got[0].Probability {
		t.Fatalf("ScoreSource of a's record: %v %v; want the person's best edge %v", pa, err, got[0].Probability)
	}
	pb, err := e.m.ScoreSource(e.ctx, e.pool, &rec, "pat-b-B1")
	if err != nil || !(pb < pa) {
		t.Fatalf("ScoreSource of b's record: %v %v; want below a's %v", pb, err, pa)
	}
	// Score kept each record's edge: the same probabilities without another read.
	for _, l := range []store.Link{a1, b1} {
		want, _ := e.m.ScoreSource(e.ctx, e.pool, &rec, l.Source.PatientID)
		if p, ok := e.m.EdgeProbability(got[0], l.Source.PatientID); !ok || p != want {
			t.Errorf("EdgeProbability of %s: %v %v; want %v", l.Source.PatientID, p, ok, want)
		}
	}
	if _, err := e.m.ScoreSource(e.ctx, e.pool, &rec, "pat-none"); errs.CodeOf(err) != errs.NotFound {
		t.Fatalf("ScoreSource of an unknown Patient: %v; want not found", err)
	}
}
