package exchange

import (
	"context"
	"strings"
	"testing"

	mpistore "github.com/concord-hie/concord/mpi/store"
)

// TestConsentSurvivesMPIMerge checks, through the FHIR API and the consent cache, that a
// patient's opt-out keeps governing their records when a steward merges their person into
// another (the same human registered twice): it then covers every record of the merged
// person from the next request on. An unmerge gives each person back its own directives:
// the other registration's records are readable again, the opted-out one's are not.
func TestConsentSurvivesMPIMerge(t *testing.T) {
	env := newConsentEnv(t)
	ctx := context.Background()
	ta := env.tok(t, env.a, allScopes, "TREAT")
	tb := env.tok(t, env.b, allScopes, "TREAT")
	pa1 := env.patient(t, ta, env.a, "A1")
	pa2 := env.patient(t, ta, env.a, "A2")
	mpi := mpistore.New(env.pool)
	s1, err := mpi.SourceByPatient(ctx, nil, pa1)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := mpi.SourceByPatient(ctx, nil, pa2)
	if err != nil {
		t.Fatal(err)
	}
	if s1.PersonID == s2.PersonID {
		t.Fatal("setup: the two Patients were linked to one person")
	}
	read := func(obs string) int {
		t.Helper()
		st, _, _ := do(t, "GET", env.base+"/Observation/"+obs, tb, nil)
		return st
	}
	_, body, _ := do(t, "POST", env.base+"/Observation", ta, obsJSON("", pa1, "5.2"))
	kept := idOf(t, body)
	_, body, _ = do(t, "POST", env.base+"/Observation", ta, obsJSON("", pa2, "7.1"))
	lost := idOf(t, body)
	env.postConsent(t, ta, pa2) // the patient opts out of treatment sharing
	if got := read(lost); got != 404 {
		t.Fatalf("B reads after the opt-out: %d; want 404", got)
	}
	if got := read(kept); got != 200 { // and caches the permit for the other person
		t.Fatalf("B reads the other registration before the merge: %d; want 200", got)
	}

	ops := mpistore.NewOps(env.pool, &memAudit{}, "test")
	st := mpistore.Steward{Subject: "iss|steward"}
	c, err := ops.Merge(ctx, s1.PersonID, s2.PersonID, st)
	if err != nil {
		t.Fatal(err)
	}
	if got := read(lost); got != 404 {
		t.Errorf("B reads the opted-out patient's result after an MPI merge: %d; want 404", got)
	}
	if got := read(kept); got != 404 {
		t.Errorf("B reads the merged person's other result: %d; want 404 (the opt-out now covers it)", got)
	}

	if _, err := ops.Unmerge(ctx, c.Merge, st); err != nil {
		t.Fatal(err)
	}
	if got := read(kept); got != 200 {
		t.Errorf("B reads the other registration after the unmerge: %d; want 200", got)
	}
	if got := read(lost); got != 404 {
		t.Errorf("B reads the opted-out patient's result after the unmerge: %d; want 404", got)
	}
}

