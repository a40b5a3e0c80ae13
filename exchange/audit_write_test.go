package exchange

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/internal/httpx"
	"github.com/concord-hie/concord/records"
)

// newAuditedWriteEnv is newWriteEnv over the real hash-chained audit log (not memAudit),
// with the request-ID middleware, so tests can find each request's events by X-Request-Id.
func newAuditedWriteEnv(t testing.TB) *writeEnv {
	t.Helper()
	return newWriteEnvOver(t, func(pool *pgxpool.Pool) records.AuditLog {
		log, err := audit.New(context.Background(), pool, audit.Config{CheckpointEvery: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { log.Close() })
		return log
	}, httpx.RequestID())
}

// writeEvent is the part of a stored audit event the write tests check.
type writeEvent struct {
	Action, Outcome, Reason, Patient string
	Resources                        []string // sorted
	Actor, Client, Org, Purpose      string
	SourceIP                         string
}

// eventsOf returns the audit events with request ID rid, in chain order.
func eventsOf(t testing.TB, q *pgxpool.Pool, rid string) []writeEvent {
	t.Helper()
	rows, err := q.Query(context.Background(), `SELECT action, outcome, reason, patient, resources, actor, client, org, purpose, source_ip
		FROM audit_events WHERE request_id = $1 ORDER BY seq`, rid)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []writeEvent
	for rows.Next() {
		var e writeEvent
		if err := rows.Scan(&e.Action, &e.Outcome, &e.Reason, &e.Patient, &e.Resources, &e.Actor, &e.Client, &e.Org, &e.Purpose, &e.SourceIP); err != nil {
			t.Fatal(err)
		}
		slices.Sort(e.Resources)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// brief is an event as action, person and resources, for comparisons.
type brief struct {
	Action, Patient string
	Resources       []string
}

func briefs(evs []writeEvent) []brief {
	out := make([]brief, len(evs))
	for i, e := range evs {
		out[i] = brief{e.Action, e.Patient, e.Resources}
	}
	return out
}

func sameBriefs(got, want []brief) bool {
	sortB := func(bs []brief) {
		for i := range bs {
			slices.Sort(bs[i].Resources)
		}
		slices.SortFunc(bs, func(a, b brief) int {
			if c := strings.Compare(a.Action, b.Action); c != 0 {
				return c
			}
			if c := strings.Compare(a.Patient, b.Patient); c != 0 {
				return c
			}
			return strings.Compare(strings.Join(a.Resources, ","), strings.Join(b.Resources, ","))
		})
	}
	sortB(got)
	sortB(want)
	return slices.EqualFunc(got, want, func(a, b brief) bool {
		return a.Action == b.Action && a.Patient == b.Patient && slices.Equal(a.Resources, b.Resources)
	})
}

func (env *writeEnv) scalar(t testing.TB, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := env.pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// personOf is the MPI person of the member Patient id.
func personOf(t testing.TB, q *pgxpool.Pool, patientID string) string {
	t.Helper()
	var p string
	if err := q.QueryRow(context.Background(), `SELECT person_id::text FROM mpi_source_records WHERE patient_id = $1`, patientID).Scan(&p); err != nil {
		t.Fatalf("person of Patient/%s: %v", patientID, err)
	}
	return p
}

// encounterJSON is an Encounter of patient with identifier urn:visit|value (and id, when
// not "").
func encounterJSON(id, patient, value string) []byte {
	idPart := ""
	if id != "" {
		idPart = `"id":"` + id + `",`
	}
	return []byte(`{"resourceType":"Encounter",` + idPart + `"identifier":[{"system":"urn:visit","value":"` + value + `"}],"status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},"subject":{"reference":"Patient/` + patient + `"}}`)
}

// TestWriteAudit: every write through the FHIR REST API (create, update, delete, their
// conditional forms, transaction and batch Bundles) leaves exactly its events in the audit
// log, one per person and action, with the member, client, purpose, request ID, address
// and outcome; a request that writes nothing leaves none.
func TestWriteAudit(t *testing.T) {
	env := newAuditedWriteEnv(t)
	q := env.pool
	ta := env.token(t, env.a.ID, allScopes)
	req := func(method, path, rid string, body []byte, header ...string) (int, []byte) {
		t.Helper()
		st, b, h := do(t, method, env.base+path, ta, body, append([]string{"X-Request-Id", rid}, header...)...)
		if h.Get("X-Request-Id") != rid {
			t.Fatalf("%s %s: X-Request-Id %q echoed as %q", method, path, rid, h.Get("X-Request-Id"))
		}
		return st, b
	}
	expect := func(rid string, want ...brief) {
		t.Helper()
		got := eventsOf(t, q, rid)
		if !sameBriefs(briefs(got), want) {
			t.Errorf("%s: events %+v, want %+v", rid, briefs(got), want)
		}
		for _, e := range got {
			if e.Outcome != string(audit.Permit) || e.Org != env.a.ID || e.Client != "client-"+env.a.ID || e.Purpose != "TREAT" ||
				e.Actor != "" || e.SourceIP != "127.0.0.1" {
				t.Errorf("%s: event %+v: want outcome permit, org %s, client client-%s, purpose TREAT, no actor, source 127.0.0.1", rid, e, env.a.ID, env.a.ID)
			}
		}
	}

	st, body := req("POST", "/Patient", "rq-post-patient", patientJSON("mrn-1"))
	if st != 201 {
		t.Fatalf("POST Patient = %d %s", st, body)
	}
	pid := idOf(t, body)
	person := personOf(t, q, pid)
	expect("rq-post-patient", brief{"create", person, []string{"Patient/" + pid}})

	st, body = req("POST", "/Observation", "rq-post-obs", obsJSON("", pid, "one"))
	if st != 201 {
		t.Fatalf("POST Observation = %d %s", st, body)
	}
	oid := idOf(t, body)
	expect("rq-post-obs", brief{"create", person, []string{"Observation/" + oid}})

	if st, body = req("PUT", "/Observation/"+oid, "rq-put", obsJSON(oid, pid, "two")); st != 200 {
		t.Fatalf("PUT = %d %s", st, body)
	}
	expect("rq-put", brief{"update", person, []string{"Observation/" + oid}})

	// The same MRN again is an update of the member's record (200).
	if st, body = req("POST", "/Patient", "rq-post-patient-again", patientJSON("mrn-1")); st != 200 {
		t.Fatalf("POST Patient again = %d %s", st, body)
	}
	expect("rq-post-patient-again", brief{"update", person, []string{"Patient/" + pid}})

	// Outside any compartment: one event with no patient.
	if st, body = req("POST", "/Organization", "rq-org", []byte(`{"resourceType":"Organization","name":"Lab"}`)); st != 201 {
		t.Fatalf("POST Organization = %d %s", st, body)
	}
	org := idOf(t, body)
	expect("rq-org", brief{"create", "", []string{"Organization/" + org}})

	// Conditional create: a create, then the match it returns (a read of the member's own).
	if st, body = req("POST", "/Encounter", "rq-cc1", encounterJSON("", pid, "c1"), "If-None-Exist", "identifier=urn:visit|c1"); st != 201 {
		t.Fatalf("conditional create = %d %s", st, body)
	}
	cc := idOf(t, body)
	expect("rq-cc1", brief{"create", person, []string{"Encounter/" + cc}})
	if st, body = req("POST", "/Encounter", "rq-cc2", encounterJSON("", pid, "c1"), "If-None-Exist", "identifier=urn:visit|c1"); st != 200 {
		t.Fatalf("conditional create, match = %d %s", st, body)
	}
	expect("rq-cc2", brief{"read", person, []string{"Encounter/" + cc}})
	if evs := eventsOf(t, q, "rq-cc2"); len(evs) == 1 && evs[0].Reason != "own-record" {
		t.Errorf("conditional create's match: reason %q, want own-record", evs[0].Reason)
	}

	// Conditional update: no match creates, one match updates.
	if st, body = req("PUT", "/Encounter?identifier=urn:visit|u1", "rq-cu1", encounterJSON("", pid, "u1")); st != 201 {
		t.Fatalf("conditional update, create = %d %s", st, body)
	}
	cu := idOf(t, body)
	expect("rq-cu1", brief{"create", person, []string{"Encounter/" + cu}})
	if st, body = req("PUT", "/Encounter?identifier=urn:visit|u1", "rq-cu2", encounterJSON("", pid, "u1")); st != 200 {
		t.Fatalf("conditional update, update = %d %s", st, body)
	}
	expect("rq-cu2", brief{"update", person, []string{"Encounter/" + cu}})

	// Conditional delete, delete, and a delete of nothing (no event).
	if st, body = req("DELETE", "/Encounter?identifier=urn:visit|u1", "rq-cd", nil); st != 204 {
		t.Fatalf("conditional delete = %d %s", st, body)
	}
	expect("rq-cd", brief{"delete", person, []string{"Encounter/" + cu}})
	if st, body = req("DELETE", "/Observation/"+oid, "rq-del", nil); st != 204 {
		t.Fatalf("DELETE = %d %s", st, body)
	}
	expect("rq-del", brief{"delete", person, []string{"Observation/" + oid}})
	if st, body = req("DELETE", "/Observation/"+oid, "rq-del-again", nil); st != 204 {
		t.Fatalf("DELETE again = %d %s", st, body)
	}
	expect("rq-del-again")

	// A transaction: a new patient with two Observations, an Organization, an update and a
	// delete of the first patient's: one event per person and action.
	put := encounterJSON(cc, pid, "c1")
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[
		{"fullUrl":"urn:uuid:11111111-1111-4111-8111-111111111111","resource":` + string(patientJSON("mrn-2")) + `,"request":{"method":"POST","url":"Patient"}},
		{"resource":` + string(obsJSON("", "urn:uuid:11111111-1111-4111-8111-111111111111", "a")) + `,"request":{"method":"POST","url":"Observation"}},
		{"resource":` + string(obsJSON("", "urn:uuid:11111111-1111-4111-8111-111111111111", "b")) + `,"request":{"method":"POST","url":"Observation"}},
		{"resource":{"resourceType":"Organization","name":"Clinic"},"request":{"method":"POST","url":"Organization"}},
		{"resource":` + string(put) + `,"request":{"method":"PUT","url":"Encounter/` + cc + `"}},
		{"request":{"method":"DELETE","url":"Organization/` + org + `"}}]}`
	// obsJSON writes "Patient/" before its patient: the new patient's is the bare urn.
	tx = strings.Replace(tx, `"Patient/urn:uuid:`, `"urn:uuid:`, -1)
	st, body = req("POST", "", "rq-tx", []byte(tx))
	if st != 200 {
		t.Fatalf("transaction = %d %s", st, body)
	}
	created := locations(t, body)
	if len(created) != 6 {
		t.Fatalf("transaction response: %v", created)
	}
	pid2 := strings.TrimPrefix(created[0], "Patient/")
	person2 := personOf(t, q, pid2)
	expect("rq-tx",
		brief{"create", person2, []string{created[0], created[1], created[2]}},
		brief{"create", "", []string{created[3]}},
		brief{"update", person, []string{"Encounter/" + cc}},
		brief{"delete", "", []string{"Organization/" + org}})

	// A batch: each entry is its own transaction, with its own event.
	batch := `{"resourceType":"Bundle","type":"batch","entry":[
		{"resource":` + string(obsJSON("", pid, "c")) + `,"request":{"method":"POST","url":"Observation"}},
		{"resource":` + string(obsJSON("", pid2, "d")) + `,"request":{"method":"POST","url":"Observation"}}]}`
	if st, body = req("POST", "", "rq-batch", []byte(batch)); st != 200 {
		t.Fatalf("batch = %d %s", st, body)
	}
	got := locations(t, body)
	expect("rq-batch", brief{"create", person, []string{got[0]}}, brief{"create", person2, []string{got[1]}})

	// Idempotent replay of a create writes nothing and adds no event.
	if st, body = req("POST", "/Observation", "rq-idem1", obsJSON("", pid, "e"), "Idempotency-Key", "k1"); st != 201 {
		t.Fatalf("create with key = %d %s", st, body)
	}
	if st, body = req("POST", "/Observation", "rq-idem2", obsJSON("", pid, "e"), "Idempotency-Key", "k1"); st != 201 {
		t.Fatalf("replayed create = %d %s", st, body)
	}
	expect("rq-idem1", brief{"create", person, []string{"Observation/" + idOf(t, body)}})
	expect("rq-idem2")

	// A roster Group: its create and its update, events that name no patient.
	group := `{"resourceType":"Group","type":"person","actual":true,"member":[{"entity":{"reference":"Patient/` + pid + `"}}]}`
	if st, body = req("POST", "/Group", "rq-group", []byte(group)); st != 201 {
		t.Fatalf("POST Group = %d %s", st, body)
	}
	gid := idOf(t, body)
	expect("rq-group", brief{"create", "", []string{"Group/" + gid}})
	group = strings.Replace(group, `{"resourceType":"Group",`, `{"resourceType":"Group","id":"`+gid+`",`, 1)
	if st, body = req("PUT", "/Group/"+gid, "rq-group-put", []byte(group)); st != 200 {
		t.Fatalf("PUT Group = %d %s", st, body)
	}
	expect("rq-group-put", brief{"update", "", []string{"Group/" + gid}})

	// The events are part of the one chain.
	if n := env.scalar(t, `SELECT count(*) FROM audit_events WHERE request_id LIKE 'rq-%'`); n != 20 {
		t.Errorf("%d write events, want 20", n)
	}
}

// locations returns the "Type/id" of each entry of a transaction- or batch-response.
func locations(t testing.TB, body []byte) []string {
	t.Helper()
	var b struct {
		Entry []struct {
			Response struct {
				Status   string `json:"status"`
				Location string `json:"location"`
			} `json:"response"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(b.Entry))
	for i, e := range b.Entry {
		typ, rest, _ := strings.Cut(e.Response.Location, "/")
		id, _, _ := strings.Cut(rest, "/")
		if typ != "" {
			out[i] = typ + "/" + id
		}
	}
	return out
}

// failAudit makes every insert into audit_events fail until the returned func is called.
func failAudit(t testing.TB, q *pgxpool.Pool) func() {
	t.Helper()
	ctx := context.Background()
	if _, err := q.Exec(ctx, `CREATE FUNCTION fail_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit down'; END $$;
		CREATE TRIGGER fail_audit BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION fail_audit()`); err != nil {
		t.Fatal(err)
	}
	return func() {
		if _, err := q.Exec(ctx, `DROP TRIGGER fail_audit ON audit_events; DROP FUNCTION fail_audit()`); err != nil {
			t.Fatal(err)
		}
	}
}

// TestWriteAuditFailureRollsBack: when the audit event cannot be written, the write is
// rolled back and the member gets 503 with an OperationOutcome: 0 rows changed.
func TestWriteAuditFailureRollsBack(t *testing.T) {
	env := newAuditedWriteEnv(t)
	ta := env.token(t, env.a.ID, allScopes)
	pid := env.create(t, ta, "/Patient", patientJSON("mrn-1"))
	oid := env.create(t, ta, "/Observation", obsJSON("", pid, "one"))
	rows := func() int {
		return env.scalar(t, `SELECT (SELECT count(*) FROM fhir_history) + (SELECT count(*) FROM mpi_source_records) + (SELECT count(*) FROM exchange_idempotency_requests)`)
	}
	before, events := rows(), env.scalar(t, `SELECT count(*) FROM audit_events`)

	restore := failAudit(t, env.pool)
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[
		{"fullUrl":"urn:uuid:11111111-1111-4111-8111-111111111111","resource":` + string(patientJSON("mrn-2")) + `,"request":{"method":"POST","url":"Patient"}},
		{"resource":` + strings.Replace(string(obsJSON("", "X", "a")), "Patient/X", "urn:uuid:11111111-1111-4111-8111-111111111111", 1) + `,"request":{"method":"POST","url":"Observation"}}]}`
	batch := `{"resourceType":"Bundle","type":"batch","entry":[{"resource":` + string(obsJSON("", pid, "b")) + `,"request":{"method":"POST","url":"Observation"}}]}`
	tests := []struct {
		name, method, path string
		body               []byte
		header             []string
	}{
		{"create Patient", "POST", "/Patient", patientJSON("mrn-3"), nil},
		{"create Observation", "POST", "/Observation", obsJSON("", pid, "two"), []string{"Idempotency-Key", "k-fail"}},
		{"update", "PUT", "/Observation/" + oid, obsJSON(oid, pid, "three"), nil},
		{"delete", "DELETE", "/Observation/" + oid, nil, nil},
		{"conditional create", "POST", "/Encounter", encounterJSON("", pid, "c"), []string{"If-None-Exist", "identifier=urn:visit|c"}},
		{"conditional update", "PUT", "/Encounter?identifier=urn:visit|u", encounterJSON("", pid, "u"), nil},
		{"transaction", "POST", "", []byte(tx), nil},
		{"batch", "POST", "", []byte(batch), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, body, h := do(t, tt.method, env.base+tt.path, ta, tt.body, tt.header...)
			if st != 503 || !strings.Contains(string(body), `"OperationOutcome"`) || h.Get("Retry-After") == "" {
				t.Errorf("%s with the audit log failing = %d %s; want 503 OperationOutcome with Retry-After", tt.name, st, body)
			}
			if n := rows(); n != before {
				t.Errorf("%s changed %d rows with the audit log failing", tt.name, n-before)
			}
		})
	}
	restore()
	if n := env.scalar(t, `SELECT count(*) FROM audit_events`); n != events {
		t.Errorf("%d audit events appended while failing", n-events)
	}
	// Recovered: the same write goes through, with its event.
	if st, body, _ := do(t, "DELETE", env.base+"/Observation/"+oid, ta, nil); st != 204 {
		t.Fatalf("DELETE after recovery = %d %s", st, body)
	}
	if n := env.scalar(t, `SELECT count(*) FROM audit_events WHERE action = 'delete'`); n != 1 {
		t.Errorf("%d delete events after recovery, want 1", n)
	}
}

// TestHL7IntakeAudit: each HL7 v2 message leaves one event per person and action, as the
// member's system (actor hl7v2|member, client hl7v2) with MSH-10 as the request ID; a
// resend leaves none; a failing audit insert is AR, rolls the message back and is not
// remembered, so the resend is processed.
func TestHL7IntakeAudit(t *testing.T) {
	e := newHL7Env(t)
	c := mllpClient(t, e.addr)
	ids := func(typ string) []string {
		t.Helper()
		rows, err := e.pool.Query(context.Background(), `SELECT type || '/' || id FROM fhir_resources WHERE type = $1 ORDER BY id`, typ)
		if err != nil {
			t.Fatal(err)
		}
		out, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	expect := func(rid string, want ...brief) {
		t.Helper()
		got := eventsOf(t, e.pool, rid)
		if !sameBriefs(briefs(got), want) {
			t.Errorf("%s: events %+v, want %+v", rid, briefs(got), want)
		}
		for _, ev := range got {
			if ev.Outcome != "permit" || ev.Org != e.member.ID || ev.Actor != "hl7v2|"+e.member.ID || ev.Client != "hl7v2" || ev.SourceIP != "127.0.0.1" {
				t.Errorf("%s: event %+v: want outcome permit, org/actor of %s, client hl7v2, source 127.0.0.1", rid, ev, e.member.ID)
			}
		}
	}

	if code, _ := send(t, c, adtA01("C1", pidA)); code != "AA" {
		t.Fatalf("A01: %s", code)
	}
	patient := ids("Patient")
	person := personOf(t, e.pool, strings.TrimPrefix(patient[0], "Patient/"))
	expect("C1", brief{"create", person, append(slices.Clone(patient), ids("Encounter")...)})

	if code, _ := send(t, c, oruR01("C2", pidA)); code != "AA" {
		t.Fatalf("ORU: %s", code)
	}
	// The unchanged Patient is not written again: the event names what the ORU created.
	expect("C2", brief{"create", person, append(ids("DiagnosticReport"), ids("Observation")...)})

	a03 := strings.NewReplacer("ADT^A01^ADT_A01", "ADT^A03^ADT_A03", "EVN|A01", "EVN|A03", "VC3^", "VC1^").Replace(adtA01("C3", pidA))
	if code, _ := send(t, c, a03); code != "AA" {
		t.Fatalf("A03: %s", code)
	}
	expect("C3", brief{"update", person, ids("Encounter")})

	// A resend is answered from the dedupe row: nothing written, no event.
	events := e.scalar(t, `SELECT count(*) FROM audit_events`)
	if code, _ := send(t, c, oruR01("C2", pidA)); code != "AA" {
		t.Fatalf("resent ORU: %s", code)
	}
	if n := e.scalar(t, `SELECT count(*) FROM audit_events`); n != events {
		t.Errorf("a resend added %d events", n-events)
	}

	// The audit insert fails: AR (resend later), nothing stored, the MSH-10 not remembered.
	versions := e.scalar(t, `SELECT count(*) FROM fhir_history`)
	restore := failAudit(t, e.pool)
	if ack, code := send(t, c, oruR01("C4", pidB)); ack != "AR" || code != "207" {
		t.Errorf("audit failing: ACK %s %s, want AR 207", ack, code)
	}
	if n := e.scalar(t, `SELECT count(*) FROM fhir_history`); n != versions {
		t.Errorf("%d versions written with the audit log failing", n-versions)
	}
	if n := e.scalar(t, `SELECT count(*) FROM exchange_hl7_messages WHERE msh10 = 'C4'`) + e.scalar(t, `SELECT count(*) FROM mpi_source_records`); n != 1 {
		t.Errorf("the failed message left %d dedupe rows or MPI records", n-1)
	}
	restore()
	if code, _ := send(t, c, oruR01("C4", pidB)); code != "AA" {
		t.Fatalf("resend after recovery: %s", code)
	}
	var pidBID string
	if err := e.pool.QueryRow(context.Background(), `SELECT patient_id FROM mpi_source_records WHERE value = 'MRN-B'`).Scan(&pidBID); err != nil {
		t.Fatal(err)
	}
	got := eventsOf(t, e.pool, "C4")
	if len(got) != 1 || got[0].Action != "create" || got[0].Patient != personOf(t, e.pool, pidBID) || len(got[0].Resources) != 5 ||
		!slices.Contains(got[0].Resources, "Patient/"+pidBID) {
		t.Errorf("C4 after recovery: events %+v; want one create for MRN-B's person naming its Patient, report and 3 Observations", briefs(got))
	}
}
