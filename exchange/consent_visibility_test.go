package exchange

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/consent"
)

// previewOf returns, for the member's Patient patient previewed by tok for organization
// org and purpose TREAT, each class's decision and the directive that decided it.
func previewOf(t *testing.T, base, tok, patient, org string) (decision, by map[string]string) {
	t.Helper()
	st, body, _ := do(t, "GET", base+"/Patient/"+patient+"/$consent-preview?actor-org="+org+"&purpose=TREAT", tok, nil)
	if st != 200 {
		t.Fatalf("preview: %d %s", st, body)
	}
	var p previewResult
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	decision, by = map[string]string{}, map[string]string{}
	for _, c := range p.Parameter {
		var name string
		for _, part := range c.Part {
			if part.Name == "name" {
				name = *part.ValueCode
			}
		}
		for _, part := range c.Part {
			switch part.Name {
			case "decision":
				decision[name] = *part.ValueCode
			case "directive":
				by[name] = *part.ValueString
			}
		}
	}
	return decision, by
}

// TestPart2ConsentHiddenFromUnnamedMember: the Part 2 program files the patient's written
// consent naming B. Clinic C, which has a Patient for the person but is neither the filer
// nor named, must not learn that the consent exists, since its content tells that the
// patient is in a substance-use program (42 CFR 2.13(c)): GET /Consent/{id} is the 404 of
// an unknown id (audited as a denial), GET /Consent?patient= leaves it out of the entries
// and the total, and $consent-preview decides as if it were absent (consent review R2:
// C read it in full). The program that filed it and B, which it names, still see it.
func TestPart2ConsentHiddenFromUnnamedMember(t *testing.T) {
	env := newPart2Env(t)
	tp := env.tok(t, env.p, allScopes, "TREAT")
	tc := env.tok(t, env.c, allScopes, "TREAT")
	tb := env.tok(t, env.b, allScopes, "TREAT")
	pp, pc, pb := env.samePatient(t, tp, env.p), env.samePatient(t, tc, env.c), env.samePatient(t, tb, env.b)
	id := env.consentForB(t, tp, pp)

	st, body, _ := do(t, "GET", env.base+"/Consent?patient="+pc, tc, nil)
	if st != 200 || bytes.Contains(body, []byte("42CFRPart2")) || bytes.Contains(body, []byte(id)) || !bytes.Contains(body, []byte(`"total":0`)) {
		t.Errorf("C's Consent search: %d %.300s; want an empty Bundle", st, body)
	}
	_, unknown, _ := do(t, "GET", env.base+"/Consent/"+unknownID, tc, nil)
	st, body, _ = do(t, "GET", env.base+"/Consent/"+id, tc, nil)
	if st != 404 || !bytes.Equal(body, unknown) {
		t.Errorf("C reads the Part 2 consent naming B: %d %.200s; want the 404 of an unknown id %s", st, body, unknown)
	}
	if n := env.auditCount(t, audit.Read, `outcome = 'deny' AND reason = 'not-filed-or-named' AND consent = '`+id+`' AND org = '`+env.c.ID+`'`); n != 1 {
		t.Errorf("%d denial events for C's read; want 1", n)
	}
	decision, by := previewOf(t, env.base, tc, pc, env.b.ID)
	if decision["substance-use-program"] != "deny" || by["substance-use-program"] == id {
		t.Errorf("C's preview of B's access to Part 2 records: %s by %q; want deny, decided without the hidden consent", decision["substance-use-program"], by["substance-use-program"])
	}

	// The filer and the named recipient are served it.
	for _, m := range []struct{ name, tok, patient string }{{"P", tp, pp}, {"B", tb, pb}} {
		if st, body, _ := do(t, "GET", env.base+"/Consent/"+id, m.tok, nil); st != 200 || !bytes.Contains(body, []byte(consent.LabelPart2)) {
			t.Errorf("%s reads the consent: %d %.200s; want 200", m.name, st, body)
		}
		if st, body, _ := do(t, "GET", env.base+"/Consent?patient="+m.patient, m.tok, nil); st != 200 || !bytes.Contains(body, []byte(`"total":1`)) {
			t.Errorf("%s searches: %d %.300s; want the consent", m.name, st, body)
		}
		decision, by := previewOf(t, env.base, m.tok, m.patient, env.b.ID)
		if decision["substance-use-program"] != "permit" || by["substance-use-program"] != id {
			t.Errorf("%s's preview of B's access to Part 2 records: %s by %q; want permit by %s", m.name, decision["substance-use-program"], by["substance-use-program"], id)
		}
	}
}

// TestConsentServedToFilerOrNamed: beyond Part 2, a member is served only the patient's
// directives it filed, that name it, or that are general. B's restriction naming A is
// served to B (filer) and A (named), never to C; C's general choice (no payment use, no
// organization or label named) applies to everyone, so every member is served it.
func TestConsentServedToFilerOrNamed(t *testing.T) {
	env := newPart2Env(t)
	ta := env.tok(t, env.p, allScopes, "TREAT") // the program, as an ordinary member here
	tb := env.tok(t, env.b, allScopes, "TREAT")
	tc := env.tok(t, env.c, allScopes, "TREAT")
	pa, pb, pc := env.samePatient(t, ta, env.p), env.samePatient(t, tb, env.b), env.samePatient(t, tc, env.c)
	file := func(tok, patient string, d consent.Directive) string {
		t.Helper()
		d.ID, d.Version, d.Kind, d.PersonID, d.Status = "x", 1, consent.KindPatient, patient, consent.StatusActive
		cj, err := consent.FormatConsent(d)
		if err != nil {
			t.Fatal(err)
		}
		st, body, _ := do(t, "POST", env.base+"/Consent", tok, cj)
		if st != 201 {
			t.Fatalf("POST Consent: %d %s", st, body)
		}
		return idOf(t, body)
	}
	denyA := file(tb, pb, consent.Directive{PolicyRule: consent.OptOut, Provision: consent.Provision{Type: consent.Deny,
		Actors: []consent.Actor{{Role: consent.ParticipationRecipient, Reference: "Organization/" + env.p.ID}}}})
	own := file(tc, pc, consent.Directive{PolicyRule: consent.OptOut, Provision: consent.Provision{Type: consent.Deny,
		Purposes: []string{consent.PurposePayment}}})
	tests := []struct {
		name, tok, id string
		want          int
	}{
		{"filer reads its restriction", tb, denyA, 200},
		{"named member reads it", ta, denyA, 200},
		{"unnamed member", tc, denyA, 404},
		{"filer reads its own", tc, own, 200},
		// A general choice (no organization, no label) applies to every member alike.
		{"general choice, other member", tb, own, 200},
		{"general choice, other member (2)", ta, own, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if st, body, _ := do(t, "GET", env.base+"/Consent/"+tt.id, tt.tok, nil); st != tt.want {
				t.Fatalf("GET: %d %.200s; want %d", st, body, tt.want)
			}
		})
	}
	for _, s := range []struct {
		name, tok, patient string
		want               int
	}{{"A", ta, pa, 2}, {"B", tb, pb, 2}, {"C", tc, pc, 1}} {
		_, body, _ := do(t, "GET", env.base+"/Consent?patient="+s.patient, s.tok, nil)
		var b struct{ Total int }
		if err := json.Unmarshal(body, &b); err != nil || b.Total != s.want {
			t.Errorf("%s's search: total %d (%s); want %d", s.name, b.Total, body, s.want)
		}
	}
}
