package documents_test

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/concord-hie/concord/documents"
)

// doc is one document of a clustering case.
type doc struct {
	id, member, status string
	received           int // minutes after a fixed instant
	t                  documents.Traits
}

// listing is one distinct content and the documents that hold it.
func listing(key string, docs ...doc) (documents.Listing, map[string]documents.Traits) {
	l := documents.Listing{Key: key, Size: int64(len(key)), ContentType: "application/xml"}
	traits := map[string]documents.Traits{}
	base := time.Date(2026, 9, 1, 12, 0, 0, 0, time.UTC)
	for _, d := range docs {
		status := d.status
		if status == "" {
			status = "current"
		}
		l.Copies = append(l.Copies, documents.Copy{DocumentID: d.id, BinaryID: "b-" + d.id, MemberID: d.member, Status: status,
			Received: base.Add(time.Duration(d.received) * time.Minute)})
		t := d.t
		t.MemberID = d.member
		traits[d.id] = t
	}
	return l, traits
}

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// traits of a discharge summary about ana authored by Riverside on 1 September.
func discharge() documents.Traits {
	return documents.Traits{Person: "ana", TypeCode: "18842-5", AuthorOrg: "Organization/member-riverside", Date: at("2026-09-01T09:00:00Z")}
}

func with(t documents.Traits, f func(*documents.Traits)) documents.Traits { f(&t); return t }

