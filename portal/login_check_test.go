package portal

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/concord-hie/concord/internal/errs"
)

// logins wraps the portal's login look-ups for a test: it counts them, can link a login to
// another person or to none, and can make every look-up fail. It is safe for concurrent use.
type logins struct {
	Identity
	StaffDirectory
	mu      sync.Mutex
	reads   int
	persons map[string]string // "iss|sub" → person, over the wrapped Identity; "" unlinks
	fail    error
}

func (l *logins) PersonForLogin(ctx context.Context, iss, sub string) (string, error) {
	l.mu.Lock()
	l.reads++
	fail, p, ok := l.fail, "", false
	if l.persons != nil {
		p, ok = l.persons[iss+"|"+sub]
	}
	l.mu.Unlock()
	switch {
	case fail != nil:
		return "", fail
	case ok && p == "":
		return "", errs.E("logins", errs.NotFound, "not enrolled")
	case ok:
		return p, nil
	}
	return l.Identity.PersonForLogin(ctx, iss, sub)
}

func (l *logins) StaffForLogin(ctx context.Context, iss, sub string) (Staff, error) {
	l.mu.Lock()
	l.reads++
	fail := l.fail
	l.mu.Unlock()
	if fail != nil {
		return Staff{}, fail
	}
	return l.StaffDirectory.StaffForLogin(ctx, iss, sub)
}

func (l *logins) set(f func(l *logins)) { l.mu.Lock(); f(l); l.mu.Unlock() }

func (l *logins) count() int { l.mu.Lock(); defer l.mu.Unlock(); return l.reads }

// newLoginsEnv is env with its login look-ups behind a logins.
func newLoginsEnv(t *testing.T) (*env, *logins) {
	t.Helper()
	l := &logins{}
	e := newEnv(t, envOpts{logins: func(id Identity, st StaffDirectory) (Identity, StaffDirectory) {
		l.Identity, l.StaffDirectory = id, st
		return l, l
	}})
	return e, l
}

// wantSignedOut checks that r ended the session sid as signing out does (deleted in Redis,
// its cookie expired, the site's data cleared) and sent the browser to the landing page.
func wantSignedOut(t *testing.T, e *env, r resp, sid string) {
	t.Helper()
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/" {
		t.Errorf("answered %d to %q, want 303 to /", r.status, r.header.Get("Location"))
	}
	if _, err := e.srv.Sessions().Load(t.Context(), sid); !errs.Is(err, errs.NotFound) {
		t.Errorf("the old session still loads (%v)", err)
	}
	if r.header.Get("Clear-Site-Data") == "" {
		t.Error("no Clear-Site-Data")
	}
	expired := false
	for _, ck := range r.header.Values("Set-Cookie") {
		expired = expired || strings.HasPrefix(ck, e.srv.cookie.session+"=;") && strings.Contains(ck, "Max-Age=0")
	}
	if !expired {
		t.Errorf("session cookie not expired: %q", r.header.Values("Set-Cookie"))
	}
}

// TestRemovedStaffSessionEnds: a staff role is copied into the session at sign-in, so a
// clinician removed from portal_staff (gone from the organization, or an account taken
// over), or given another role or member, must lose it at the next request and not at the
// idle or absolute timeout (security.md S9: 0 successful calls with the old session within
// 1 s of a disable). The session ends as a sign-out does and the page is not served.
func TestRemovedStaffSessionEnds(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		change string
	}{
		{"removed", `DELETE FROM portal_staff WHERE subject = 'sub-doc-1'`},
		{"made an officer", `UPDATE portal_staff SET role = 'officer' WHERE subject = 'sub-doc-1'`},
		{"moved to another member", `UPDATE portal_staff SET member_id = 'northlab' WHERE subject = 'sub-doc-1'`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOpts{})
			if _, err := e.pool.Exec(t.Context(), `INSERT INTO directory_members (id, name, system) VALUES ('northlab', 'North Valley Laboratory', 'urn:oid:2.999.2')`); err != nil {
				t.Fatal(err)
			}
			doc := newClient(t)
			e.signIn(t, doc, "drjones", "jones-pw")
			if r := doc.get(e.base + "/staff"); r.status != http.StatusOK {
				t.Fatalf("staff page before the change: %d", r.status)
			}
			sid := e.sessionID(doc)
			if _, err := e.pool.Exec(t.Context(), tt.change); err != nil {
				t.Fatal(err)
			}
			r := doc.get(e.base + "/staff")
			wantSignedOut(t, e, r, sid)
			if strings.Contains(r.body, "Staff area") {
				t.Error("the staff page was served")
			}
			if r := doc.get(e.base + "/staff"); r.status != http.StatusSeeOther || r.header.Get("Location") != "/" {
				t.Errorf("next request: %d to %q, want 303 to /", r.status, r.header.Get("Location"))
			}
		})
	}
}

