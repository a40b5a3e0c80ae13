package store_test

import (
	"testing"

	"github.com/concord-hie/concord/mpi"
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
