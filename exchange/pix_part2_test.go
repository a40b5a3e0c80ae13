package exchange

import (
	"net/url"
	"strings"
	"testing"
)

// TestPIXPart2SourceNotice: TestMatchPart2Notice checks that PIXm carries the §2.32
// notice when the target domain is the Part 2 program's. The reverse question discloses
// the same fact: B asks which of its own Patients the program's identifier MRN-7 belongs
// to (sourceIdentifier in the program's domain, targetSystem B), and the 200 tells B that
// its patient is the program's patient, so it carries the notice and the consent too
// (session review: only the targets were checked).
func TestPIXPart2SourceNotice(t *testing.T) {
	env := newPart2Env(t)
	tp := env.tok(t, env.p, allScopes, "TREAT")
	tb := env.tok(t, env.b, allScopes, "TREAT")
	pp := env.samePatient(t, tp, env.p)
	env.consentForB(t, tp, pp)
	pb := env.samePatient(t, tb, env.b)

	u := env.base + "/Patient/$ihe-pix?sourceIdentifier=" + url.QueryEscape(env.p.System+"|MRN-7") + "&targetSystem=" + url.QueryEscape(env.b.System)
	st, body, h := do(t, "GET", u, tb, nil)
	if st != 200 || !strings.Contains(string(body), "/Patient/"+pb) {
		t.Fatalf("setup: PIXm by B from the program's identifier into its own domain: %d %s", st, body)
	}
	if h.Get("Concord-Part2-Notice") == "" || strings.Count(strings.Join(h.Values("Link"), ","), `rel="`+relPart2Consent+`"`) != 1 {
		t.Errorf("PIXm resolved the Part 2 program's identifier MRN-7 to B's Patient %s without the §2.32 notice: headers Concord-Part2-Notice=%q Link=%q",
			pb, h.Get("Concord-Part2-Notice"), h.Values("Link"))
	}
}
