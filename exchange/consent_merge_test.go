package exchange

import (
	"context"
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
