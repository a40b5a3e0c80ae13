package exchange

import (
	"bytes"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
)

// TestMatchPart2Notice: a 42 CFR Part 2 program's Patient carries the program labels
// (42CFRPart2, ETH, R). With the patient's consent naming member B, B's GET of it carries
// the §2.32 notice (part2-disclosure extension), as search and $everything do, and so must
// PDQm $match, which hands out the same whole record: the entry carries the notice and the
// Bundle one outcome entry with it (security review: $match gave it out bare).
func TestMatchPart2Notice(t *testing.T) {
	env := newPart2Env(t)
	tp := env.tok(t, env.p, allScopes, "TREAT")
	tb := env.tok(t, env.b, allScopes, "TREAT")
	pp := env.samePatient(t, tp, env.p) // only the program knows the person

	env.consentForB(t, tp, pp)

	// The read path: B gets the program's Patient with the notice.
	st, body, _ := do(t, "GET", env.base+"/Patient/"+pp, tb, nil)
	if st != 200 {
		t.Fatalf("B reads the program's Patient: %d %s", st, body)
	}
	if _, _, _, n := disclosure(t, body); n != 1 {
		t.Fatalf("B's GET of the Part 2 Patient has %d notices; want 1", n)
	}

	// $match: the same record, the same notice.
	q := []byte(`{"resourceType":"Parameters","parameter":[{"name":"resource","resource":{"resourceType":"Patient","name":[{"family":"Okafor","given":["Nneka"]}],"gender":"female","birthDate":"1984-06-02"}}]}`)
	st, body, _ = do(t, "POST", env.base+"/Patient/$match", tb, q)
	if st != 200 {
		t.Fatalf("$match: %d %s", st, body)
	}
	var b struct {
		Entry []struct {
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatal(err)
	}
	found, outcome := false, false
	for _, e := range b.Entry {
		if bytes.Contains(e.Resource, []byte(`"resourceType":"OperationOutcome"`)) && bytes.Contains(e.Resource, []byte("42CFRPart2")) {
			outcome = true
			continue
		}
		var r struct{ ID string }
		_ = json.Unmarshal(e.Resource, &r)
		if r.ID != pp {
			continue
		}
		found = true
		labels := securityOf(t, e.Resource)
		if _, _, _, n := disclosure(t, e.Resource); n != 1 {
			t.Errorf("$match disclosed the Part 2 program's Patient %s to B (labels %v) with %d §2.32 notices; want 1 as on GET", pp, labels, n)
		}
	}
	if !found || !outcome {
		t.Fatalf("$match by B: the program's Patient returned %v, the notice's outcome entry %v; want both:\n%s", found, outcome, body)
	}

	// PIXm: B's own record of the person, cross-referenced into the program's domain. The
	// identifier alone tells B the person is the program's patient; the answer has no meta,
	// so the notice travels in headers, as for Binary content.
	pb := env.samePatient(t, tb, env.b)
	u := env.base + "/Patient/$ihe-pix?sourceIdentifier=" + url.QueryEscape(env.b.System+"|MRN-7") + "&targetSystem=" + url.QueryEscape(env.p.System)
	st, body, h := do(t, "GET", u, tb, nil)
	if st != 200 || !bytes.Contains(body, []byte(`"value":"MRN-7"`)) || !bytes.Contains(body, []byte("/Patient/"+pp)) {
		t.Fatalf("PIXm by B (own Patient %s) into the program's domain: %d %s", pb, st, body)
	}
	if h.Get("Concord-Part2-Notice") == "" || !strings.Contains(strings.Join(h.Values("Link"), ","), `rel="`+relPart2Consent+`"`) {
		t.Errorf("PIXm named the program's identifier without the §2.32 notice: headers %v", h)
	}
}
