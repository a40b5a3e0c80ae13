package store_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/testkit"
	"github.com/concord-hie/concord/mpi"
	"github.com/concord-hie/concord/mpi/store"
)

func patient(given, family, gender, dob, street, phone, ssn string) []byte {
	return []byte(fmt.Sprintf(`{"resourceType":"Patient","identifier":[{"system":"urn:oid:1.2.3","value":"x"},{"system":"http://hl7.org/fhir/sid/us-ssn","value":%q}],
		"name":[{"family":%q,"given":[%q]}],"gender":%q,"birthDate":%q,"telecom":[{"system":"phone","value":%q}],
		"address":[{"line":[%q],"city":"Riverside","state":"CA","postalCode":"92501"}]}`, ssn, family, given, gender, dob, phone, street))
}

func TestLinkPatientOnline(t *testing.T) {
	pool := testkit.DB(t)
	ctx := context.Background()
	for i, m := range []string{"a", "b", "c"} {
		if _, err := pool.Exec(ctx, `INSERT INTO directory_members(id, name, system) VALUES ($1, $1, $2)`, m, fmt.Sprintf("urn:oid:1.2.%d", i+1)); err != nil {
			t.Fatal(err)
		}
	}
	s := store.New(pool)
	m, err := store.NewMatcher(s)
	if err != nil {
		t.Fatal(err)
	}
	link := func(member, sys, mrn string, body []byte) store.Link {
		t.Helper()
		var l store.Link
		err := db.InTx(ctx, pool, func(tx db.Querier) error {
			var err error
			l, err = m.LinkPatient(ctx, tx, member, sys, mrn, "pat-"+member+"-"+mrn, body)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	ana := patient("Ana", "Rivera", "female", "1984-03-12", "418 Willow Creek Rd", "951-555-0142", "523-41-7789")
	first := link("a", "urn:oid:1.2.1", "A1", ana)
	if !first.Created {
		t.Fatal("first record not created")
	}
	// The same person at another member, with a nickname-free exact match: auto-linked.
	second := link("b", "urn:oid:1.2.2", "B1", ana)
	if second.Outcome != mpi.AutoLink || second.Source.PersonID != first.Source.PersonID {
		t.Fatalf("same demographics at member b: %s (score %.1f), person %s vs %s", second.Outcome, second.Score, second.Source.PersonID, first.Source.PersonID)
	}
	// Her twin sister: same DOB, surname, address and phone, different given name and SSN.
	twin := link("c", "urn:oid:1.2.3", "C1", patient("Eva", "Rivera", "female", "1984-03-12", "418 Willow Creek Rd", "951-555-0142", "523-41-7790"))
	if twin.Source.PersonID == first.Source.PersonID {
		t.Fatalf("twin overlaid onto her sister (%s, score %.1f)", twin.Outcome, twin.Score)
	}
	// A stranger: a new person, no review.
	other := link("c", "urn:oid:1.2.3", "C2", patient("Marcus", "Baker", "male", "1971-07-30", "9 Elm Dr", "951-555-9999", "611-20-3344"))
	if other.Outcome != mpi.NoLink || other.ReviewItem != 0 || other.Source.PersonID == first.Source.PersonID {
		t.Fatalf("stranger: %s, review %d", other.Outcome, other.ReviewItem)
	}
	// The same MRN again is an update of the same source record, never a new match.
	again := link("a", "urn:oid:1.2.1", "A1", ana)
	if again.Created || again.Source.ID != first.Source.ID || again.Source.Version != 2 {
		t.Fatalf("resend: created=%v id=%d version=%d", again.Created, again.Source.ID, again.Source.Version)
	}
	var keys int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM mpi_block_keys WHERE source_id = $1`, first.Source.ID).Scan(&keys); err != nil || keys == 0 {
		t.Fatalf("block keys for the first record: %d (%v)", keys, err)
	}
}
