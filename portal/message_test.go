package portal

import (
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"
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
