package portal

import (
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/concord-hie/concord/internal/testkit"
)

// acceptCaregiver has alice (signed in as c) invite "Nora Nguyen" and newbie accept; it
// returns newbie's client, acting for alice.
func acceptCaregiver(t *testing.T, e *env, alice *client) *client {
	t.Helper()
	form := alice.getPrivate(e.base, "/caregivers")
	r := alice.post(e.base+"/caregivers", url.Values{"_csrf": {csrfFrom(t, form.body)}, "name": {"Nora Nguyen"}, "relationship": {"parent"}}, "same-origin")
	m := inviteURLRe.FindStringSubmatch(r.body)
	if r.status != http.StatusOK || m == nil {
		t.Fatalf("invite: %d\n%s", r.status, r.body)
	}
	link := html.UnescapeString(m[1])
	nora := newClient(t)
	e.signIn(t, nora, "newbie", "newbie-pw")
	inv := nora.getPrivate(e.base, strings.TrimPrefix(link, e.base))
	if acc := nora.post(link, url.Values{"_csrf": {csrfFrom(t, inv.body)}}, "same-origin"); acc.status != http.StatusSeeOther {
		t.Fatalf("accept: %d\n%s", acc.status, acc.body)
	}
	return nora
}

// TestCaregiverPagesSpeakOfThePatient: a caregiver acting for Alice reads her access log,
// documents and messages in words about Alice, never "your record" or "your uploads", and
// is offered no upload form; Alice herself still reads "your".
func TestCaregiverPagesSpeakOfThePatient(t *testing.T) {
	t.Parallel()
	pe := newPrivacyEnv(t, false)
	alice := pe.signedIn(t, "alice", "alice-pw")
	nora := acceptCaregiver(t, pe.env, alice)

	acc := html.UnescapeString(nora.getPrivate(pe.base, "/access").body)
	for _, want := range []string{"<title>Who viewed Alice Nguyen's record · Concord</title>", "<h1>Who viewed Alice Nguyen's record</h1>",
		"received their health information", "Someone using the patient's share link", "The patient's own request"} {
		if !strings.Contains(acc, want) {
			t.Errorf("caregiver's access log lacks %q", want)
		}
	}
	for _, not := range []string{"Who viewed your record", "your share link", "Your own request", "Not you?"} {
		if strings.Contains(acc, not) {
			t.Errorf("caregiver's access log says %q", not)
		}
	}
	own := html.UnescapeString(alice.getPrivate(pe.base, "/access").body)
	for _, want := range []string{"<h1>Who viewed your record</h1>", "Someone using your share link", "Your own request"} {
		if !strings.Contains(own, want) {
			t.Errorf("Alice's access log lacks %q", want)
		}
	}
}

// TestCaregiverDocumentsAndMessages: a caregiver's documents page names the patient's care
// team and uploads, with no upload form; the inbox is titled with the patient's name.
func TestCaregiverDocumentsAndMessages(t *testing.T) {
	t.Parallel()
	pool := testkit.DB(t)
	alog := auditLog(t, pool)
	docs := &memDocuments{person: "person-1", uploads: map[string][]byte{}, bytes: map[string][]byte{"note-1": []byte("x")},
		items: []DocumentItem{{ID: "note-1", Title: "Progress note", Date: time.Date(2026, 8, 12, 0, 0, 0, 0, time.UTC),
			Sources: []string{"Riverside Family Clinic"}, ContentType: "text/plain", Size: 1, Status: "current"}}}
	e := newEnv(t, envOpts{proxies: NewProxyStore(pool, alog), documents: docs, messageStore: NewMessageStore(pool).WithAudit(alog)})
	alice := newClient(t)
	e.signIn(t, alice, "alice", "alice-pw")
	nora := acceptCaregiver(t, e, alice)

	d := html.UnescapeString(nora.getPrivate(e.base, "/documents").body)
	for _, want := range []string{"From their care team", "Their uploads", "Only the patient can add one"} {
		if !strings.Contains(d, want) {
			t.Errorf("caregiver's documents lack %q", want)
		}
	}
	if strings.Contains(d, "Your uploads") || strings.Contains(d, `type="file"`) {
		t.Errorf("caregiver's documents offer the patient's uploads or an upload form")
	}
	if own := alice.getPrivate(e.base, "/documents").body; !strings.Contains(own, "Your uploads") || !strings.Contains(own, `type="file"`) {
		t.Errorf("Alice's documents lack her uploads or the upload form")
	}
	m := html.UnescapeString(nora.getPrivate(e.base, "/messages").body)
	if !strings.Contains(m, "<h1>Alice Nguyen's messages</h1>") || strings.Contains(m, "Your conversations") {
		t.Errorf("caregiver's inbox:\n%s", m)
	}
}

func TestOfficerWords(t *testing.T) {
	for _, tt := range []struct{ words, code, want string }{
		{purposeWords("TREAT"), "TREAT", "Treatment (TREAT)"},
		{purposeWords("PATRQT"), "PATRQT", "The patient's own request (PATRQT)"},
		{purposeWords("ODD"), "ODD", "ODD"},
		{purposeWords(""), "", "Not stated"},
	} {
		if got := officerWords(tt.words, tt.code); got != tt.want {
			t.Errorf("officerWords(%q, %q) = %q, want %q", tt.words, tt.code, got, tt.want)
		}
	}
	if got := thirdPerson("Allergies, Your details"); got != "Allergies, The patient's details" {
		t.Errorf("thirdPerson of a list: %q", got)
	}
	if got := thirdPerson("Young Clinic"); got != "Young Clinic" {
		t.Errorf("thirdPerson changed a name: %q", got)
	}
}
