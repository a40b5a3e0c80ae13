package exchange

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/concord-hie/concord/consent"
)

// selfGrant is a patient's directive for the member's Patient patient that permits
// Organization/org treatment access to the given labels, dated long ago, with no source.
func selfGrant(patient, org string, labels ...string) consent.Directive {
	return consent.Directive{ID: "x", Version: 1, Kind: consent.KindPatient, PersonID: patient, PolicyRule: consent.OptIn,
		Status: consent.StatusActive, DateTime: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
		Provision: consent.Provision{Type: consent.Permit, Actors: []consent.Actor{{Role: consent.ParticipationRecipient, Reference: "Organization/" + org}},
			Purposes: []string{consent.PurposeTreatment}, SecurityLabels: labels}}
}

// outcomeExpression returns the expressions of an OperationOutcome's first issue.
func outcomeExpression(t *testing.T, body []byte) []string {
	t.Helper()
	var oo struct {
		ResourceType string `json:"resourceType"`
		Issue        []struct {
			Expression []string `json:"expression"`
		} `json:"issue"`
	}
	if err := json.Unmarshal(body, &oo); err != nil || oo.ResourceType != "OperationOutcome" || len(oo.Issue) == 0 {
		t.Fatalf("not an OperationOutcome: %s", body)
	}
	return oo.Issue[0].Expression
}

// TestMemberCannotSelfGrantPart2: a member that merely has a Patient for the person cannot
// write its own authorization to the Part 2 program's records. Clinic C, which the
// patient never named, files a back-dated "patient" Consent releasing ETH, R, 42CFRPart2,
// PSY and HIV to itself: without a source it is refused (403 naming the 42CFRPart2 label,
// since C is no Part 2 program), with a source just the same, nothing is stored, and C
// still cannot read the program's record (consent review R2: the POST was 201 and the
// read 200).
func TestMemberCannotSelfGrantPart2(t *testing.T) {
	env := newPart2Env(t)
	tp := env.tok(t, env.p, allScopes, "TREAT")
	tc := env.tok(t, env.c, allScopes, "TREAT")
	pp, pc := env.samePatient(t, tp, env.p), env.samePatient(t, tc, env.c)
	st, body, _ := do(t, "POST", env.base+"/Observation", tp, obsJSON("", pp, "98"))
	if st != 201 {
		t.Fatalf("P creates Observation: %d %s", st, body)
	}
	obsP := idOf(t, body)
	if st, _, _ := do(t, "GET", env.base+"/Observation/"+obsP, tc, nil); st != 404 {
		t.Fatalf("C reads the Part 2 record without consent: %d; want 404", st)
	}
	d := selfGrant(pc, env.c.ID, consent.LabelSubstanceUse, consent.LabelRestricted, consent.LabelPart2, consent.LabelMentalHealth, consent.LabelHIV)
	for _, src := range []string{"", "DocumentReference/some-form"} {
		d.SourceReference = src
		cj, err := consent.FormatConsent(d)
		if err != nil {
			t.Fatal(err)
		}
		st, body, _ := do(t, "POST", env.base+"/Consent", tc, cj)
		if st != 403 {
			t.Fatalf("C files a Consent releasing 42CFRPart2 to itself (source %q): %d %s; want 403", src, st, body)
		}
		if got, want := outcomeExpression(t, body), []string{"Consent.provision.securityLabel[2]"}; !slices.Equal(got, want) {
			t.Errorf("refusal names %v; want %v", got, want)
		}
	}
	if st, body, _ := do(t, "GET", env.base+"/Observation/"+obsP, tc, nil); st != 404 {
		t.Fatalf("C reads the Part 2 program's record after filing its own consent: %d %.120s; want 404", st, body)
	}
	var n int
	if err := env.pool.QueryRow(t.Context(), `SELECT count(*) FROM consent_directives WHERE filed_by_member = $1`, env.c.ID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d directives filed by C; want none", n)
	}
}

