package portal

import (
	"context"
	"errors"
	"html"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/internal/db"
)

func TestPatientMessagesACareTeam(t *testing.T) {
	t.Parallel()
	se := newShareEnv(t, false)
	alice := newClient(t)
	if r := se.signIn(t, alice, "alice", "alice-pw"); r.status != http.StatusSeeOther {
		t.Fatalf("sign-in: %d", r.status)
	}
	if r := alice.getPrivate(se.base, "/labs"); !strings.Contains(r.body, `href="/messages"`) {
		t.Errorf("the patient navigation has no Messages")
	}
	page := alice.getPrivate(se.base, "/messages/new")
	if !strings.Contains(page.body, `value="riverside"`) {
		t.Fatalf("the clinic holding Alice's records is not offered:\n%s", page.body)
	}
	csrf := csrfFrom(t, page.body)
	send := func(form url.Values) resp {
		form.Set("_csrf", csrf)
		return alice.post(se.base+"/messages/new", form, "same-origin")
	}
	// A clinic that holds none of her records is refused with a readable error.
	if r := send(url.Values{"clinic": {"lakeside"}, "subject": {"Hi"}, "body": {"Hello"}}); r.status != http.StatusBadRequest || !strings.Contains(r.body, "Please choose the clinic") {
		t.Errorf("other clinic: %d", r.status)
	}
	if r := send(url.Values{"clinic": {"riverside"}, "subject": {"Hi"}, "body": {strings.Repeat("a", 4001)}}); r.status != http.StatusBadRequest || !strings.Contains(r.body, "too long") {
		t.Errorf("over-long body: %d", r.status)
	}
	// Without the CSRF token nothing is sent.
	// (A same-origin request is let through by its Sec-Fetch-Site, as on every portal form.)
	for _, site := range []string{"", "cross-site"} {
		if r := alice.post(se.base+"/messages/new", url.Values{"clinic": {"riverside"}, "subject": {"Hi"}, "body": {"x"}}, site); r.status < 400 {
			t.Errorf("no CSRF token, Sec-Fetch-Site %q: %d", site, r.status)
		}
	}
	r := send(url.Values{"clinic": {"riverside"}, "subject": {" Refill <b>please</b> "}, "body": {"My <script>alert(1)</script> prescription"}})
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.header.Get("Location"), "/messages/") {
		t.Fatalf("send: %d %s\n%s", r.status, r.header.Get("Location"), r.body)
	}
	loc := r.header.Get("Location")
	th := alice.getPrivate(se.base, loc)
	if strings.Contains(th.body, "<script>alert") || !strings.Contains(html.UnescapeString(th.body), "My <script>alert(1)</script> prescription") {
		t.Errorf("the body is not shown as text:\n%s", th.body)
	}
	if in := alice.getPrivate(se.base, "/messages"); !strings.Contains(in.body, `href="`+loc+`"`) {
		t.Errorf("inbox lacks the thread")
	}
	if strings.Contains(se.logs.String(), "prescription") || strings.Contains(se.logs.String(), "Refill") {
		t.Errorf("a message was logged")
	}
	// Another patient's view of the thread is the normal 404.
	if r := alice.get(se.base + "/messages/999999"); r.status != http.StatusNotFound {
		t.Errorf("unknown thread: %d", r.status)
	}
}

func (a *switchAudit) AppendTx(ctx context.Context, tx db.Querier, evs ...audit.Event) error {
	if a.fail.Load() {
		return errors.New("audit database down")
	}
	return a.log.AppendTx(ctx, tx, evs...)
}

// TestClinicianAnswersAPatient: the clinic's clinician sees the thread in the inbox, opens
// it (audited as a read of the patient's Communication), replies and closes it; the patient
// sees the reply with an unread badge; with the audit log down the thread is not shown.
func TestClinicianAnswersAPatient(t *testing.T) {
	t.Parallel()
	se := newShareEnv(t, false)
	ctx := context.Background()
	id := se.clinicThread(t, "Refill question", "Can I get a refill?")
	path := "/staff/messages/" + strconv.FormatInt(id, 10)
	doc := newClient(t)
	se.signIn(t, doc, "drjones", "jones-pw")
	inbox := doc.getPrivate(se.base, "/staff")
	if !strings.Contains(inbox.body, `href="`+path+`"`) || !strings.Contains(inbox.body, "1 new") {
		t.Fatalf("clinician inbox:\n%s", inbox.body)
	}
	se.audit.fail.Store(true)
	if r := doc.get(se.base + path); r.status != http.StatusServiceUnavailable || strings.Contains(r.body, "refill?") {
		t.Errorf("audit down: %d, shown: %v", r.status, strings.Contains(r.body, "refill?"))
	}
	se.audit.fail.Store(false)
	th := doc.getPrivate(se.base, path)
	if !strings.Contains(th.body, "Can I get a refill?") {
		t.Fatalf("thread:\n%s", th.body)
	}
	var n int
	if err := se.pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE action = 'read' AND patient = $1 AND actor = $2`,
		se.person, se.op.Issuer()+"|sub-doc-1").Scan(&n); err != nil || n != 1 {
		t.Errorf("audit events of the clinician's read: %d, %v", n, err)
	}
	r := doc.post(se.base+path, url.Values{"_csrf": {csrfFrom(t, th.body)}, "body": {"Yes, sent to your pharmacy."}}, "same-origin")
	if r.status != http.StatusSeeOther {
		t.Fatalf("reply: %d\n%s", r.status, r.body)
	}
	if r := doc.post(se.base+path+"/close", url.Values{"_csrf": {csrfFrom(t, th.body)}}, "same-origin"); r.status != http.StatusSeeOther {
		t.Fatalf("close: %d", r.status)
	}

	alice := newClient(t)
	se.signIn(t, alice, "alice", "alice-pw")
	if in := alice.getPrivate(se.base, "/messages"); !strings.Contains(in.body, "1 new") {
		t.Errorf("patient inbox has no unread badge:\n%s", in.body)
	}
	pt := alice.getPrivate(se.base, "/messages/"+strconv.FormatInt(id, 10))
	if !strings.Contains(pt.body, "Yes, sent to your pharmacy.") || !strings.Contains(pt.body, "Dr. Sam Jones") {
		t.Errorf("patient does not see the reply:\n%s", pt.body)
	}
	// The patient cannot use the clinician's pages; the unknown thread is the normal 404.
	if r := alice.get(se.base + path); r.status != http.StatusNotFound && r.status != http.StatusForbidden {
		t.Errorf("patient on the staff thread: %d", r.status)
	}
	if r := doc.get(se.base + "/staff/messages/999999"); r.status != http.StatusNotFound {
		t.Errorf("unknown thread: %d", r.status)
	}
}

// clinicThread makes drjones (sub-doc-1) a clinician at riverside and opens a thread from
// the patient to riverside with subject and body; it returns the thread's id.
func (se *shareEnv) clinicThread(t *testing.T, subject, body string) int64 {
	t.Helper()
	ctx := context.Background()
	if err := NewStaffStore(se.pool).AddStaff(ctx, se.op.Issuer(), "sub-doc-1", Staff{Role: RoleClinician, Org: "riverside", Name: "Dr. Sam Jones"}); err != nil {
		t.Fatal(err)
	}
	id, err := NewMessageStore(se.pool).CreateThread(ctx, se.person, "riverside", subject,
		Message{AuthorLogin: "iss|alice", AuthorName: "Alice", Body: body}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return id
}
