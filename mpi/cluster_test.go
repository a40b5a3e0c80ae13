package mpi

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"testing"
)

func testModel(t testing.TB) *Model {
	t.Helper()
	m, err := DefaultModel()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func rec(n *Normalizer, m *Model, in Input) *Record {
	r := n.Normalize(in)
	m.Prepare(&r)
	return &r
}

func TestAssign(t *testing.T) {
	m := testModel(t)
	n := NewNormalizer(DefaultNicknames())
	home := []string{"12 Oak Street"}
	base := Input{Source: Identifier{"urn:a", "1"}, Given: []string{"Jennifer"}, Family: "Okafor", Sex: "female",
		BirthDate: "1984-03-17", SSN: "123-45-6780", Phone: "617-555-2368", Lines: home, City: "Boston", PostalCode: "02134"}
	same := base
	same.Source = Identifier{"urn:b", "9"}
	same.Given = []string{"Jenny"}
	same.SSN = "6780"
	twin := base
	twin.Source = Identifier{"urn:c", "7"}
	twin.Given = []string{"Rebecca"}
	twin.SSN = "123-45-6781"
	stranger := Input{Source: Identifier{"urn:b", "3"}, Given: []string{"Paul"}, Family: "Nguyen", Sex: "male",
		BirthDate: "1950-11-02", Lines: []string{"9 Elm Rd"}, PostalCode: "01002"}
	sameMember := same
	sameMember.Source = Identifier{"urn:a", "2"} // same authority as base, other MRN

	a := rec(n, m, base)
	tests := []struct {
		name  string
		r     Input
		cands []Candidate
		want  Outcome
		guard Guard
		dup   bool
		// orNoLink accepts NoLink too: a relative may also score below the review band.
		orNoLink bool
	}{
		{"nickname and last 4 join", same, []Candidate{{"P1", []*Record{a}}}, AutoLink, 0, false, false},
		{"twin goes to review or no link", twin, []Candidate{{"P1", []*Record{a}}}, Review, GuardTwin, false, true},
		{"stranger no link", stranger, []Candidate{{"P1", []*Record{a}}}, NoLink, 0, false, false},
		{"no candidates", same, nil, NoLink, 0, false, false},
		{"same authority other MRN", sameMember, []Candidate{{"P1", []*Record{a}}}, Review, GuardMRN, false, false},
		{"two persons clear: possible duplicate", same, []Candidate{{"P1", []*Record{a}}, {"P2", []*Record{rec(n, m, base)}}}, Review, 0, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rec(n, m, tt.r)
			got := m.Assign(r, tt.cands)
			if tt.orNoLink && got.Outcome == NoLink {
				return
			}
			if got.Outcome != tt.want || got.Guards&tt.guard != tt.guard || got.PossibleDuplicate != tt.dup {
				t.Errorf("got %v guards %v dup %v score %.1f, want %v guards ⊇ %v dup %v", got.Outcome, got.Guards,
					got.PossibleDuplicate, got.Score, tt.want, tt.guard, tt.dup)
			}
		})
	}
}

func TestGuardsGeneration(t *testing.T) {
	n := NewNormalizer(DefaultNicknames())
	sr := n.Normalize(Input{Given: []string{"John"}, Family: "Smith", Suffix: "Sr", BirthDate: "1950-01-02", Lines: []string{"5 Main St"}, PostalCode: "02134"})
	jr := n.Normalize(Input{Given: []string{"John"}, Family: "Smith Jr", BirthDate: "1980-01-02", Lines: []string{"5 Main St"}, PostalCode: "02134"})
	noSuffix := n.Normalize(Input{Given: []string{"John"}, Family: "Smith", BirthDate: "1981-05-06", Lines: []string{"5 Main Street"}, PostalCode: "02134"})
	if g := Guards(&sr, &jr, Compare(&sr, &jr)); g&GuardGeneration == 0 {
		t.Errorf("JR vs SR: guards %v", g)
	}
	if g := Guards(&sr, &noSuffix, Compare(&sr, &noSuffix)); g&GuardGeneration == 0 {
		t.Errorf("same name and address 31 years apart: guards %v", g)
	}
	baby := n.Normalize(Input{Given: []string{"Baby", "Girl"}, Family: "Smith"})
	if g := Guards(&baby, &sr, Compare(&baby, &sr)); g&GuardPlaceholder == 0 {
		t.Errorf("placeholder: guards %v", g)
	}
}