func TestClusterListings(t *testing.T) {
	d := discharge()
	fromAuthor := with(d, func(t *documents.Traits) { t.FromAuthor = true })
	tests := []struct {
		name     string
		listings [][]doc // one inner slice per distinct content
		want     []string
	}{
		{"same key clusters", [][]doc{
			{{id: "a", member: "riverside", received: 1, t: fromAuthor}},
			{{id: "b", member: "valley", received: 5, t: with(d, func(t *documents.Traits) { t.Date = at("2026-09-01T22:00:00Z") })}},
			{{id: "c", member: "valley", received: 9, t: d}},
		}, []string{"a b c: 3 copies from 2 organizations"}},
		{"newest is primary when the author sent none", [][]doc{
			{{id: "a", member: "riverside", received: 1, t: d}},
			{{id: "b", member: "valley", received: 5, t: d}},
		}, []string{"b a: 2 copies from 2 organizations"}},
		{"different type", [][]doc{
			{{id: "a", member: "riverside", t: d}},
			{{id: "b", member: "valley", t: with(d, func(t *documents.Traits) { t.TypeCode = "11506-3" })}},
		}, []string{"a: 1 copy from 1 organization", "b: 1 copy from 1 organization"}},
		{"different author organization", [][]doc{
			{{id: "a", member: "riverside", t: d}},
			{{id: "b", member: "riverside", t: with(d, func(t *documents.Traits) { t.AuthorOrg = "Organization/member-valley" })}},
		}, []string{"a: 1 copy from 1 organization", "b: 1 copy from 1 organization"}},
		{"different UTC day", [][]doc{
			{{id: "a", member: "riverside", t: d}},
			// 1 September in New York, 2 September in UTC.
			{{id: "b", member: "valley", t: with(d, func(t *documents.Traits) { t.Date = at("2026-09-01T21:30:00-05:00") })}},
		}, []string{"b: 1 copy from 1 organization", "a: 1 copy from 1 organization"}},
		{"same UTC day in another zone", [][]doc{
			{{id: "a", member: "riverside", t: d}},
			{{id: "b", member: "valley", t: with(d, func(t *documents.Traits) { t.Date = at("2026-09-01T18:30:00-05:00") })}},
		}, []string{"b a: 2 copies from 2 organizations"}},
		{"no author: the same member clusters", [][]doc{
			{{id: "a", member: "riverside", received: 1, t: with(d, func(t *documents.Traits) { t.AuthorOrg = "" })}},
			{{id: "b", member: "riverside", received: 2, t: with(d, func(t *documents.Traits) { t.AuthorOrg = "" })}},
		}, []string{"b a: 2 copies from 1 organization"}},
		{"no author: different members do not", [][]doc{
			{{id: "a", member: "riverside", t: with(d, func(t *documents.Traits) { t.AuthorOrg = "" })}},
			{{id: "b", member: "valley", t: with(d, func(t *documents.Traits) { t.AuthorOrg = "" })}},
		}, []string{"a: 1 copy from 1 organization", "b: 1 copy from 1 organization"}},
		{"never across persons", [][]doc{
			{{id: "a", member: "riverside", t: d}},
			{{id: "b", member: "valley", t: with(d, func(t *documents.Traits) { t.Person = "ben" })}},
		}, []string{"a: 1 copy from 1 organization", "b: 1 copy from 1 organization"}},
		{"identical bytes of two persons stay apart", [][]doc{
			{{id: "a", member: "riverside", t: d}, {id: "b", member: "valley", t: with(d, func(t *documents.Traits) { t.Person = "ben" })}},
		}, []string{"a: 1 copy from 1 organization", "b: 1 copy from 1 organization"}},
		{"superseded keeps its own entry", [][]doc{
			{{id: "a", member: "riverside", t: d}},
			{{id: "old", member: "riverside", status: "superseded", t: d}},
			{{id: "eie", member: "valley", status: "entered-in-error", t: d}},
		}, []string{"a: 1 copy from 1 organization", "eie: 1 copy from 1 organization", "old: 1 copy from 1 organization"}},
		{"exact duplicates merge as today", [][]doc{
			{{id: "a", member: "riverside", received: 1, t: d}, {id: "b", member: "valley", received: 2, t: with(d, func(t *documents.Traits) { t.TypeCode = "" })}},
		}, []string{"b a: 2 copies from 2 organizations"}},
		{"exact duplicates keep a superseded copy, current first", [][]doc{
			{{id: "a", member: "riverside", status: "superseded", received: 9, t: d}, {id: "b", member: "valley", received: 1, t: d}},
		}, []string{"b a: 2 copies from 2 organizations"}},
		{"an exact-duplicate group joins its near duplicates", [][]doc{
			{{id: "a", member: "riverside", received: 1, t: fromAuthor}, {id: "b", member: "valley", received: 2, t: d}},
			{{id: "c", member: "hilltop", received: 3, t: d}},
		}, []string{"a c b: 3 copies from 3 organizations"}},
		{"a document with two contents counts once", [][]doc{
			{{id: "a", member: "riverside", t: d}},
			{{id: "a", member: "riverside", t: d}},
		}, []string{"a a: 1 copy from 1 organization"}},
		{"no type or no date: exact duplicates only", [][]doc{
			{{id: "a", member: "riverside", t: with(d, func(t *documents.Traits) { t.TypeCode = "" })}},
			{{id: "b", member: "riverside", t: with(d, func(t *documents.Traits) { t.TypeCode = "" })}},
			{{id: "c", member: "riverside", t: with(d, func(t *documents.Traits) { t.Date = time.Time{} })}},
			{{id: "d", member: "riverside", t: with(d, func(t *documents.Traits) { t.Date = time.Time{} })}},
		}, []string{"a: 1 copy from 1 organization", "b: 1 copy from 1 organization", "c: 1 copy from 1 organization", "d: 1 copy from 1 organization"}},
		{"a copy hidden by consent is not passed, so neither counts nor leads", [][]doc{
			// "a" (the author's own copy) was withheld: only what the viewer may see is here.
			{{id: "b", member: "valley", received: 5, t: d}},
			{{id: "c", member: "valley", received: 9, t: d}},
		}, []string{"c b: 2 copies from 1 organization"}},
		{"order: newest first, then by document ID", [][]doc{
			{{id: "z", member: "riverside", t: with(d, func(t *documents.Traits) { t.Date = at("2026-08-01T09:00:00Z") })}},
			{{id: "y", member: "riverside", t: with(d, func(t *documents.Traits) { t.TypeCode = "11506-3" })}},
			{{id: "x", member: "riverside", t: d}},
			{{id: "w", member: "riverside", t: with(d, func(t *documents.Traits) { t.Date = time.Time{} })}},
		}, []string{"x: 1 copy from 1 organization", "y: 1 copy from 1 organization", "z: 1 copy from 1 organization", "w: 1 copy from 1 organization"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ls []documents.Listing
			traits := map[string]documents.Traits{}
			for i, docs := range tt.listings {
				l, tr := listing(string(rune('k'+i)), docs...)
				ls = append(ls, l)
				for id, x := range tr {
					traits[id] = x
				}
			}
			got := describe(documents.ClusterListings(ls, traits))
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			// Deterministic: the order of the input changes nothing.
			r := rand.New(rand.NewPCG(1, 2))
			for range 5 {
				shuffled := slices.Clone(ls)
				r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
				for i := range shuffled {
					c := slices.Clone(shuffled[i].Copies)
					r.Shuffle(len(c), func(i, j int) { c[i], c[j] = c[j], c[i] })
					shuffled[i].Copies = c
				}
				if got := describe(documents.ClusterListings(shuffled, traits)); !slices.Equal(got, tt.want) {
					t.Fatalf("shuffled input: got %q, want %q", got, tt.want)
				}
			}
		})
	}
}