// TestUnlinkedPatientSessionEnds: a patient's person is copied into the session at sign-in,
// so a login unlinked from its person (an enrolment made in error), or linked to another
// one, must stop reading that person's record at the next request; the session ends as a
// sign-out does and the records are not asked for.
func TestUnlinkedPatientSessionEnds(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		person string
	}{
		{"unlinked", ""},
		{"linked to another person", "person-2"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e, l := newLoginsEnv(t)
			alice := newClient(t)
			e.signIn(t, alice, "alice", "alice-pw")
			if r := alice.get(e.base + "/labs"); r.status != http.StatusOK {
				t.Fatalf("labs before the change: %d", r.status)
			}
			sid := e.sessionID(alice)
			e.records.mu.Lock()
			asked := len(e.records.viewers)
			e.records.mu.Unlock()
			l.set(func(l *logins) { l.persons = map[string]string{e.op.Issuer() + "|sub-pat-1": tt.person} })
			wantSignedOut(t, e, alice.get(e.base+"/labs"), sid)
			e.records.mu.Lock()
			defer e.records.mu.Unlock()
			if n := len(e.records.viewers); n != asked {
				t.Errorf("records asked %d more times after the change", n-asked)
			}
		})
	}
}

// TestLoginCheckFailsClosed: when the login's standing cannot be read, the request must
// not go on with the role the session had: an error page (503) and no page. The session
// is kept (a failing database removes nobody), so the next request after recovery works.
func TestLoginCheckFailsClosed(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		user, pw, path, page string
	}{
		{"drjones", "jones-pw", "/staff", "<h1>Staff area</h1>"},
		{"alice", "alice-pw", "/labs", "Glucose"},
	} {
		t.Run(tt.user, func(t *testing.T) {
			t.Parallel()
			e, l := newLoginsEnv(t)
			c := newClient(t)
			e.signIn(t, c, tt.user, tt.pw)
			l.set(func(l *logins) { l.fail = errs.E("test", errs.Unavailable, "database down") })
			r := c.get(e.base + tt.path)
			if r.status != http.StatusServiceUnavailable || strings.Contains(r.body, tt.page) {
				t.Errorf("%s with the look-up failing: %d, page shown %v; want 503 and no page", tt.path, r.status, strings.Contains(r.body, tt.page))
			}
			l.set(func(l *logins) { l.fail = nil })
			if r := c.get(e.base + tt.path); r.status != http.StatusOK || !strings.Contains(r.body, tt.page) {
				t.Errorf("%s after recovery: %d", tt.path, r.status)
			}
		})
	}
}

// TestLoginCheckReadsEveryRequest: the standing is read once per signed-in request, never
// cached (a cache would leave a removed login its role until the entry expired), and only
// once, so the check stays one primary-key read.
func TestLoginCheckReadsEveryRequest(t *testing.T) {
	t.Parallel()
	e, l := newLoginsEnv(t)
	doc := newClient(t)
	e.signIn(t, doc, "drjones", "jones-pw")
	before := l.count()
	for range 3 {
		if r := doc.get(e.base + "/staff"); r.status != http.StatusOK {
			t.Fatalf("staff page: %d", r.status)
		}
	}
	if n := l.count() - before; n != 3 {
		t.Errorf("3 requests read the login's standing %d times, want 3", n)
	}
}

