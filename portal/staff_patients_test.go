package portal

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/internal/errs"
)

// memPatients is one organization's patients by MRN, as PatientLookup sees them.
type memPatients struct {
	org   string
	byMRN map[string]OrgPatient
}

func (m memPatients) ByMRN(_ context.Context, v Viewer, mrn string) (OrgPatient, error) {
	if p, ok := m.byMRN[mrn]; ok && v.Org == m.org {
		return p, nil
	}
	return OrgPatient{}, errs.E("memPatients", errs.NotFound, "no such patient")
}

func (m memPatients) ByID(_ context.Context, v Viewer, id string) (OrgPatient, error) {
	for _, p := range m.byMRN {
		if p.ID == id && v.Org == m.org {
			return p, nil
		}
	}
	return OrgPatient{}, errs.E("memPatients", errs.NotFound, "no such patient")
}

func (m memPatients) ByPerson(_ context.Context, v Viewer, person string) (OrgPatient, error) {
	for _, p := range m.byMRN {
		if p.PersonID == person && v.Org == m.org {
			return p, nil
		}
	}
	return OrgPatient{}, errs.E("memPatients", errs.NotFound, "no such patient")
}

// TestClinicianPatientLookUp: a clinician finds one of the organization's patients by MRN
// (a POST with the CSRF token, so the MRN stays out of URLs) and sees the regional labs
// read as a clinician of that organization; unknown MRNs and empty input are readable form
// errors; another organization's patient id and a patient login get the 404 page.
func TestClinicianPatientLookUp(t *testing.T) {
	t.Parallel()
	pts := memPatients{org: "riverside", byMRN: map[string]OrgPatient{
		"RFC-1001": {ID: "pat-1", MRN: "RFC-1001", PersonID: "person-1", Name: "Alice Nguyen", BirthDate: "1984-03-02"},
	}}
	e := newEnv(t, envOpts{patients: pts})
	c := newClient(t)
	e.signIn(t, c, "drjones", "jones-pw")
	staff := c.get(e.base + "/staff")
	if !strings.Contains(staff.body, `href="/staff/patients"`) {
		t.Fatalf("staff page offers no look-up:\n%s", staff.body)
	}
	form := c.get(e.base + "/staff/patients")
	if form.status != http.StatusOK {
		t.Fatalf("look-up form: %d", form.status)
	}
	tok := csrfFrom(t, form.body)
	if r := c.post(e.base+"/staff/patients", url.Values{"mrn": {"RFC-1001"}}, ""); r.status != http.StatusBadRequest {
		t.Errorf("look-up without CSRF token: %d", r.status)
	}
	if r := c.post(e.base+"/staff/patients", url.Values{"_csrf": {tok}, "mrn": {"RFC-1001"}}, "cross-site"); r.status != http.StatusForbidden {
		t.Errorf("cross-site look-up: %d", r.status)
	}
	if r := c.post(e.base+"/staff/patients", url.Values{"_csrf": {tok}, "mrn": {"  "}}, ""); r.status != http.StatusBadRequest || !strings.Contains(r.body, "Enter the patient") {
		t.Errorf("empty MRN: %d", r.status)
	}
	if r := c.post(e.base+"/staff/patients", url.Values{"_csrf": {tok}, "mrn": {"RFC-9999"}}, ""); r.status != http.StatusUnprocessableEntity || !strings.Contains(r.body, "has no patient with that MRN") {
		t.Errorf("unknown MRN: %d", r.status)
	}
	r := c.post(e.base+"/staff/patients", url.Values{"_csrf": {tok}, "mrn": {"RFC-1001"}}, "")
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/staff/patients/pat-1" {
		t.Fatalf("found MRN: %d to %q", r.status, r.header.Get("Location"))
	}
	page := c.get(e.base + "/staff/patients/pat-1")
	if page.status != http.StatusOK || !strings.Contains(page.body, "Alice Nguyen") || !strings.Contains(page.body, "1984-03-02") ||
		!strings.Contains(page.body, sampleLabs()[0].Display) {
		t.Fatalf("patient page %d:\n%s", page.status, page.body)
	}
	e.records.mu.Lock()
	last := e.records.viewers[len(e.records.viewers)-1]
	e.records.mu.Unlock()
	if last.Role != RoleClinician || last.Org != "riverside" || last.PersonID != "" || !strings.HasSuffix(last.Actor, "|sub-doc-1") {
		t.Errorf("labs read as %+v, want the clinician of riverside", last)
	}
	if strings.Contains(page.body, "42 CFR Part 2") {
		t.Errorf("the §2.32 notice shows with no Part 2 record on the page")
	}
	// A Part 2 record disclosed to the clinician brings the §2.32 notice and its mark.
	e.records.mu.Lock()
	e.records.labs["person-1"][0].Part2 = true
	e.records.mu.Unlock()
	page = c.get(e.base + "/staff/patients/pat-1")
	if !strings.Contains(page.body, consent.Part2Notice[:60]) || !strings.Contains(page.body, `class="part2-tag"`) {
		t.Errorf("Part 2 result without the notice:\n%s", page.body)
	}
	if r := c.get(e.base + "/staff/patients/pat-of-another-org"); r.status != http.StatusNotFound {
		t.Errorf("another organization's patient: %d", r.status)
	}
	p := newClient(t)
	e.signIn(t, p, "alice", "alice-pw")
	if r := p.get(e.base + "/staff/patients/pat-1"); r.status != http.StatusNotFound {
		t.Errorf("patient login on the look-up: %d", r.status)
	}
}

// failingPatients is a look-up whose every answer is errs.Unavailable (its audit is down).
type failingPatients struct{ memPatients }

