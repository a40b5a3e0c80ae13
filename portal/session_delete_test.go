package portal

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/concord-hie/concord/internal/errs"
)

// caregiverWithEndedGrant has Alice invite Nora Nguyen with an end in 10 minutes, newbie
// accept (so newbie acts for Alice) and load the labs page; then the grant ends, by end
// (the clock passes it) or else by Alice's revocation. It returns newbie's client and the
// CSRF token of the page newbie still has open.
func caregiverWithEndedGrant(t *testing.T, byEnd bool) (*env, *client, string) {
	t.Helper()
	e, store, clock := newProxyEnv(t)
	link := inviteEnding(t, e, store, "Nora Nguyen", clock.Now().Add(10*time.Minute))
	nora := newClient(t)
	e.signIn(t, nora, "newbie", "newbie-pw")
	accept(t, e, nora, link)
	tok := csrfFrom(t, nora.getPrivate(e.base, "/labs").body)
	if byEnd {
		clock.Add(11 * time.Minute) // within the idle timeout
	} else {
		v := Viewer{Role: RolePatient, PersonID: "person-1", Actor: e.op.Issuer() + "|sub-pat-1"}
		if err := store.Revoke(t.Context(), v, grantByName(t, e, "Nora Nguyen"), clock.Now()); err != nil {
			t.Fatal(err)
		}
	}
	return e, nora, tok
}

// TestSignOutAfterCaregiverGrantEnds: "Sign out" must sign out whatever the session has
// become. A caregiver whose grant ended while they were acting for the patient used to be
// stopped by the grant check, which switched the session back to their own role and sent
// them home without reaching the sign-out: the session stayed in Redis and no
// Clear-Site-Data was sent.
func TestSignOutAfterCaregiverGrantEnds(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		byEnd bool
	}{{"revoked", false}, {"end passed", true}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e, nora, tok := caregiverWithEndedGrant(t, tt.byEnd)
			sid := e.sessionID(nora)
			r := nora.post(e.base+"/logout", url.Values{"_csrf": {tok}}, "same-origin")
			if r.status != http.StatusSeeOther || strings.HasPrefix(r.header.Get("Location"), "/enrol") {
				t.Errorf("sign-out answered %d to %q, want 303 to the OP or the landing page", r.status, r.header.Get("Location"))
			}
			if _, err := e.srv.Sessions().Load(t.Context(), sid); !errs.Is(err, errs.NotFound) {
				t.Errorf("the session still loads after sign-out (%v)", err)
			}
			if r.header.Get("Clear-Site-Data") == "" {
				t.Error("sign-out answered without Clear-Site-Data")
			}
		})
	}
}

// TestSignInAfterCaregiverGrantEnds: "Sign in again" (a step-up) must start a sign-in
// whatever the session has become; a caregiver whose grant ended used to be sent home
// instead. The sign-in comes back as the login's own, not acting for the patient: the
// grant is checked again when it finishes.
func TestSignInAfterCaregiverGrantEnds(t *testing.T) {
	t.Parallel()
	e, nora, tok := caregiverWithEndedGrant(t, false)
	r := nora.post(e.base+"/auth/login", url.Values{"_csrf": {tok}, "step_up": {"1"}, "return_to": {"/labs"}}, "same-origin")
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.header.Get("Location"), e.op.Issuer()) {
		t.Fatalf("sign-in answered %d to %q, want 303 to the OP", r.status, r.header.Get("Location"))
	}
	cb := nora.get(e.opLogin(t, r.header.Get("Location"), "newbie", "newbie-pw"))
	if cb.status != http.StatusSeeOther {
		t.Fatalf("callback: %d", cb.status)
	}
	sess, err := e.srv.Sessions().Load(t.Context(), e.sessionID(nora))
	if err != nil || sess.Role != RoleUnenrolled || sess.ProxyGrant != 0 {
		t.Errorf("after the sign-in: role %q, grant %d (%v); want the login's own, unenrolled", sess.Role, sess.ProxyGrant, err)
	}
}
