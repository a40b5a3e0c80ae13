package mpi

import (
	"reflect"
	"strings"
	"testing"
)

// TestPackedStoreRoundTrip checks that a packed record loads back as the Record it was
// packed from, term frequencies included, whether it was packed or kept whole.
func TestPackedStoreRoundTrip(t *testing.T) {
	nick := DefaultNicknames()
	norm := NewNormalizer(nick)
	ins := []Input{
		{Source: Identifier{"urn:oid:1.2.3", "MRN1"}, Given: []string{"William", "Henry"}, Family: "Garcia-Lopez", Suffix: "Jr",
			Sex: "male", BirthDate: "1980-02-29", SSN: "123-45-6780", Phone: "(617) 555-0123",
			Lines: []string{"12 North Main Street", "Apt 4B"}, City: "Cambridge", State: "MA", PostalCode: "02139-1234"},
		{Source: Identifier{"urn:oid:1.2.3", "MRN2"}, Given: []string{"Bill"}, Family: "Garcia Lopez", BirthDate: "19800229", SSN: "6780"},
		{Source: Identifier{"urn:oid:9.9", "X"}, Given: []string{"James"}, Family: "William"}, // a given name as a surname
		{Source: Identifier{"urn:oid:9.9", "Y"}, Given: []string{"Baby Boy"}, Family: "Smith", BirthDate: "1900-01-01"},
		{}, // every field missing
		{Source: Identifier{"urn:oid:9.9", strings.Repeat("7", 300)}, Family: "Long"},                           // kept whole: a long value
		{Source: Identifier{"urn:oid:9.9", "Z"}, Family: "Ids", Identifiers: []Identifier{{"urn:payer", "P1"}}}, // kept whole: identifiers
	}
	s := &packedStore{nick: nick}
	var want []Record
	var packed []packedRec
	for half := range 2 { // two chunks, so the tables are shared across chunks
		var recs []Record
		for _, in := range ins {
			if half == 1 {
				in.Source.Value += "-2"
			}
			recs = append(recs, norm.Normalize(in))
		}
		want = append(want, recs...)
		packed = append(packed, s.packChunk(nil, recs)...)
	}
	for i := range packed {
		s.recs = append(s.recs, &packed[i])
	}
	m, err := DefaultModel()
	if err != nil {
		t.Fatal(err)
	}
	var tmp Record
	for i := range want {
		m.Prepare(&want[i])
		r := s.load(i, &tmp)
		m.Prepare(r)
		s.setTF(i, r)
	}
	// The first input sets every field but IDs, so a Record field that load forgets fails
	// the comparison below.
	rv := reflect.ValueOf(want[0])
	for f := range rv.NumField() {
		if name := rv.Type().Field(f).Name; name != "IDs" && rv.Field(f).IsZero() {
			t.Errorf("test input 0 leaves Record.%s empty", name)
		}
	}
	if packed[5].ext == nil || packed[6].ext == nil || packed[0].ext != nil {
		t.Errorf("records kept whole: %v %v %v, want only the long value and the identifiers", packed[0].ext != nil, packed[5].ext != nil, packed[6].ext != nil)
	}
	for i := range want {
		if got := s.load(i, &tmp); !reflect.DeepEqual(*got, want[i]) {
			t.Errorf("record %d:\n got %+v\nwant %+v", i, *got, want[i])
		}
	}
}

// TestSourceIndexCollisions forces every identifier onto one hash: each must still find
// its own person.
func TestSourceIndexCollisions(t *testing.T) {
	recs := ptrStore{
		{Source: Identifier{"a", "1"}}, {Source: Identifier{"a", "2"}}, {Source: Identifier{"b", "1"}},
	}
	for _, hash := range []func(Identifier) uint64{nil, func(Identifier) uint64 { return 7 }} {
		s := sourceIndex{hash: hash}
		var tmp Record
		for i, r := range recs {
			if _, ok := s.get(recs, &tmp, r.Source); ok {
				t.Fatalf("%v found before it was put", r.Source)
			}
			s.put(r.Source, uint32(i), int32(10+i))
		}
		for i, r := range recs {
			if p, ok := s.get(recs, &tmp, r.Source); !ok || p != int32(10+i) {
				t.Errorf("%v: person %d %v, want %d", r.Source, p, ok, 10+i)
			}
		}
		if _, ok := s.get(recs, &tmp, Identifier{"c", "1"}); ok {
			t.Error("an identifier never put was found")
		}
	}
}
