package exchange

import (
	"bytes"
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/directory"
	"github.com/concord-hie/concord/exchange/hl7v2"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/testkit"
	mpistore "github.com/concord-hie/concord/mpi/store"
	"github.com/concord-hie/concord/records"
)

// hl7Env is a migrated database with one member registered as an HL7 v2 sender, and an
// MLLP listener on loopback whose handler is the intake.
type hl7Env struct {
	pool   *pgxpool.Pool
	dir    *directory.Store
	member directory.Member
	srv    *Server
	intake *HL7Intake
	addr   string
}

const hl7TestOID = "2.16.840.1.113883.3.9999" // the authority hl7v2.Generate and the samples use

func newHL7Env(t testing.TB) *hl7Env { return newHL7EnvDeps(t, nil) }

// newHL7EnvDeps is newHL7Env with more, when not nil, adding to the exchange's Deps
// before the server is built (the document service, a token issuer).
func newHL7EnvDeps(t testing.TB, more func(*pgxpool.Pool, *Deps)) *hl7Env {
	t.Helper()
	pool := testkit.DB(t)
	ctx := context.Background()
	dir := directory.NewStore(pool)
	m, err := dir.AddMember(ctx, "General Hospital", hl7TestOID)
	if err != nil {
		t.Fatal(err)
	}
	registerTestClients(t, pool)
	if err := dir.AddHL7Sender(ctx, m.ID, "", "GENFAC"); err != nil {
		t.Fatal(err)
	}
	if err := dir.AddHL7Address(ctx, m.ID, "127.0.0.0/8"); err != nil {
		t.Fatal(err)
	}
	mpi, matcher := newMatcher(t, pool)
	log, err := audit.New(ctx, pool, audit.Config{CheckpointEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	fs := store.New(pool)
	deps := Deps{Pool: pool, Directory: dir, FHIR: fs, MPI: mpi, Matcher: matcher,
		Records: records.New(fs, mpi, defaultDirectives{}, log, nil), // audits every message's writes
		Log:     slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if more != nil {
		more(pool, &deps)
	}
	srv := New(Config{BaseURL: "http://concord.test"}, deps)
	in := NewHL7Intake(srv, HL7Options{Timeout: 20 * time.Second, Audit: log})
	e := &hl7Env{pool: pool, dir: dir, member: m, srv: srv, intake: in}
	e.addr = startMLLP(t, &hl7v2.Server{Handler: in, Authenticate: in.Authenticate})
	return e
}

func startMLLP(t testing.TB, s *hl7v2.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skipf("no loopback listener: %v", err)
	}
	go s.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return ln.Addr().String()
}

func mllpClient(t testing.TB, addr string) *hl7v2.Client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return hl7v2.NewClient(c)
}

// sendAA sends msg and fails the test unless the answer is AA; what names the step.
func sendAA(t testing.TB, c *hl7v2.Client, what, msg string) {
	t.Helper()
	if code, err := send(t, c, msg); code != "AA" {
		t.Fatalf("%s: %s %s", what, code, err)
	}
}

// send sends msg and returns MSA-1 and the table 0357 code of the ACK ("" for none).
func send(t testing.TB, c *hl7v2.Client, msg string) (string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ack, err := c.Send(ctx, []byte(msg))
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	code := ack.Get("ERR-3.1")
	if code == "" {
		code = ack.Get("ERR-1.4.1")
	}
	return ack.Get("MSA-1"), code
}

// count returns the number of current resources of typ stored for member.
func (e *hl7Env) count(t testing.TB, typ string) int {
	t.Helper()
	var n int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM fhir_resources WHERE member_id = $1 AND type = $2 AND NOT deleted`, e.member.ID, typ).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func (e *hl7Env) scalar(t testing.TB, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := e.pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

const (
	mshGen = "MSH|^~\\&|GENEHR|GENFAC^2.16.840.1.113883.3.9999^ISO|CONCORD|HIE|20250301080000||"
	pidA   = "PID|1||MRN-A^^^GENFAC&2.16.840.1.113883.3.9999&ISO^MR||Testperson^Alex^^^^^L||19800101|F\r"
	pidB   = "PID|1||MRN-B^^^GENFAC&2.16.840.1.113883.3.9999&ISO^MR||Testperson^Alex^^^^^L||19800101|F\r"
)

func adtA01(ctl, pid string) string {
	return mshGen + "ADT^A01^ADT_A01|" + ctl + "|P|2.5.1\rEVN|A01|20250301080000\r" + pid +
		"PV1|1|I|WARD1^101^1^GENFAC||||||||||||||||V" + ctl + "^^^GENFAC&2.16.840.1.113883.3.9999&ISO^VN|||||||||||||||||||||||||20250301080000\r"
}

func oruR01(ctl, pid string) string {
	return mshGen + "ORU^R01^ORU_R01|" + ctl + "|P|2.5.1\r" + pid +
		"OBR|1|P" + ctl + "^GENEHR|F" + ctl + "^GENLAB^2.16.840.1.113883.3.9998^ISO|24323-8^Comprehensive metabolic panel^LN|||20250301090000|||||||||||||||20250301100000|||F\r" +
		"OBX|1|NM|2823-3^Potassium^LN||4.1|mmol/L^mmol/L^UCUM|3.5-5.1|N|||F|||20250301090000\r" +
		"OBX|2|NM|2951-2^Sodium^LN||150|mmol/L^mmol/L^UCUM|136-145|H|||F|||20250301090000\r" +
		"OBX|3|SN|33914-3^eGFR^LN||>^60|mL/min/{1.73_m2}^mL/min/1.73m2^UCUM|>60||||F|||20250301090000\r"
}

func TestHL7IntakeADTThenORU(t *testing.T) {
	e := newHL7Env(t)
	c := mllpClient(t, e.addr)
	if code, _ := send(t, c, adtA01("C1", pidA)); code != "AA" {
		t.Fatalf("A01: %s", code)
	}
	if code, _ := send(t, c, oruR01("C2", pidA)); code != "AA" {
		t.Fatalf("ORU: %s", code)
	}
	want := map[string]int{"Patient": 1, "Encounter": 1, "DiagnosticReport": 1, "Observation": 3}
	check := func(when string) {
		t.Helper()
		for typ, n := range want {
			if got := e.count(t, typ); got != n {
				t.Errorf("%s: %d %s, want %d", when, got, typ, n)
			}
		}
		if n := e.scalar(t, `SELECT count(*) FROM mpi_source_records WHERE member_id = $1`, e.member.ID); n != 1 {
			t.Errorf("%s: %d MPI source records, want 1", when, n)
		}
		if n := e.scalar(t, `SELECT count(*) FROM exchange_hl7_messages`); n != 2 {
			t.Errorf("%s: %d dedupe rows, want 2", when, n)
		}
	}
	check("first send")
	// The ORU's PID maps to the Patient the A01 wrote: no new version, no re-match.
	if v := e.scalar(t, `SELECT version FROM fhir_resources WHERE type = 'Patient'`); v != 1 {
		t.Errorf("Patient at version %d after an unchanged PID, want 1", v)
	}

	// Every clinical resource is in the compartment of the member's one Patient, and the
	// report's results point at the stored Observations.
	var patientID string
	if err := e.pool.QueryRow(context.Background(), `SELECT id FROM fhir_resources WHERE type = 'Patient'`).Scan(&patientID); err != nil {
		t.Fatal(err)
	}
	if n := e.scalar(t, `SELECT count(*) FROM fhir_resources WHERE type <> 'Patient' AND patient_id IS DISTINCT FROM $1`, patientID); n != 0 {
		t.Errorf("%d resources outside the patient's compartment", n)
	}
	var body []byte
	if err := e.pool.QueryRow(context.Background(), `SELECT body FROM fhir_resources WHERE type = 'DiagnosticReport'`).Scan(&body); err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Subject struct{ Reference string }
		Result  []struct{ Reference string }
	}
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Subject.Reference != "Patient/"+patientID || len(rep.Result) != 3 {
		t.Fatalf("report subject %q, %d results", rep.Subject.Reference, len(rep.Result))
	}
	for _, r := range rep.Result {
		id, ok := strings.CutPrefix(r.Reference, "Observation/")
		if !ok || e.scalar(t, `SELECT count(*) FROM fhir_resources WHERE type = 'Observation' AND id = $1`, id) != 1 {
			t.Errorf("result %q does not name a stored Observation", r.Reference)
		}
	}

	// A resend (sender timed out before our ACK) gets the same answer and creates nothing,
	// on the same connection and on a new one.
	versions := e.scalar(t, `SELECT count(*) FROM fhir_history`)
	if code, _ := send(t, c, oruR01("C2", pidA)); code != "AA" {
		t.Fatalf("resent ORU: %s", code)
	}
	if code, _ := send(t, mllpClient(t, e.addr), adtA01("C1", pidA)); code != "AA" {
		t.Fatalf("resent A01: %s", code)
	}
	check("resend")
	if n := e.scalar(t, `SELECT count(*) FROM fhir_history`); n != versions {
		t.Errorf("resend wrote %d versions", n-versions)
	}

	// The discharge (A03) of the same visit (PV1-19) updates its Encounter.
	a03 := strings.NewReplacer("ADT^A01^ADT_A01", "ADT^A03^ADT_A03", "EVN|A01", "EVN|A03", "VC3^", "VC1^").Replace(adtA01("C3", pidA))
	if code, _ := send(t, c, a03); code != "AA" {
		t.Fatalf("A03: %s", code)
	}
	if n := e.count(t, "Encounter"); n != 1 {
		t.Errorf("%d Encounters after the discharge of the same visit, want 1", n)
	}
	// A changed PID is a new version of the same Patient.
	if code, _ := send(t, c, oruR01("C4", strings.Replace(pidA, "Testperson^Alex", "Testperson^Alexandra", 1))); code != "AA" {
		t.Fatalf("ORU with a changed name: %s", code)
	}
	if v := e.scalar(t, `SELECT max(version) FROM fhir_resources WHERE type = 'Patient'`); v != 2 || e.count(t, "Patient") != 1 {
		t.Errorf("Patient at version %d (%d Patients) after a changed PID, want 2 (1)", v, e.count(t, "Patient"))
	}
	if n := e.scalar(t, `SELECT count(*) FROM fhir_resources WHERE type = 'Encounter' AND version = 2 AND position('"finished"'::bytea in body) > 0`); n != 1 {
		t.Errorf("the visit's Encounter is not at version 2 with status finished")
	}
}

// addOther registers a second member, Other Clinic, with no HL7 registrations yet.
func (e *hl7Env) addOther(t *testing.T) directory.Member {
	t.Helper()
	other, err := e.dir.AddMember(context.Background(), "Other Clinic", "2.16.840.1.113883.3.7777")
	if err != nil {
		t.Fatal(err)
	}
	return other
}

func TestHL7IntakeRejections(t *testing.T) {
	e := newHL7Env(t)
	ctx := context.Background()
	other := e.addOther(t)
	if err := e.dir.AddHL7Sender(ctx, other.ID, "", "OTHERFAC"); err != nil {
		t.Fatal(err)
	}
	c := mllpClient(t, e.addr)
	tests := []struct {
		name, msg        string
		wantAck, wantErr string
	}{
		{"unregistered OID authority", oruR01("R1", strings.Replace(pidA, "GENFAC&2.16.840.1.113883.3.9999", "X&1.2.3.4", 1)), "AE", "204"},
		{"another member's authority", oruR01("R2", strings.Replace(pidA, "GENFAC&2.16.840.1.113883.3.9999", "OTHERFAC&2.16.840.1.113883.3.7777", 1)), "AE", "204"},
		{"another member's authority beside ours", oruR01("R3", strings.Replace(pidA, "^MR|", "^MR~X9^^^OTHERFAC&2.16.840.1.113883.3.7777&ISO^MR|", 1)), "AE", "204"},
		{"another member's facility", strings.Replace(oruR01("R4", pidA), "GENFAC^2.16.840.1.113883.3.9999^ISO", "OTHERFAC", 1), "AE", "204"},
		{"unregistered facility", strings.Replace(oruR01("R5", pidA), "GENFAC^2.16.840.1.113883.3.9999^ISO", "NOBODY", 1), "AE", "204"},
		{"unsupported message type", strings.Replace(oruR01("R6", pidA), "ORU^R01^ORU_R01", "ORM^O01^ORM_O01", 1), "AR", "200"},
		{"unsupported event", strings.Replace(adtA01("R7", pidA), "ADT^A01^ADT_A01", "ADT^A17^ADT_A17", 1), "AR", "201"},
		{"bad birth date", oruR01("R8", strings.Replace(pidA, "19800101", "19801301", 1)), "AE", "102"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, try := range []string{"first", "resend"} {
				ack, code := send(t, c, tt.msg)
				if ack != tt.wantAck || code != tt.wantErr {
					t.Errorf("%s: ACK %s %s, want %s %s", try, ack, code, tt.wantAck, tt.wantErr)
				}
			}
		})
	}
	for _, typ := range []string{"Patient", "Observation", "DiagnosticReport"} {
		if n := e.scalar(t, `SELECT count(*) FROM fhir_resources WHERE type = $1`, typ); n != 0 {
			t.Errorf("%d %s stored by rejected messages", n, typ)
		}
	}
	// Content errors are remembered (AE), unsupported ones are not (AR: resend later).
	if n := e.scalar(t, `SELECT count(*) FROM exchange_hl7_messages WHERE ack_code = 'AE' AND err_code = 204`); n != 3 {
		t.Errorf("%d stored AE 204 answers, want 3 (facility mismatches are not stored)", n)
	}
	if n := e.scalar(t, `SELECT count(*) FROM exchange_hl7_messages WHERE ack_code <> 'AE'`); n != 0 {
		t.Errorf("%d other answers stored", n)
	}
}

func TestHL7IntakeDatabaseUnavailable(t *testing.T) {
	e := newHL7Env(t)
	ctx := context.Background()

	// A cancelled context (the listener shutting down, or the per-message timeout).
	msg, err := hl7v2.Parse([]byte(oruR01("D1", pidA)))
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	conn := hl7v2.ConnInfo{ID: 1, RemoteAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, Member: e.member.ID}
	if a := e.intake.HandleHL7(cctx, conn, msg); a.Code != hl7v2.AR || a.Err != hl7v2.ApplicationInternal {
		t.Errorf("cancelled context: %+v, want AR 207", a)
	}

	// A pool that is closed: the database is gone.
	closed, err := db.Open(ctx, e.pool.Config().ConnString(), db.Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	srv := New(Config{BaseURL: "http://concord.test"}, Deps{Pool: closed, Directory: directory.NewStore(closed), FHIR: store.New(closed),
		MPI: mpistore.New(closed), Matcher: e.intake.srv.Matcher})
	down := NewHL7Intake(srv, HL7Options{Timeout: 2 * time.Second})
	addr := startMLLP(t, &hl7v2.Server{Handler: down})
	if ack, code := send(t, mllpClient(t, addr), oruR01("D2", pidA)); ack != "AR" || code != "207" {
		t.Errorf("database down: ACK %s %s, want AR 207", ack, code)
	}
	if n := e.scalar(t, `SELECT count(*) FROM fhir_resources`); n != 0 {
		t.Errorf("%d resources stored while the database was unavailable", n)
	}
	if n := e.scalar(t, `SELECT count(*) FROM exchange_hl7_messages`); n != 0 {
		t.Errorf("%d dedupe rows stored while the database was unavailable", n)
	}
	// Once it is back, the resend is stored.
	if ack, _ := send(t, mllpClient(t, e.addr), oruR01("D2", pidA)); ack != "AA" {
		t.Errorf("resend after recovery: %s", ack)
	}
}

func TestHL7IntakeMerge(t *testing.T) {
	e := newHL7Env(t)
	c := mllpClient(t, e.addr)
	for _, m := range []string{adtA01("M1", pidA), oruR01("M2", pidA), adtA01("M3", pidB)} {
		if ack, code := send(t, c, m); ack != "AA" {
			t.Fatalf("setup: %s %s", ack, code)
		}
	}
	id := func(mrn string) string {
		var pid string
		if err := e.pool.QueryRow(context.Background(), `SELECT patient_id FROM mpi_source_records WHERE value = $1`, mrn).Scan(&pid); err != nil {
			t.Fatal(err)
		}
		return pid
	}
	a, b := id("MRN-A"), id("MRN-B")
	a40 := mshGen + "ADT^A40^ADT_A39|M4|P|2.5.1\rEVN|A40|20250302080000\r" + pidB + "MRG|MRN-A^^^GENFAC&2.16.840.1.113883.3.9999&ISO^MR\r"
	if ack, code := send(t, c, a40); ack != "AA" {
		t.Fatalf("A40: %s %s", ack, code)
	}
	if n := e.scalar(t, `SELECT count(*) FROM fhir_resources WHERE patient_id = $1`, a); n != 0 {
		t.Errorf("%d resources left in the retired compartment", n)
	}
	if n := e.scalar(t, `SELECT count(*) FROM fhir_resources WHERE patient_id = $1`, b); n != 6 { // 2 Encounters, 1 report, 3 Observations
		t.Errorf("survivor compartment holds %d resources, want 6", n)
	}
	if n := e.scalar(t, `SELECT count(*) FROM fhir_resources WHERE patient_id = $1 AND type = 'Observation' AND position($2::bytea in body) > 0`, b, []byte(`"Patient/`+b+`"`)); n != 3 {
		t.Errorf("%d re-pointed Observations reference the survivor, want 3", n)
	}
	var body []byte
	if err := e.pool.QueryRow(context.Background(), `SELECT body FROM fhir_resources WHERE type = 'Patient' AND id = $1`, a).Scan(&body); err != nil {
		t.Fatal(err)
	}
	var p struct {
		Active *bool
		Link   []struct {
			Other struct{ Reference string }
			Type  string
		}
	}
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	if p.Active == nil || *p.Active || len(p.Link) != 1 || p.Link[0].Type != "replaced-by" || p.Link[0].Other.Reference != "Patient/"+b {
		t.Errorf("retired Patient: active %v, links %+v", p.Active, p.Link)
	}
	if n := e.scalar(t, `SELECT count(*) FROM exchange_hl7_merges WHERE survivor_patient = $1 AND retired_patient = $2 AND repointed = 5`, b, a); n != 1 {
		t.Errorf("merge not recorded with 5 re-pointed resources (1 Encounter, 1 report, 3 Observations)")
	}
}

// simhospitalMessages reads the Simulated Hospital corpus, one message per blank-line
// separated block.
func simhospitalMessages(t testing.TB) [][]byte {
	t.Helper()
	p := filepath.Join(testkit.RepoRoot(t), "..", "shared", "data", "hl7v2", "simhospital", "messages.hl7")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Skipf("Simulated Hospital corpus missing (%v)", err)
	}
	var out [][]byte
	for _, m := range bytes.Split(b, []byte("\n\n")) {
		if len(bytes.TrimSpace(m)) > 0 {
			out = append(out, m)
		}
	}
	return out
}

func TestHL7IntakeSimHospitalCorpus(t *testing.T) {
	msgs := simhospitalMessages(t)
	if len(msgs) != 1013 {
		t.Fatalf("%d messages, want 1013", len(msgs))
	}
	e := newMDMEnv(t) // the corpus has two MDM^T02: documents need the document service
	ctx := context.Background()
	if err := e.dir.AddHL7Sender(ctx, e.member.ID, "SIMHOSP", "SFAC"); err != nil {
		t.Fatal(err)
	}
	// The corpus names its MRN authority by a bare namespace ID.
	if err := e.dir.AddHL7Namespace(ctx, e.member.ID, "SIMULATOR MRN", ""); err != nil {
		t.Fatal(err)
	}
	// What the mapping says should be stored, from the messages themselves.
	want := map[string]int{}
	mrns := map[string]bool{}
	for _, b := range msgs {
		m, err := hl7v2.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		mp, err := hl7v2.Map(m, hl7v2.MapOptions{})
		if err != nil {
			continue
		}
		for _, r := range mp.Resources {
			if r.Kind != hl7v2.KindPatient {
				want[r.Kind]++
			}
		}
		for _, s := range mp.Subjects {
			mrns[s.IDs[0].Value] = true
		}
	}
	want["Patient"] = len(mrns)

	// Four connections, each patient's messages on one of them in corpus order (the
	// sender's ordering unit); one ACK per message, checked against its message.
	const lanes = 4
	lane := make([][]int, lanes)
	for i, b := range msgs {
		m, _ := hl7v2.Parse(b)
		mrn := m.Get("PID-3.1")
		h := 0
		for j := 0; j < len(mrn); j++ {
			h = (h*31 + int(mrn[j])) % 1_000_003
		}
		lane[h%lanes] = append(lane[h%lanes], i)
	}
	acks := make([][2]string, len(msgs))
	start := time.Now()
	var wg sync.WaitGroup
	for l := range lanes {
		c := mllpClient(t, e.addr)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, i := range lane[l] {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				ack, err := c.Send(ctx, msgs[i])
				cancel()
				if err != nil {
					acks[i][0] = err.Error()
					continue
				}
				acks[i] = [2]string{ack.Get("MSA-1"), ack.Get("ERR-1.4.1")}
				if ack.Get("MSA-2") != string(bytes.Split(msgs[i], []byte("|"))[9]) {
					acks[i][0] = "MSA-2 mismatch"
				}
			}
		}()
	}
	wg.Wait()
	counts := map[string]int{}
	for i, b := range msgs {
		hd, _ := hl7v2.ReadHeader(b)
		ack, code := acks[i][0], acks[i][1]
		counts[hd.Type+" "+ack]++
		if (ack == "AA") != (strings.HasPrefix(hd.Type, "ADT^") || strings.HasPrefix(hd.Type, "ORU^") || hd.Type == "MDM^T02") {
			t.Errorf("message %d (%s): ACK %s %s", i, hd.Type, ack, code)
		}
	}
	el := time.Since(start)
	if counts["ADT^A01 AA"] != 400 || counts["ORU^R01 AA"] != 610 || counts["ADT^A34 AA"] != 1 || counts["MDM^T02 AA"] != 2 || len(counts) != 4 {
		t.Errorf("ACKs %v", counts)
	}
	for typ, n := range want {
		if got := e.count(t, typ); got != n {
			t.Errorf("%d %s stored, want %d", got, typ, n)
		}
	}
	if n := e.scalar(t, `SELECT count(*) FROM exchange_hl7_messages WHERE ack_code = 'AA'`); n != 1013 {
		t.Errorf("%d messages remembered, want 1013", n)
	}
	if want["DocumentReference"] != 2 {
		t.Errorf("the corpus maps to %d DocumentReferences, want 2 (its MDM^T02)", want["DocumentReference"])
	}
	if n := e.scalar(t, `SELECT count(*) FROM exchange_hl7_merges`); n != 1 {
		t.Errorf("%d merges recorded, want 1", n)
	}
	t.Logf("simhospital: %d messages in %v (%.0f msgs/s), ACKs %v, stored %v", len(msgs), el.Round(time.Millisecond),
		float64(len(msgs))/el.Seconds(), counts, fmt.Sprint(want))
}

// BenchmarkMLLPIngest is scenario S6 (benchmarks.md): hl7v2.Generate's ADT^A01 and
// ORU^R01 feed replayed over 8 persistent MLLP connections to a real listener, each
// message acknowledged only after its transaction commits. Messages are spread over the
// connections by patient, as a sender keeps one patient's messages in order. It reports
// msgs/s, resources/s (versions written, from the dedupe rows) and the ACK p99.
//
//	go test ./exchange/ -run '^$' -bench MLLPIngest -benchtime 2000x
func BenchmarkMLLPIngest(b *testing.B) {
	const conns = 8
	e := newHL7Env(b)
	msgs := hl7v2.Generate(time.Now().UnixNano()%1_000_000, b.N)
	lanes := make([][][]byte, conns)
	for _, m := range msgs {
		pm, err := hl7v2.Parse(m)
		if err != nil {
			b.Fatal(err)
		}
		mrn := pm.Get("PID-3.1")
		h := 0
		for i := 0; i < len(mrn); i++ {
			h = h*31 + int(mrn[i])
		}
		lanes[(h%conns+conns)%conns] = append(lanes[(h%conns+conns)%conns], m)
	}
	clients := make([]*hl7v2.Client, conns)
	for i := range clients {
		clients[i] = mllpClient(b, e.addr)
	}
	var mu sync.Mutex
	var lat []time.Duration
	bad := 0
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			var mine []time.Duration
			nbad := 0
			for _, m := range lanes[i] {
				t0 := time.Now()
				ack, err := clients[i].Send(ctx, m)
				mine = append(mine, time.Since(t0))
				if err != nil || ack.Get("MSA-1") != "AA" {
					nbad++
				}
			}
			mu.Lock()
			lat, bad = append(lat, mine...), bad+nbad
			mu.Unlock()
		}()
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	if bad > 0 {
		b.Fatalf("%d of %d messages not accepted", bad, b.N)
	}
	written := e.scalar(b, `SELECT coalesce(sum(resources), 0) FROM exchange_hl7_messages`)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
	b.ReportMetric(float64(written)/el.Seconds(), "resources/s")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "ack-p99-ms")
}

func TestHL7IntakeAuthenticate(t *testing.T) {
	e := newHL7Env(t)
	ctx := context.Background()
	other := e.addOther(t)
	for _, err := range []error{
		e.dir.AddHL7Address(ctx, other.ID, "10.9.0.0/16"),
		e.dir.AddHL7Address(ctx, other.ID, "127.0.0.0/8"),
		e.dir.AddHL7CertName(ctx, other.ID, "lis.other.example"),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	tcp := func(ip string) net.Addr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: 4000} }
	tests := []struct {
		name string
		conn hl7v2.ConnInfo
		want string
		ok   bool
	}{
		{"allowlisted address", hl7v2.ConnInfo{RemoteAddr: tcp("10.9.1.1")}, other.ID, true},
		{"shared address: attributed per message", hl7v2.ConnInfo{RemoteAddr: tcp("127.0.0.1")}, "", true},
		{"unknown address", hl7v2.ConnInfo{RemoteAddr: tcp("192.0.2.1")}, "", false},
		{"registered certificate", hl7v2.ConnInfo{RemoteAddr: tcp("192.0.2.1"), TLS: true,
			PeerCert: &x509.Certificate{Subject: pkix.Name{CommonName: "Other LIS"}, DNSNames: []string{"lis.other.example"}}}, other.ID, true},
		{"unknown certificate, even from an allowlisted address", hl7v2.ConnInfo{RemoteAddr: tcp("10.9.1.1"), TLS: true,
			PeerCert: &x509.Certificate{Subject: pkix.Name{CommonName: "lis.evil.example"}}}, "", false},
	}
	for _, tt := range tests {
		got, err := e.intake.Authenticate(ctx, tt.conn)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("%s: %q, %v; want %q, ok %v", tt.name, got, err, tt.want, tt.ok)
		}
	}

	// On the shared loopback each message is attributed by MSH-4 to one of the members
	// sharing it; a member that is not among them is refused.
	c := mllpClient(t, e.addr)
	if ack, _ := send(t, c, oruR01("S1", pidA)); ack != "AA" {
		t.Errorf("shared address, registered facility: %s", ack)
	}
	third, err := e.dir.AddMember(ctx, "Third Lab", "2.16.840.1.113883.3.6666")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.dir.AddHL7Sender(ctx, third.ID, "", "THIRD"); err != nil {
		t.Fatal(err)
	}
	msg := strings.Replace(oruR01("S2", strings.Replace(pidA, "GENFAC&2.16.840.1.113883.3.9999", "THIRD&2.16.840.1.113883.3.6666", 1)),
		"GENFAC^2.16.840.1.113883.3.9999^ISO", "THIRD", 1)
	if ack, code := send(t, c, msg); ack != "AE" || code != "204" {
		t.Errorf("facility of a member not allowed on this address: %s %s, want AE 204", ack, code)
	}
}

func TestHL7IntakeConcurrentDuplicates(t *testing.T) {
	e := newHL7Env(t)
	const n = 6
	clients := make([]*hl7v2.Client, n)
	for i := range clients {
		clients[i] = mllpClient(t, e.addr)
	}
	// The same new patient's message, sent on n connections at once (a sender that timed
	// out and resent on a new connection): one copy is stored, every copy gets AA.
	var wg sync.WaitGroup
	acks := make([]string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			ack, err := clients[i].Send(ctx, []byte(oruR01("X1", pidA)))
			if err != nil {
				acks[i] = err.Error()
				return
			}
			acks[i] = ack.Get("MSA-1")
		}()
	}
	wg.Wait()
	for i, a := range acks {
		if a != "AA" {
			t.Errorf("copy %d: %s", i, a)
		}
	}
	for typ, want := range map[string]int{"Patient": 1, "DiagnosticReport": 1, "Observation": 3} {
		if got := e.count(t, typ); got != want {
			t.Errorf("%d %s, want %d", got, typ, want)
		}
	}
	// Different messages about the same new patient, at once: the Patient is created once.
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			ack, err := clients[i].Send(ctx, []byte(oruR01("Y"+itoa(i), pidB)))
			if err != nil || ack.Get("MSA-1") != "AA" {
				acks[i] = "failed"
			}
		}()
	}
	wg.Wait()
	if got := e.count(t, "Patient"); got != 2 {
		t.Errorf("%d Patients after concurrent messages about a new one, want 2", got)
	}
	if got := e.count(t, "Observation"); got != 3+3*n {
		t.Errorf("%d Observations, want %d", got, 3+3*n)
	}
}
