package portal

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/internal/testkit"
	"github.com/concord-hie/concord/records"
)

// The member of the caregiver tests that is a 42 CFR Part 2 program, and the canaries
// that only a reader with sensitive access may meet.
const (
	part2Member  = "harbor"
	part2Name    = "Harbor Recovery Services"
	part2Subject = "Methadone dose question"
	part2Canary  = "CANARY-PART2-7f3a91"
)

// sensitiveEnv is env with real stores for caregivers, messages and the privacy pages
// (audit log, directory), a Part 2 program among the members, and the audit log.
type sensitiveEnv struct {
	*env
	alog *audit.Log
}

func newSensitiveEnv(t *testing.T) *sensitiveEnv {
	t.Helper()
	pool := testkit.DB(t)
	ctx := t.Context()
	// Riverside is newEnv's.
	if _, err := pool.Exec(ctx, `INSERT INTO directory_members (id, name, system, part2_program) VALUES
		('stmary', 'St Mary''s Hospital', 'urn:oid:2.999.2', false),
		($1, $2, 'urn:oid:2.999.9', true)`, part2Member, part2Name); err != nil {
		t.Fatal(err)
	}
	alog := auditLog(t, pool)
	cs := consent.NewStore()
	if _, err := records.EnsureDefaultPolicies(ctx, pool, cs, consent.PolicyConfig{}); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOpts{pool: pool,
		proxies:      NewProxyStore(pool, alog),
		messageStore: NewMessageStore(pool).WithAudit(alog),
		privacy:      NewPrivacyStore(pool, records.NewStoreDirectives(pool, cs, 0, nil), nil).WithAudit(alog).WithConsentStore(cs)})
	return &sensitiveEnv{env: e, alog: alog}
}

// caregiverOf has the patient signed in on alice invite a caregiver, who accepts with the
// "newbie" login; it returns the caregiver's client and a function that turns the
// caregiver's sensitive access on or off (from their next request).
func (se *sensitiveEnv) caregiverOf(t *testing.T, alice *client) (*client, func(on bool)) {
	t.Helper()
	nora := acceptCaregiver(t, se.env, alice)
	page := alice.getPrivate(se.base, "/caregivers")
	gm := grantIDRe.FindStringSubmatch(page.body)
	if gm == nil {
		t.Fatalf("no grant on the caregivers page:\n%s", page.body)
	}
	setSensitive := func(on bool) {
		t.Helper()
		v := "0"
		if on {
			v = "1"
		}
		if r := alice.post(se.base+"/caregivers/sensitive", url.Values{"_csrf": {csrfFrom(t, page.body)}, "grant": {gm[1]}, "on": {v}}, "same-origin"); r.status != http.StatusSeeOther {
			t.Fatalf("sensitive %s: %d", v, r.status)
		}
	}
	return nora, setSensitive
}

// seedThread stores a thread of person-1 with member, the patient's first message and an
// unread reply from the clinic; it returns the thread's ID.
func seedThread(t *testing.T, pool *pgxpool.Pool, member, subject, body, reply string, at time.Time) int64 {
	t.Helper()
	id, err := NewMessageStore(pool).CreateThread(t.Context(), "person-1", member, subject,
		Message{AuthorLogin: "https://op.example|sub-pat-1", AuthorName: "Alice", Body: body}, at)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(t.Context(), `INSERT INTO portal_messages (thread_id, author_kind, author_login, author_name, body, created_at)
		VALUES ($1, 'clinician', 'https://idp.example|clin', 'Care team', $2, $3)`, id, reply, at.Add(time.Minute).UTC()); err != nil {
		t.Fatal(err)
	}
	return id
}

var requestRefRe = regexp.MustCompile(`<code>[^<]*</code>`)