func (failingPatients) ByPerson(context.Context, Viewer, string) (OrgPatient, error) {
	return OrgPatient{}, errs.E("failingPatients", errs.Unavailable, "audit down")
}

// TestClinicianInboxNamesThePatient: each thread in the clinician's inbox names the
// organization's own record of the patient (name, MRN, birth date); a thread of a person
// the organization holds no record of is listed without a name; when the look-up fails
// (its audited read), the page fails rather than list names unaudited.
func TestClinicianInboxNamesThePatient(t *testing.T) {
	t.Parallel()
	pts := memPatients{org: "riverside", byMRN: map[string]OrgPatient{
		"RFC-1001": {ID: "pat-1", MRN: "RFC-1001", PersonID: "person-1", Name: "Alice Nguyen", BirthDate: "1984-03-02"},
	}}
	for _, failing := range []bool{false, true} {
		var lookup PatientLookup = pts
		if failing {
			lookup = failingPatients{pts}
		}
		e := newEnv(t, envOpts{patients: lookup, messages: true})
		ms := NewMessageStore(e.pool)
		for _, person := range []string{"person-1", "person-gone"} {
			if _, err := ms.CreateThread(t.Context(), person, "riverside", "Question from "+person,
				Message{AuthorLogin: "iss|x", AuthorName: "x", Body: "Hello"}, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		c := newClient(t)
		e.signIn(t, c, "drjones", "jones-pw")
		staff := c.get(e.base + "/staff")
		if failing {
			if staff.status != http.StatusServiceUnavailable || strings.Contains(staff.body, "Question from") {
				t.Fatalf("look-up down: %d, lists threads: %v", staff.status, strings.Contains(staff.body, "Question from"))
			}
			continue
		}
		if staff.status != http.StatusOK || !strings.Contains(staff.body, "Alice Nguyen") || !strings.Contains(staff.body, "MRN RFC-1001") ||
			!strings.Contains(staff.body, "Question from person-gone") || strings.Count(staff.body, "MRN ") != 1 {
			t.Fatalf("inbox %d:\n%s", staff.status, staff.body)
		}
	}
}

// memEmergency keeps declarations in memory, as Emergency sees them.
type memEmergency struct {
	mu    sync.Mutex
	until map[string]time.Time // by actor|person
}

func (m *memEmergency) Declare(_ context.Context, v Viewer, person, code, text string) (time.Time, error) {
	if code == "" || strings.TrimSpace(text) == "" {
		return time.Time{}, errs.E("memEmergency", errs.Invalid, "reason")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	u := time.Now().Add(time.Hour)
	m.until[v.Actor+"|"+person] = u
	return u, nil
}

func (m *memEmergency) Active(_ context.Context, v Viewer, person string) (time.Time, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.until[v.Actor+"|"+person], nil
}

// newBreakGlassEnv is env where Alice is Riverside's patient pat-1 and clinicians may
// break the glass (declarations kept in em), with drjones signed in on c.
func newBreakGlassEnv(t *testing.T) (e *env, em *memEmergency, c *client) {
	t.Helper()
	pts := memPatients{org: "riverside", byMRN: map[string]OrgPatient{
		"RFC-1001": {ID: "pat-1", MRN: "RFC-1001", PersonID: "person-1", Name: "Alice Nguyen", BirthDate: "1984-03-02"},
	}}
	em = &memEmergency{until: map[string]time.Time{}}
	e = newEnv(t, envOpts{patients: pts, emergency: em})
	c = newClient(t)
	e.signIn(t, c, "drjones", "jones-pw")
	return e, em, c
}

// TestClinicianBreakGlass: the clinician's patient page shows the summary and labs for
// treatment with an emergency-access form; a declaration without its reason is refused
// with a sentence; a declared emergency reads the record under it (purpose BTG), says so
// and offers no second declaration.
func TestClinicianBreakGlass(t *testing.T) {
	t.Parallel()
	e, _, c := newBreakGlassEnv(t)
	page := c.getPrivate(e.base, "/staff/patients/pat-1")
	if !strings.Contains(page.body, "Hyperlipidemia") || !strings.Contains(page.body, "Declare an emergency") || strings.Contains(page.body, "Emergency access until") {
		t.Fatalf("patient page before an emergency:\n%s", page.body)
	}
	tok := csrfFrom(t, page.body)
	if r := c.post(e.base+"/staff/patients/pat-1/break-glass", url.Values{"_csrf": {tok}, "reason": {"unresponsive"}, "text": {" "}}, "same-origin"); r.status != http.StatusBadRequest || !strings.Contains(r.body, "describe it") {
		t.Errorf("declaration without text: %d", r.status)
	}
	if r := c.post(e.base+"/staff/patients/other/break-glass", url.Values{"_csrf": {tok}, "reason": {"unresponsive"}, "text": {"x"}}, "same-origin"); r.status != http.StatusNotFound {
		t.Errorf("declaration for another organization's patient: %d", r.status)
	}
	if r := c.post(e.base+"/staff/patients/pat-1/break-glass", url.Values{"_csrf": {tok}, "reason": {"unresponsive"}, "text": {"Unconscious in the ED"}}, "same-origin"); r.status != http.StatusSeeOther {
		t.Fatalf("declaration: %d", r.status)
	}
	page = c.getPrivate(e.base, "/staff/patients/pat-1")
	if !strings.Contains(page.body, "Emergency access until") || strings.Contains(page.body, "Declare an emergency") {
		t.Errorf("patient page under an emergency:\n%s", page.body)
	}
	e.records.mu.Lock()
	last := e.records.viewers[len(e.records.viewers)-1]
	e.records.mu.Unlock()
	if !last.BreakGlass || last.Role != RoleClinician {
		t.Errorf("read as %+v; want the clinician under break-the-glass", last)
	}
}
