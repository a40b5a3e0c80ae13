package mpi

import "testing"

// TestScoreFromBound checks the early exit of batch scoring against the full score: for
// every pair of a varied set and every threshold, scoreFrom reports ok exactly when Score
// reaches the threshold, with the same weight.
func TestScoreFromBound(t *testing.T) {
	m := testModel(t)
	n := NewNormalizer(DefaultNicknames())
	base := Input{Given: []string{"Jennifer"}, Family: "Okafor", Sex: "female", BirthDate: "1984-03-17",
		SSN: "123-45-6780", Phone: "617-555-2368", Lines: []string{"12 Oak Street"}, City: "Boston", PostalCode: "02134"}
	var ins []Input
	for i, f := range []func(*Input){
		func(*Input) {},
		func(p *Input) { p.Given = []string{"Jenny"}; p.SSN = "6780" },
		func(p *Input) { p.Given = []string{"Rebecca"}; p.SSN = "123-45-6781" },
		func(p *Input) { p.Given, p.Family = []string{"Okafor"}, "Jennifer" },
		func(p *Input) { p.BirthDate = "1984-17-03"; p.Phone = "" },
		func(p *Input) { p.Family = "Okafur"; p.Lines = []string{"9 Elm Rd"}; p.City = "Bostin" },
		func(p *Input) { p.Given, p.Family, p.BirthDate = []string{"Paul"}, "Nguyen", "1950-11-02" },
		func(p *Input) { p.SSN, p.Phone, p.Lines, p.PostalCode, p.City = "", "", nil, "", "" },
		func(p *Input) { p.Given, p.Sex = []string{"Jennifer", "Ann"}, "male" },
		func(p *Input) { p.Family = "Smith-Okafor"; p.BirthDate = "1985-03-17" },
	} {
		in := base
		f(&in)
		in.Source = Identifier{"urn:t", string(rune('a' + i))}
		ins = append(ins, in)
	}
	recs := make([]*Record, len(ins))
	for i, in := range ins {
		recs[i] = rec(n, m, in)
	}
	checked := 0
	for _, a := range recs {
		for _, b := range recs {
			full, _ := m.Score(a, b)
			ha, hb := newHotRec(a), newHotRec(b)
			if bound := float64(m.hotBound(&ha, &hb)) + 1e-3; full > bound {
				t.Fatalf("hotBound(%s, %s) = %v below the score %v", a.Source.Value, b.Source.Value, bound, full)
			}
			for thr := -40.0; thr <= 40; thr += 2.5 {
				w, ok := m.scoreFrom(a, b, thr)
				if ok != (full >= thr) || (ok && w != full) {
					t.Fatalf("scoreFrom(%s, %s, %v) = %v, %v; Score = %v", a.Source.Value, b.Source.Value, thr, w, ok, full)
				}
				checked++
			}
		}
	}
	if m.namesMax <= 0 {
		t.Fatalf("namesMax = %v, want a positive bound", m.namesMax)
	}
	t.Logf("%d pair thresholds checked", checked)
}

// TestDOBLevelDigits checks dobLevel, which works on Year/Month/Day, against the same
// rules applied to the DOB strings, over birth dates close to each other.
func TestDOBLevelDigits(t *testing.T) {
	ref := func(a, b *Record) uint8 {
		switch {
		case a.DOB == "" || b.DOB == "":
			return DOBNull
		case a.DOB == b.DOB:
			return DOBExact
		case a.Year == b.Year && a.Month == b.Day && a.Day == b.Month:
			return DOBDayMonthSwapped
		case editWithin1(a.DOB, b.DOB):
			return DOBOneEdit
		case a.Year == b.Year && a.Month == b.Month:
			return DOBYearMonth
		case (a.Year-b.Year == 1 || b.Year-a.Year == 1) && a.Month == b.Month && a.Day == b.Day:
			return DOBYearOff
		}
		return DOBElse
	}
	n := NewNormalizer(nil)
	var recs []Record
	for _, d := range []string{"", "1984-03-17", "1984-17-03", "1984-03-18", "1984-03-71", "1948-03-17",
		"1985-03-17", "1984-04-17", "1984-03-01", "2001-01-10", "2001-10-01", "2001-01-01", "2010-01-01",
		"0000-00-00", "9999-99-99", "1900-01-01", "19840317", "1984-3-17", "1894-03-17", "1984-30-17"} {
		recs = append(recs, n.Normalize(Input{BirthDate: d}))
	}
	for i := range recs {
		for j := range recs {
			if got, want := dobLevel(&recs[i], &recs[j]), ref(&recs[i], &recs[j]); got != want {
				t.Errorf("dobLevel(%q, %q) = %d, want %d", recs[i].DOB, recs[j].DOB, got, want)
			}
		}
	}
}