// TestConsentFilerKeepsItAfterMPIMerge checks that a member can still read and withdraw a
// directive it filed after a steward merges the person it was filed for into another: the
// directive stays filed under the lost person and governs the kept one, where the member's
// Patients of both now belong (consent review R3: GET and PUT answered 404, so the
// opt-out could not be withdrawn while search still listed it). Whichever of the member's
// Patients of the merged person the body names, the PUT is the filer's; a Patient of
// another person, and another member, still get 404. An unmerge gives the new version
// back to the lost person's Patient.
func TestConsentFilerKeepsItAfterMPIMerge(t *testing.T) {
	env := newConsentEnv(t)
	ctx := context.Background()
	ta := env.tok(t, env.a, allScopes, "TREAT")
	tb := env.tok(t, env.b, allScopes, "TREAT")
	pa1 := env.patient(t, ta, env.a, "A1")
	pa2 := env.patient(t, ta, env.a, "A2")
	pa3 := env.patient(t, ta, env.a, "A3")
	pb := env.patient(t, tb, env.b, "B4")
	mpi := mpistore.New(env.pool)
	person := map[string]mpistore.PersonID{}
	for _, p := range []string{pa1, pa2, pa3, pb} {
		s, err := mpi.SourceByPatient(ctx, nil, p)
		if err != nil {
			t.Fatal(err)
		}
		person[p] = s.PersonID
	}
	if person[pa1] == person[pa2] || person[pa1] == person[pa3] || person[pa2] == person[pa3] || person[pb] == person[pa1] {
		t.Fatal("setup: two Patients were linked to one person")
	}
	_, body, _ := do(t, "POST", env.base+"/Observation", ta, obsJSON("", pa1, "5.2"))
	obs := idOf(t, body)
	id := env.postConsent(t, ta, pa2) // the patient opts out at A's front desk

	ops := mpistore.NewOps(env.pool, &memAudit{}, "test")
	st := mpistore.Steward{Subject: "iss|steward"}
	// B's Patient joins the family too, so B is refused as a member that did not file
	// the directive, not merely as one without a Patient.
	if _, err := ops.Merge(ctx, person[pa1], person[pb], st); err != nil {
		t.Fatal(err)
	}
	c, err := ops.Merge(ctx, person[pa1], person[pa2], st)
	if err != nil {
		t.Fatal(err)
	}
	if got, _, _ := do(t, "GET", env.base+"/Observation/"+obs, tb, nil); got != 404 {
		t.Fatalf("setup: B reads the merged person: %d; want 404 (the opt-out governs it)", got)
	}
	if got, body, _ := do(t, "GET", env.base+"/Consent?patient="+pa1, ta, nil); got != 200 || !strings.Contains(string(body), id) {
		t.Fatalf("A's search for the merged person: %d %s; want its opt-out %s", got, body, id)
	}
	if got, body, _ := do(t, "GET", env.base+"/Consent/"+id, ta, nil); got != 200 || !strings.Contains(string(body), `"Patient/`+pa1+`"`) {
		t.Errorf("A reads its opt-out after the merge: %d %s; want 200 naming Patient/%s", got, body, pa1)
	}

	refused := []struct {
		name    string
		tok     string
		patient string
	}{
		{"A, naming a Patient of another person", ta, pa3},
		{"B, naming its Patient of the merged person", tb, pb},
	}
	for _, tt := range refused {
		if got, body, _ := do(t, "PUT", env.base+"/Consent/"+id, tt.tok, consentJSON(id, tt.patient, "inactive")); got != 404 {
			t.Errorf("%s: PUT %d %s; want 404", tt.name, got, body)
		}
	}
	// Either of A's Patients of the merged person may name the directive.
	for i, p := range []string{pa1, pa2} {
		status := []string{"inactive", "active"}[i]
		if got, body, _ := do(t, "PUT", env.base+"/Consent/"+id, ta, consentJSON(id, p, status)); got != 200 {
			t.Errorf("A sets its opt-out %s through Patient/%s after the merge: %d %s; want 200", status, p, got, body)
		}
	}
	if got, body, _ := do(t, "PUT", env.base+"/Consent/"+id, ta, consentJSON(id, pa1, "inactive")); got != 200 {
		t.Fatalf("A withdraws its opt-out after the merge: %d %s; want 200", got, body)
	}
	if got, _, _ := do(t, "GET", env.base+"/Observation/"+obs, tb, nil); got != 200 {
		t.Errorf("B reads the merged person after the withdrawal: %d; want 200", got)
	}
	var filedUnder string
	if err := env.pool.QueryRow(ctx, `SELECT person_id::text FROM consent_directives WHERE directive_id = $1 AND valid_to IS NULL`, id).Scan(&filedUnder); err != nil {
		t.Fatal(err)
	}
	if filedUnder != string(person[pa2]) {
		t.Errorf("the withdrawal is filed under person %s; want %s, the person the directive was made for", filedUnder, person[pa2])
	}

	if _, err := ops.Unmerge(ctx, c.Merge, st); err != nil {
		t.Fatal(err)
	}
	if got, body, _ := do(t, "GET", env.base+"/Consent/"+id, ta, nil); got != 200 || !strings.Contains(string(body), `"Patient/`+pa2+`"`) {
		t.Errorf("A reads its opt-out after the unmerge: %d %s; want 200 naming Patient/%s", got, body, pa2)
	}
}