// memStaff is a StaffDirectory in memory: "iss|sub" → staff record.
type memStaff map[string]Staff

func (m memStaff) StaffForLogin(_ context.Context, iss, sub string) (Staff, error) {
	if st, ok := m[iss+"|"+sub]; ok {
		return st, nil
	}
	return Staff{}, errs.E("memStaff", errs.NotFound, "not staff")
}

// TestLoginHolds is loginHolds' decision table. A caregiver acting for someone is held to
// the standing of the login's own role and person (their grant is checkProxy's), so an
// unlinked patient loses the patients they act for too; an unenrolled login has nothing to
// lose and costs no read; a role the check does not know never holds.
func TestLoginHolds(t *testing.T) {
	t.Parallel()
	l := &logins{Identity: memIdentity{"iss|pat": "p1", "iss|moved": "p9"},
		StaffDirectory: memStaff{"iss|doc": {Role: RoleClinician, Org: "riverside"}}}
	s := &Server{identity: l, staff: l}
	pat := Session{Role: RolePatient, PersonID: "p1", Issuer: "iss", Subject: "pat"}
	proxy := func(own Role, person, sub string) Session {
		return Session{Role: RoleProxy, PersonID: "p5", ProxyGrant: 7, OwnRole: own, OwnPerson: person, Issuer: "iss", Subject: sub}
	}
	for _, tt := range []struct {
		name  string
		sess  Session
		holds bool
		reads int
	}{
		{"patient still linked", pat, true, 1},
		{"patient linked to another person", Session{Role: RolePatient, PersonID: "p1", Issuer: "iss", Subject: "moved"}, false, 1},
		{"patient unlinked", Session{Role: RolePatient, PersonID: "p1", Issuer: "iss", Subject: "gone"}, false, 1},
		{"clinician still staff", Session{Role: RoleClinician, Org: "riverside", Issuer: "iss", Subject: "doc"}, true, 1},
		{"clinician of another member", Session{Role: RoleClinician, Org: "northlab", Issuer: "iss", Subject: "doc"}, false, 1},
		{"officer who is a clinician now", Session{Role: RoleOfficer, Org: "riverside", Issuer: "iss", Subject: "doc"}, false, 1},
		{"staff removed", Session{Role: RoleOfficer, Org: "riverside", Issuer: "iss", Subject: "pat"}, false, 1},
		{"caregiver, own patient login linked", proxy(RolePatient, "p1", "pat"), true, 1},
		{"caregiver, own patient login unlinked", proxy(RolePatient, "p1", "gone"), false, 1},
		{"caregiver, own login unenrolled", proxy(RoleUnenrolled, "", "new"), true, 0},
		{"unenrolled", Session{Role: RoleUnenrolled, Issuer: "iss", Subject: "new"}, true, 0},
		{"unknown role", Session{Role: RoleShare, Issuer: "iss", Subject: "pat"}, false, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := l.count()
			got, err := s.loginHolds(t.Context(), &tt.sess)
			if err != nil || got != tt.holds {
				t.Errorf("loginHolds = %v, %v; want %v", got, err, tt.holds)
			}
			if n := l.count() - before; n != tt.reads {
				t.Errorf("%d reads, want %d", n, tt.reads)
			}
		})
	}
	l.set(func(l *logins) { l.fail = errs.E("test", errs.Internal, "connection reset") })
	for _, sess := range []Session{pat, proxy(RolePatient, "p1", "pat"), {Role: RoleOfficer, Org: "riverside", Issuer: "iss", Subject: "doc"}} {
		if got, err := s.loginHolds(t.Context(), &sess); got || !errs.Is(err, errs.Unavailable) {
			t.Errorf("%s, look-up failing: %v, %v; want false and Unavailable", sess.Role, got, err)
		}
	}
}