// describe is each cluster as "primary others...: summary".
func describe(cs []documents.Cluster) []string {
	var out []string
	for _, c := range cs {
		var ids []string
		for _, cp := range c.Copies {
			ids = append(ids, cp.DocumentID)
		}
		out = append(out, strings.Join(ids, " ")+": "+c.Summary())
	}
	return out
}

func TestTraitsOf(t *testing.T) {
	tests := []struct {
		name string
		body string
		want documents.Traits
	}{
		{"period start before date; LOINC coding; organization author",
			`{"type":{"coding":[{"system":"urn:other","code":"X"},{"system":"http://loinc.org","code":"18842-5"}]},"date":"2026-09-03T10:00:00Z",
			"author":[{"reference":"Practitioner/p1"},{"reference":"Organization/member-riverside/_history/2"}],"context":{"period":{"start":"2026-09-01T08:00:00-04:00"}}}`,
			documents.Traits{TypeCode: "18842-5", AuthorOrg: "Organization/member-riverside", Date: at("2026-09-01T12:00:00Z")}},
		{"date when no period; a date-only value is a UTC day",
			`{"type":{"coding":[{"code":"11506-3"}]},"date":"2026-09-01","author":[{"reference":"https://ehr.example/fhir/Organization/7"}]}`,
			documents.Traits{TypeCode: "11506-3", AuthorOrg: "https://ehr.example/fhir/Organization/7", Date: at("2026-09-01T00:00:00Z")}},
		{"an organization by identifier",
			`{"type":{"coding":[{"code":"11506-3"}]},"author":[{"type":"Organization","identifier":{"system":"http://hl7.org/fhir/sid/us-npi","value":"1234567893"}}]}`,
			documents.Traits{TypeCode: "11506-3", AuthorOrg: "identifier:http://hl7.org/fhir/sid/us-npi|1234567893"}},
		{"coarser than a day, contained and non-organization authors",
			`{"type":{"coding":[{"code":"11506-3"}]},"date":"2026-09","author":[{"reference":"#org1"},{"reference":"PractitionerRole/Organization"},{"reference":"MyOrganization/1"}]}`,
			documents.Traits{TypeCode: "11506-3"}},
		{"not JSON", `<xml/>`, documents.Traits{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := documents.TraitsOf([]byte(tt.body))
			if got.TypeCode != tt.want.TypeCode || got.AuthorOrg != tt.want.AuthorOrg || !got.Date.Equal(tt.want.Date) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestParseReference: the one parse gives the list's title (text, else a display, else a
// default), status and clinical date at any precision, while Traits.Date needs a day.
func TestParseReference(t *testing.T) {
	for _, tt := range []struct {
		body, title, status, date string
		traitDay                  bool
	}{
		{`{"status":"current","type":{"text":"Visit note","coding":[{"code":"11506-3","display":"Progress note"}]},"date":"2026-09-01T10:00:00Z"}`, "Visit note", "current", "2026-09-01", true},
		{`{"status":"superseded","type":{"coding":[{"code":"x"},{"code":"18842-5","display":"Discharge summary"}]},"date":"2026-09-01","context":{"period":{"start":"2026-08-30"}}}`, "Discharge summary", "superseded", "2026-08-30", true},
		{`{"status":"current","date":"2026"}`, "Clinical document", "current", "2026-01-01", false},
	} {
		r, ok := documents.ParseReference([]byte(tt.body))
		if !ok || r.Title != tt.title || r.Status != tt.status || r.Date.Format("2006-01-02") != tt.date || !r.Traits.Date.IsZero() != tt.traitDay {
			t.Errorf("%s: %+v, %v", tt.body, r, ok)
		}
	}
	if _, ok := documents.ParseReference([]byte(`{"status":`)); ok {
		t.Error("a broken body parsed")
	}
}
