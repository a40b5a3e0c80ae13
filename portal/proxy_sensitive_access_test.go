package portal

import (
	"encoding/csv"
	"fmt"
	"html"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/consent"
)

// TestCaregiverWithoutSensitiveAccessMissesPart2Accesses: the access log and the accounting
// of disclosures of a caregiver whose grant leaves sensitive information out omit every
// access by a Part 2 program, and every access of only sensitive resources (by label, by a
// Part 2 program source, a sensitive document, a Part 2 message thread); an access of some
// sensitive resources lists only the others. The counts on the page (the patient's own views
// not listed) count only what the caregiver may see. The patient and a caregiver with
// sensitive access get every row, as before.
func TestCaregiverWithoutSensitiveAccessMissesPart2Accesses(t *testing.T) {
	t.Parallel()
	se := newSensitiveEnv(t)
	ctx := t.Context()
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := se.pool.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	now := time.Now().UTC()
	fhirRow := func(typ, id, member, body string) {
		t.Helper()
		exec(`INSERT INTO fhir_history (type, id, version, member_id, last_updated, deleted, body) VALUES ($1, $2, 1, $3, $4, false, $5)`,
			typ, id, member, now.Add(-100*time.Hour), []byte(body))
	}
	fhirRow("Observation", "plain-1", "riverside", `{"resourceType":"Observation","id":"plain-1","meta":{"security":[{"code":"N"}]}}`)
	fhirRow("Observation", "psy-1", "riverside", `{"resourceType":"Observation","id":"psy-1","meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY"}]}}`)
	fhirRow("Observation", "hb-1", part2Member, `{"resourceType":"Observation","id":"hb-1"}`) // a Part 2 program's record, unlabelled
	fhirRow("Condition", "cond-1", "stmary", `{"resourceType":"Condition","id":"cond-1"}`)
	exec(`INSERT INTO documents_metadata (id, member_id, patient_id, origin, status, security) VALUES ('doc-eth', 'stmary', 'p-1', 'clinical', 'current', '{ETH,R}')`)
	exec(`INSERT INTO documents_contents (binary_id, document_id, member_id, object_key, size, sha1, content_type)
		VALUES ('bin-eth', 'doc-eth', 'stmary', $1, 10, 'x', 'application/pdf')`, strings.Repeat("a", 64))
	thread := seedThread(t, se.pool, part2Member, part2Subject, part2Canary, "ok", now.Add(-90*time.Hour))

	obs := func(ids ...string) []audit.Resource {
		var rs []audit.Resource
		for _, id := range ids {
			rs = append(rs, audit.Resource{Type: "Observation", ID: id})
		}
		return rs
	}
	clin := func(h int, org string, rs []audit.Resource) audit.Event {
		return audit.Event{Time: now.Add(-time.Duration(h) * time.Hour), Action: audit.Read, Outcome: audit.Permit, Org: org,
			Role: consent.RoleClinician, Purpose: consent.PurposeTreatment, Patient: "person-1", Actor: "https://idp." + org + ".example|doc", Resources: rs}
	}
	own := func(h int, rs []audit.Resource) audit.Event {
		return audit.Event{Time: now.Add(-time.Duration(h) * time.Hour), Action: audit.Read, Outcome: audit.Permit, Role: consent.RolePatient,
			Purpose: consent.PurposePatientRequest, Patient: "person-1", Actor: "https://op.example|sub-pat-1", Resources: rs}
	}
	evs := []audit.Event{
		clin(80, part2Member, obs("hb-1")),                                      // hidden: a Part 2 program read
		clin(79, part2Member, nil),                                              // hidden: a Part 2 program, nothing named
		clin(78, "riverside", obs("psy-1")),                                     // hidden: only sensitive data
		clin(77, "riverside", obs("plain-1", "psy-1")),                          // shown, without the sensitive result
		clin(76, "stmary", obs("hb-1")),                                         // hidden: a Part 2 program's record
		clin(75, "stmary", []audit.Resource{{Type: "Condition", ID: "cond-1"}}), // shown
		clin(74, "stmary", []audit.Resource{{Type: "Binary", ID: "bin-eth"}, {Type: "DocumentReference", ID: "doc-eth"}}), // hidden
		own(73, obs("plain-1")), // shown (a patient's own view)
		own(72, obs("psy-1")),   // hidden
		{Time: now.Add(-71 * time.Hour), Action: audit.Read, Outcome: audit.Permit, Reason: "portal-message", Role: consent.RoleProxy,
			Purpose: consent.PurposePatientRequest, Patient: "person-1", Actor: "https://op.example|sub-new-1",
			Resources: []audit.Resource{{Type: "Communication", ID: strconv.FormatInt(thread, 10)}}}, // hidden: a Part 2 thread
	}
	for _, ev := range evs {
		if err := se.alog.Append(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}

	alice := newClient(t)
	se.signIn(t, alice, "alice", "alice-pw")
	nora, setSensitive := se.caregiverOf(t, alice)

	rows := func(body string) int { return strings.Count(body, "<tr") - 1 }
	csvRows := func(c *client) [][]string {
		t.Helper()
		r := c.get(se.base + "/access/accounting.csv")
		if r.status != http.StatusOK {
			t.Fatalf("accounting CSV: %d\n%s", r.status, r.body)
		}
		recs, err := csv.NewReader(strings.NewReader(r.body)).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		return recs[1:]
	}

	// The caregiver without sensitive access.
	page := html.UnescapeString(nora.getPrivate(se.base, "/access").body)
	mine := html.UnescapeString(nora.getPrivate(se.base, "/access?mine=1").body)
	accounting := csvRows(nora)
	var flat strings.Builder
	for _, r := range accounting {
		flat.WriteString(strings.Join(r, ",") + "\n")
	}
	for what, text := range map[string]string{"access log": page, "access log with own views": mine, "accounting": flat.String()} {
		for _, leak := range []string{part2Name, part2Member, "<span>Documents", ",Documents"} { // not the nav link
			if strings.Contains(text, leak) {
				t.Errorf("the caregiver's %s names %q:\n%s", what, leak, text)
			}
		}
	}
	if n := rows(page); n != 2 {
		t.Errorf("the caregiver's access log has %d rows, want 2 (Riverside's ordinary read, St Mary's Condition read):\n%s", n, page)
	}
	if !strings.Contains(page, "1 of the patient's own views are not listed") {
		t.Errorf("the caregiver's count of the patient's own views is not 1:\n%s", page)
	}
	if n := rows(mine); n != 3 {
		t.Errorf("the caregiver's access log with own views has %d rows, want 3:\n%s", n, mine)
	}
	if len(accounting) != 3 {
		t.Errorf("the caregiver's accounting has %d rows, want 3:\n%s", len(accounting), flat.String())
	}
	for _, r := range accounting {
		if strings.Contains(r[4], "items)") {
			t.Errorf("the caregiver's accounting counts hidden items: %q", r)
		}
	}

	// The patient: every row, the program named.
	ap := html.UnescapeString(alice.getPrivate(se.base, "/access").body)
	if n := rows(ap); n != 8 || !strings.Contains(ap, part2Name) || !strings.Contains(ap, "2 of your own views are not listed") {
		t.Errorf("the patient's access log: %d rows, want 8, with %s:\n%s", n, part2Name, ap)
	}
	if n := len(csvRows(alice)); n != 10 {
		t.Errorf("the patient's accounting has %d rows, want 10", n)
	}
	// A caregiver with sensitive access: every row too.
	setSensitive(true)
	if n := rows(html.UnescapeString(nora.getPrivate(se.base, "/access?mine=1").body)); n != 10 {
		t.Errorf("the caregiver with sensitive access sees %d rows, want 10", n)
	}
	if got := csvRows(nora); len(got) != 10 || !strings.Contains(fmt.Sprint(got), part2Name) {
		t.Errorf("the caregiver with sensitive access: %d accounting rows, want 10 naming %s", len(got), part2Name)
	}
}