// TestConsentFilingRule walks the filing rule of POST and PUT /Consent (checkFiling):
// restrictions need nothing; a permit releasing a gating label needs the patient's signed
// form (422 naming Consent.source[x]); a 42CFRPart2 release is accepted only from a Part 2
// program (403 for anyone else), never naming the program itself as recipient (422); a
// withdrawal (status inactive) is always accepted.
func TestConsentFilingRule(t *testing.T) {
	env := newPart2Env(t)
	tp := env.tok(t, env.p, allScopes, "TREAT")
	tb := env.tok(t, env.b, allScopes, "TREAT")
	pp, pb := env.samePatient(t, tp, env.p), env.samePatient(t, tb, env.b)
	form := &consent.Attachment{ContentType: "application/pdf", Data: []byte("%PDF signed"), Title: "Consent form"}
	withSource := func(d consent.Directive, ref string, att *consent.Attachment) consent.Directive {
		d.SourceReference, d.SourceAttachment = ref, att
		return d
	}
	denyAll := consent.Directive{ID: "x", Version: 1, Kind: consent.KindPatient, PersonID: pb, PolicyRule: consent.OptOut,
		Status: consent.StatusActive, Provision: consent.Provision{Type: consent.Deny, SecurityLabels: []string{consent.LabelMentalHealth}}}
	plainPermit := selfGrant(pb, env.b.ID)
	plainPermit.Provision.Purposes = []string{consent.PurposePayment}
	// A permit nested in a deny releases the labels its path names.
	nested := consent.Directive{ID: "x", Version: 1, Kind: consent.KindPatient, PersonID: pb, PolicyRule: consent.OptOut,
		Status: consent.StatusActive, Provision: consent.Provision{Type: consent.Deny, SecurityLabels: []string{consent.LabelHIV},
			Provisions: []consent.Provision{{Actors: []consent.Actor{{Reference: "Organization/" + env.b.ID}}}}}}
	inactive := selfGrant(pb, env.b.ID, consent.LabelHIV)
	inactive.Status = consent.StatusInactive
	tests := []struct {
		name string
		tok  string
		d    consent.Directive
		want int
		expr string
	}{
		{"deny without source", tb, denyAll, 201, ""},
		{"permit of no gating label without source", tb, plainPermit, 201, ""},
		{"inactive release without source", tb, inactive, 201, ""},
		{"HIV release without source", tb, selfGrant(pb, env.b.ID, consent.LabelHIV), 422, "Consent.source[x]"},
		{"nested release without source", tb, nested, 422, "Consent.source[x]"},
		{"HIV release with a sourceReference", tb, withSource(selfGrant(pb, env.b.ID, consent.LabelHIV), "DocumentReference/form-1", nil), 201, ""},
		{"HIV release with a sourceAttachment", tb, withSource(selfGrant(pb, env.b.ID, consent.LabelHIV), "", form), 201, ""},
		{"Part 2 release by a member that is no program", tb, withSource(selfGrant(pb, env.b.ID, consent.LabelPart2), "DocumentReference/form-1", nil), 403, "Consent.provision.securityLabel[0]"},
		{"Part 2 release by the program without source", tp, selfGrant(pp, env.b.ID, consent.LabelSubstanceUse, consent.LabelPart2), 422, "Consent.source[x]"},
		{"Part 2 release by the program to itself", tp, withSource(selfGrant(pp, env.p.ID, consent.LabelPart2), "DocumentReference/form-1", nil), 422, "Consent.provision"},
		{"Part 2 release by the program to B with the form", tp, withSource(selfGrant(pp, env.b.ID, consent.LabelSubstanceUse, consent.LabelPart2), "DocumentReference/form-1", nil), 201, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cj, err := consent.FormatConsent(tt.d)
			if err != nil {
				t.Fatal(err)
			}
			st, body, _ := do(t, "POST", env.base+"/Consent", tt.tok, cj)
			if st != tt.want {
				t.Fatalf("POST: %d %s; want %d", st, body, tt.want)
			}
			if tt.expr != "" {
				if got := outcomeExpression(t, body); !slices.Equal(got, []string{tt.expr}) {
					t.Errorf("refusal names %v; want [%s]", got, tt.expr)
				}
			}
		})
	}

	// PUT is held to the same rule: the restriction B filed cannot become a sourceless
	// release, and its withdrawal needs nothing.
	cj, _ := consent.FormatConsent(denyAll)
	st, body, _ := do(t, "POST", env.base+"/Consent", tb, cj)
	if st != 201 {
		t.Fatalf("POST deny: %d %s", st, body)
	}
	id := idOf(t, body)
	upd := selfGrant(pb, env.b.ID, consent.LabelMentalHealth)
	upd.ID = consent.DirectiveID(id)
	cj, _ = consent.FormatConsent(upd)
	if st, body, _ := do(t, "PUT", env.base+"/Consent/"+id, tb, cj); st != 422 {
		t.Fatalf("PUT a sourceless release: %d %s; want 422", st, body)
	}
	upd.Status = consent.StatusInactive
	cj, _ = consent.FormatConsent(upd)
	if st, body, _ := do(t, "PUT", env.base+"/Consent/"+id, tb, cj); st != 200 {
		t.Fatalf("PUT a withdrawal: %d %s; want 200", st, body)
	}
}
