package exchange

import (
	"bytes"
	"context"
	"testing"

	"github.com/concord-hie/concord/consent"
)

// TestMatchGradeAmongVisible: forbidden looks like absent, in $match grades too. Member A,
// under a purpose that shows it only its own Patients (HPAYMT), asks about its own patient
// Eva and gets "certain" (and one onlyCertainMatches entry). Member B then registers a
// separate person with the same demographics, whom A may not see: A's answer must not
// change. Before the fix, the engine's runner-up (anyone) decided certainty, so A learned
// that such a person exists at another member (security review).
func TestMatchGradeAmongVisible(t *testing.T) {
	env := newIdentityEnv(t)
	eva := demoPatient(env.a.System, "A7", "Eva", "Rivera", "female", "1984-03-12", "951-555-0142")
	pe := env.create(t, env.a, "A7", eva)
	// The query carries no SSN (a registration desk often has none).
	query := []byte(`{"resourceType":"Patient","name":[{"family":"Rivera","given":["Eva"]}],"gender":"female","birthDate":"1984-03-12",
		"telecom":[{"system":"phone","value":"951-555-0142"}],"address":[{"line":["418 Willow Creek Rd"],"city":"Riverside","state":"CA","postalCode":"92501"}]}`)

	grade := func() (string, int) {
		got := env.match(t, env.a, consent.PurposePayment, params(query, ""))
		g := ""
		for _, e := range got.Entry {
			if e.Resource.ID == pe && len(e.Search.Extension) == 1 {
				g = e.Search.Extension[0].ValueCode
			}
			if e.Resource.ID != pe {
				t.Fatalf("A saw a Patient that is not its own under HPAYMT: %+v", got)
			}
		}
		only := env.match(t, env.a, consent.PurposePayment, params(query, `,{"name":"onlyCertainMatches","valueBoolean":true}`))
		return g, len(only.Entry)
	}
	before, onlyBefore := grade()
	if before != GradeCertain || onlyBefore != 1 {
		t.Fatalf("baseline: own Patient graded %q (%d certain entries); want certain and 1", before, onlyBefore)
	}
	// Member B registers a different person A may not see: the same demographics but
	// another SSN (the MPI keeps them apart).
	other := demoPatient(env.b.System, "B9", "Eva", "Rivera", "female", "1984-03-12", "951-555-0142")
	other = bytes.Replace(other, []byte("523-41-7790"), []byte("777-12-3456"), 1)
	pb := env.create(t, env.b, "B9", other)
	var p1, p2 string
	if err := env.pool.QueryRow(context.Background(), `SELECT (SELECT person_id::text FROM mpi_source_records WHERE patient_id = $1), (SELECT person_id::text FROM mpi_source_records WHERE patient_id = $2)`, pe, pb).Scan(&p1, &p2); err != nil {
		t.Fatal(err)
	}
	if p1 == p2 {
		t.Fatalf("the MPI linked B's Patient (another SSN) to A's person; the test needs two persons")
	}
	after, onlyAfter := grade()
	if after != before || onlyAfter != onlyBefore {
		t.Fatalf("A's $match for its own patient changed from %q (%d onlyCertain entries) to %q (%d) because member B registered a person A may not see: the grade reveals the hidden runner-up",
			before, onlyBefore, after, onlyAfter)
	}
}