func TestModelJSONRoundTrip(t *testing.T) {
	m := testModel(t)
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := LoadModel(data)
	if err != nil {
		t.Fatal(err)
	}
	n := NewNormalizer(DefaultNicknames())
	a := rec(n, m, Input{Given: []string{"Ann"}, Family: "Lee", BirthDate: "1990-02-03"})
	b := rec(n, m, Input{Given: []string{"Anne"}, Family: "Lee", BirthDate: "1990-03-02"})
	w1, _ := m.Score(a, b)
	w2, _ := m2.Score(a, b)
	if w1 != w2 || m2.Version != m.Version {
		t.Errorf("round trip changed the model: %v vs %v", w1, w2)
	}
	if _, err := LoadModel([]byte(`{"m":[[1]]}`)); err == nil {
		t.Error("LoadModel accepted a malformed model")
	}
}

func TestScoreAllocatesNothing(t *testing.T) {
	m := testModel(t)
	n := NewNormalizer(DefaultNicknames())
	a := rec(n, m, Input{Given: []string{"Katherine"}, Family: "Garcia-Lopez", BirthDate: "1990-02-03", SSN: "123-45-6780", Lines: []string{"1 Main St"}, PostalCode: "02134"})
	b := rec(n, m, Input{Given: []string{"Catherine"}, Family: "Lopez", BirthDate: "1990-03-02", SSN: "6780", Lines: []string{"1 Main Street"}, PostalCode: "02134"})
	if allocs := testing.AllocsPerRun(100, func() { m.Score(a, b) }); allocs != 0 {
		t.Errorf("Score allocates %v times per call", allocs)
	}
}

func TestBlockKeys(t *testing.T) {
	n := NewNormalizer(DefaultNicknames())
	a := n.Normalize(Input{Given: []string{"Maria"}, Family: "Lopez", BirthDate: "1990-02-03"})
	swapped := n.Normalize(Input{Given: []string{"Lopez"}, Family: "Maria", BirthDate: "1990-03-02"})
	share := func(x, y *Record) bool {
		for _, k := range BlockKeys(x) {
			for _, l := range BlockKeys(y) {
				if k.Hash == l.Hash {
					return true
				}
			}
		}
		return false
	}
	if !share(&a, &swapped) {
		t.Error("swapped names with transposed DOB share no block")
	}
	ph := n.Normalize(Input{Given: []string{"Baby", "Boy"}, Family: "Lopez", BirthDate: "1900-01-01"})
	for _, k := range BlockKeys(&ph) {
		for _, l := range BlockKeys(&a) {
			if k.Hash == l.Hash {
				t.Error("a placeholder record shares a name/DOB block")
			}
		}
	}
	ix := NewIndex(2)
	for i := range 3 {
		ix.Add(uint32(i), BlockKeys(&a))
	}
	if got := ix.Block(BlockKeys(&a)[0]); got != nil {
		t.Errorf("block over the cap and its refined key over the cap: got %v, want nil", got)
	}
}

// TestLinkBatchProgress checks that progress is reported while records are scored, not
// only once at the end.
func TestLinkBatchProgress(t *testing.T) {
	norm := NewNormalizer(nil)
	const n = 3*parallelChunk + 5
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = norm.Normalize(Input{Source: Identifier{"urn:test", strconv.Itoa(i)}, Given: []string{"Ann"},
			Family: "Test" + strconv.Itoa(i), BirthDate: fmt.Sprintf("19%02d-%02d-%02d", i%100, i%12+1, i%28+1)})
	}
	var mu sync.Mutex
	var calls []int
	_, err := testModel(t).LinkBatch(context.Background(), recs, 2, func(done int) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, done)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) < 2 || calls[0] >= n || calls[len(calls)-1] != n {
		t.Errorf("progress calls %v, want some below %d and the last at %d", calls, n, n)
	}
}