// TestCaregiverWithoutSensitiveAccessMissesPart2Threads: the patient's thread with a 42 CFR
// Part 2 program is absent for a caregiver whose grant leaves sensitive information out:
// not listed (nor its unread reply counted), 404 on open with the body of a thread that
// does not exist, no reply accepted, nothing marked read and no read audited. The patient
// sees it, and so does the caregiver once the patient lets them see sensitive information,
// until she takes that back.
func TestCaregiverWithoutSensitiveAccessMissesPart2Threads(t *testing.T) {
	t.Parallel()
	se := newSensitiveEnv(t)
	now := time.Now().UTC().Add(-time.Hour)
	plain := seedThread(t, se.pool, "riverside", "Refill question", "Could my statin be renewed?", "Renewed.", now)
	part2 := seedThread(t, se.pool, part2Member, part2Subject, part2Canary+" can the dose go down?", part2Canary+" reply", now.Add(time.Minute))

	alice := newClient(t)
	se.signIn(t, alice, "alice", "alice-pw")
	nora, setSensitive := se.caregiverOf(t, alice)
	part2Path := "/messages/" + strconv.FormatInt(part2, 10)

	inbox := nora.getPrivate(se.base, "/messages")
	if !strings.Contains(inbox.body, "Refill question") {
		t.Fatalf("the caregiver's inbox lacks the ordinary thread:\n%s", inbox.body)
	}
	for _, leak := range []string{part2Subject, part2Canary, part2Name, part2Path + `"`} {
		if strings.Contains(inbox.body, leak) {
			t.Errorf("the caregiver's inbox shows %q", leak)
		}
	}
	if n := strings.Count(inbox.body, `class="badge"`); n != 1 {
		t.Errorf("the caregiver's inbox has %d unread badges, want 1 (the ordinary thread's)", n)
	}

	open := nora.get(se.base + part2Path)
	absent := nora.get(se.base + "/messages/987654321")
	if open.status != http.StatusNotFound || strings.Contains(open.body, part2Canary) || strings.Contains(open.body, part2Subject) {
		t.Errorf("the caregiver opens the Part 2 thread: %d\n%s", open.status, open.body)
	}
	if requestRefRe.ReplaceAllString(open.body, "") != requestRefRe.ReplaceAllString(absent.body, "") {
		t.Errorf("the Part 2 thread's 404 differs from a missing thread's:\n%s\n---\n%s", open.body, absent.body)
	}
	reply := nora.post(se.base+part2Path, url.Values{"_csrf": {csrfFrom(t, inbox.body)}, "body": {"Asking for Alice"}}, "same-origin")
	if reply.status != http.StatusNotFound {
		t.Errorf("the caregiver's reply to the Part 2 thread: %d, want 404", reply.status)
	}
	var msgs, unread, reads int
	if err := se.pool.QueryRow(t.Context(), `SELECT count(*), count(*) FILTER (WHERE author_kind = 'clinician' AND read_at IS NULL)
		FROM portal_messages WHERE thread_id = $1`, part2).Scan(&msgs, &unread); err != nil || msgs != 2 || unread != 1 {
		t.Errorf("Part 2 thread after the caregiver: %d messages, %d unread (%v); want 2 and 1", msgs, unread, err)
	}
	if err := se.pool.QueryRow(t.Context(), `SELECT count(*) FROM audit_events WHERE reason = 'portal-message' AND resources = $1`,
		[]string{"Communication/" + strconv.FormatInt(part2, 10)}).Scan(&reads); err != nil || reads != 0 {
		t.Errorf("audited reads of the Part 2 thread: %d (%v), want 0", reads, err)
	}
	// The ordinary thread still opens for the caregiver.
	if r := nora.getPrivate(se.base, "/messages/"+strconv.FormatInt(plain, 10)); !strings.Contains(r.body, "Renewed.") {
		t.Errorf("the caregiver cannot read the ordinary thread:\n%s", r.body)
	}

	// The patient sees everything.
	if r := alice.getPrivate(se.base, "/messages"); !strings.Contains(r.body, part2Subject) || !strings.Contains(r.body, "Refill question") {
		t.Errorf("the patient's inbox lacks a thread:\n%s", r.body)
	}
	if r := alice.getPrivate(se.base, part2Path); !strings.Contains(r.body, part2Canary) {
		t.Errorf("the patient cannot read her Part 2 thread:\n%s", r.body)
	}

	// With sensitive access the caregiver sees it, from the next request; without, not.
	setSensitive(true)
	if r := nora.getPrivate(se.base, "/messages"); !strings.Contains(r.body, part2Subject) {
		t.Errorf("a caregiver with sensitive access does not see the Part 2 thread:\n%s", r.body)
	}
	if r := nora.getPrivate(se.base, part2Path); !strings.Contains(r.body, part2Canary) {
		t.Errorf("a caregiver with sensitive access cannot open the Part 2 thread:\n%s", r.body)
	}
	setSensitive(false)
	if r := nora.getPrivate(se.base, "/messages"); strings.Contains(r.body, part2Subject) {
		t.Errorf("the Part 2 thread is listed after sensitive access was taken back")
	}
	if r := nora.get(se.base + part2Path); r.status != http.StatusNotFound {
		t.Errorf("the Part 2 thread opens after sensitive access was taken back: %d", r.status)
	}
}

// TestMessageScopeForCaregivers: the store alone hides from a caregiver without sensitive
// access the threads with a Part 2 program, also one flagged after the thread began; the
// patient and a caregiver with sensitive access get all of them.
func TestMessageScopeForCaregivers(t *testing.T) {
	t.Parallel()
	pool := testkit.DB(t)
	if _, err := pool.Exec(t.Context(), `INSERT INTO directory_members (id, name, system, part2_program) VALUES
		('riverside', 'Riverside Family Clinic', 'urn:oid:2.999.1', false), ($1, $2, 'urn:oid:2.999.9', true)`, part2Member, part2Name); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	plain := seedThread(t, pool, "riverside", "Refill question", "Renew please", "Renewed.", now)
	p2 := seedThread(t, pool, part2Member, part2Subject, part2Canary, "ok", now)
	if _, err := pool.Exec(t.Context(), `INSERT INTO directory_members (id, name, system) VALUES ('later', 'Later Program', 'urn:oid:2.999.8')`); err != nil {
		t.Fatal(err)
	}
	later := seedThread(t, pool, "later", "Before the flag", "Hello", "Hi", now)
	if _, err := pool.Exec(t.Context(), `UPDATE directory_members SET part2_program = true WHERE id = 'later'`); err != nil {
		t.Fatal(err)
	}
	ms := NewMessageStore(pool)
	for _, tt := range []struct {
		name string
		v    Viewer
		want []int64
	}{
		{"patient", Viewer{Role: RolePatient, PersonID: "person-1"}, []int64{later, p2, plain}},
		{"caregiver with sensitive access", Viewer{Role: RoleProxy, PersonID: "person-1", ProxySensitive: true}, []int64{later, p2, plain}},
		{"caregiver without", Viewer{Role: RoleProxy, PersonID: "person-1"}, []int64{plain}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ts, err := ms.Threads(t.Context(), tt.v)
			if err != nil {
				t.Fatal(err)
			}
			var got []int64
			for _, th := range ts {
				got = append(got, th.ID)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("threads %v, want %v", got, tt.want)
			}
			for _, id := range []int64{p2, later} {
				_, _, err := ms.Thread(t.Context(), tt.v, id)
				if hidden := len(tt.want) == 1; hidden != (err != nil) {
					t.Errorf("thread %d: %v", id, err)
				}
			}
		})
	}
}
