package portal

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestStaffSignInNeedsSecondFactor runs real code flows against the development OP: a
// clinician whose sign-in carries no second factor is refused with the explanatory page and
// gets no session; one who entered the OP's one-time code is signed in; a patient without a
// second factor is signed in.
func TestStaffSignInNeedsSecondFactor(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})

	solo := newClient(t)
	r := e.signIn(t, solo, "drsolo", "solo-pw")
	if r.status != http.StatusForbidden || !strings.Contains(r.body, "Staff sign-in needs a second factor") ||
		!strings.Contains(r.body, `name="mfa" value="1"`) {
		t.Fatalf("staff without MFA: %d\n%s", r.status, r.body)
	}
	if sid := e.sessionID(solo); sid != "" {
		t.Errorf("refused staff sign-in left a session cookie")
	}
	if p := solo.get(e.base + "/staff"); p.status == http.StatusOK {
		t.Errorf("refused staff reached /staff")
	}
	// The page's button asks the OP for the MFA acr and a fresh authentication.
	lr := solo.post(e.base+"/auth/login", url.Values{"_csrf": {csrfFrom(t, r.body)}, "mfa": {"1"}}, "")
	loc, _ := url.Parse(lr.header.Get("Location"))
	if lr.status != http.StatusSeeOther || loc == nil || loc.Query().Get("acr_values") != DefaultMFAACR || loc.Query().Get("prompt") != "login" {
		t.Errorf("sign-in with a second factor: %d to %q", lr.status, lr.header.Get("Location"))
	}

	doc := newClient(t)
	if r := e.signIn(t, doc, "drjones", "jones-pw"); r.status != http.StatusSeeOther || r.header.Get("Location") != "/staff" {
		t.Fatalf("staff with MFA: %d to %q\n%s", r.status, r.header.Get("Location"), r.body)
	}
	if p := doc.get(e.base + "/staff"); p.status != http.StatusOK {
		t.Errorf("staff with MFA on /staff: %d", p.status)
	} else if !strings.Contains(p.body, "Every record you open here is logged") || strings.Contains(p.body, "Every view of your record") {
		t.Error("the staff page's footer speaks to a patient")
	}
	sess, err := e.srv.Sessions().Load(t.Context(), e.sessionID(doc))
	if err != nil || !sess.MFA || sess.Role != RoleClinician {
		t.Errorf("staff session %+v, %v; want MFA clinician", sess.LogValue(), err)
	}

	pat := newClient(t)
	if r := e.signIn(t, pat, "alice", "alice-pw"); r.status != http.StatusSeeOther || r.header.Get("Location") != "/labs" {
		t.Fatalf("patient without MFA: %d to %q", r.status, r.header.Get("Location"))
	}
	if p := pat.get(e.base + "/labs"); p.status != http.StatusOK {
		t.Errorf("patient on /labs: %d", p.status)
	}
}

// TestStaffMFAOff: with the requirement switched off, a clinician without a second factor
// signs in.
func TestStaffMFAOff(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{staffMFAOff: true})
	c := newClient(t)
	if r := e.signIn(t, c, "drsolo", "solo-pw"); r.status != http.StatusSeeOther || r.header.Get("Location") != "/staff" {
		t.Fatalf("staff without MFA, requirement off: %d to %q", r.status, r.header.Get("Location"))
	}
}

func TestHasMFA(t *testing.T) {
	for _, tc := range []struct {
		acr  string
		amr  []string
		want bool
	}{
		{"", nil, false},
		{"", []string{"pwd"}, false},
		{"", []string{"pwd", "otp"}, true},
		{"", []string{"hwk"}, true},
		{"", []string{"mfa"}, true},
		{"", []string{"pwd", "kba"}, false},
		{DefaultMFAACR, nil, true},
		{"urn:example:low", []string{"pwd"}, false},
		{"0", []string{"PWD", "OTP "}, false}, // method names are exact
	} {
		if got := hasMFA(tc.acr, tc.amr, DefaultMFAACR); got != tc.want {
			t.Errorf("hasMFA(%q, %v) = %v, want %v", tc.acr, tc.amr, got, tc.want)
		}
	}
	if hasMFA("", []string{"pwd"}, "") {
		t.Error("an empty acr matched an empty wanted acr")
	}
}
