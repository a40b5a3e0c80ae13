package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/concord-hie/concord/internal/config"
	"github.com/concord-hie/concord/internal/testkit"
)

// The FHIR crash tests (security.md §7, rows 1 and 14) run a FHIR client load against
// `concord demo` as a child process (crashServer, mllp_crash_test.go), crash the server or
// its PostgreSQL with SIGKILL mid-load, recover, and check §5 against a history of every
// request: an acknowledged write is stored, a definitely failed one is not, an ambiguous
// one is stored at most once and exactly once after a retry with the same If-None-Exist;
// the audit log holds an event for every acknowledged access and a create event for
// exactly the stored writes; `concord audit verify` passes.

// crashIdentSystem is the identifier system of the Encounters the crash load writes.
const crashIdentSystem = "urn:concord:test:fhir-crash"

// crashKills is how many crashes each test injects.
const crashKills = 5

// fhirCrashRig is `concord demo` running as a child process, as a FHIR client sees it.
type fhirCrashRig struct {
	t        *testing.T
	srv      *crashServer
	env      []string
	dbURL    string
	dataDir  string
	base     string // the server's root URL, e.g. http://127.0.0.1:41234
	mllpAddr string
}

// newFHIRCrashRig starts `concord demo` on dbURL, on free ports with a fresh data dir, and
// kills it when the test ends.
func newFHIRCrashRig(t *testing.T, dbURL string) *fhirCrashRig {
	t.Helper()
	_, prefix := testkit.Redis(t)
	s3 := testkit.S3(t)
	httpAddr, mllpAddr, oidcAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	_, port, _ := net.SplitHostPort(httpAddr)
	dataDir := t.TempDir()
	env := []string{runMainEnv + "=1",
		"CONCORD_DATABASE_URL=" + dbURL, "CONCORD_REDIS_URL=" + os.Getenv("CONCORD_TEST_REDIS_URL"), "CONCORD_REDIS_PREFIX=" + prefix,
		"CONCORD_S3_ENDPOINT=" + s3.Endpoint, "CONCORD_S3_ACCESS_KEY=" + s3.AccessKey, "CONCORD_S3_SECRET_KEY=" + s3.SecretKey,
		"CONCORD_S3_BUCKET=" + s3.Bucket, "CONCORD_S3_REGION=" + s3.Region,
		"CONCORD_HTTP_ADDR=" + httpAddr, "CONCORD_BASE_URL=http://localhost:" + port, "CONCORD_MLLP_ADDR=" + mllpAddr,
		"CONCORD_DEV_OIDC_ADDR=" + oidcAddr, "CONCORD_ADMIN_ADDR=" + freeAddr(t), "CONCORD_DATA_DIR=" + dataDir, "CONCORD_LOG_LEVEL=warn"}
	r := &fhirCrashRig{t: t, srv: &crashServer{t: t, env: env}, env: env, dbURL: dbURL, dataDir: dataDir,
		base: "http://" + httpAddr, mllpAddr: mllpAddr}
	t.Cleanup(r.srv.kill)
	r.srv.start(mllpAddr)
	return r
}

// waitReady polls /readyz until it answers 200 or d passes; it reports whether it did.
func (r *fhirCrashRig) waitReady(d time.Duration) bool {
	hc := &http.Client{Timeout: 2 * time.Second}
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := hc.Get(r.base + "/readyz")
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return true
		}
	}
	return false
}

// auditVerify runs `concord audit verify` (the child binary, with the server's database
// and data dir, so the checkpoint key is the server's) and fails the test unless it
// reports OK.
func (r *fhirCrashRig) auditVerify() {
	r.t.Helper()
	cmd := exec.Command(os.Args[0], "audit", "verify")
	cmd.Env = append(os.Environ(), r.env...)
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.HasPrefix(out, []byte("OK: ")) {
		r.t.Errorf("concord audit verify after the crashes: %v\n%s", err, out)
		return
	}
	r.t.Logf("audit verify: %s", bytes.TrimSpace(out))
}

// auditCheckpoint runs `concord audit checkpoint` (the child binary, as auditVerify), so
// that the final verify also checks a signed tree head written between crashes.
func (r *fhirCrashRig) auditCheckpoint() {
	r.t.Helper()
	cmd := exec.Command(os.Args[0], "audit", "checkpoint")
	cmd.Env = append(os.Environ(), r.env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		r.t.Fatalf("concord audit checkpoint: %v\n%s", err, out)
	}
}

// crashClient is one concurrent FHIR client: a member system writing Encounters for one
// of its Patients and reading back the ones it got acknowledged.
type crashClient struct {
	n       int
	token   string
	patient string
}

// crashClients gets a token for each of n clients, spread over the demo members, and
// picks a Patient of its member for each.
func (r *fhirCrashRig) crashClients(ctx context.Context, pool *pgxpool.Pool, n int) []crashClient {
	r.t.Helper()
	region := demoRegion(config.Defaults().DemoSeed)
	var cs []crashClient
	for i := 0; i < n; i++ {
		dm := region.members[i%len(region.members)]
		var pid string
		err := pool.QueryRow(ctx, `SELECT id FROM fhir_resources WHERE type = 'Patient' AND member_id = $1 AND NOT deleted
			ORDER BY id OFFSET $2 LIMIT 1`, dm.ID, i/len(region.members)).Scan(&pid)
		if err != nil {
			r.t.Fatalf("a Patient of %s: %v", dm.ID, err)
		}
		var dc demoClient
		b, err := os.ReadFile(filepath.Join(r.dataDir, "demo-clients", dm.ID+".json"))
		if err == nil {
			err = json.Unmarshal(b, &dc)
		}
		if err != nil {
			r.t.Fatalf("client credentials of %s: %v", dm.ID, err)
		}
		ts, err := newTokenSource(r.dataDir, dm.ID, dc.TokenURL, "system/Patient.cruds system/Encounter.cruds")
		if err != nil {
			r.t.Fatal(err)
		}
		if err := ts.refresh(); err != nil {
			r.t.Fatalf("token for %s: %v", dm.ID, err)
		}
		cs = append(cs, crashClient{n: i, token: ts.token, patient: pid})
	}
	return cs
}

// opOutcome is what a client learned about one request.
type opOutcome int

const (
	opOK      opOutcome = iota // a 2xx answer
	opFailed                   // a definite non-2xx answer
	opUnsent                   // the connection was refused: nothing reached the server
	opUnknown                  // the connection broke or timed out after the request was sent
)

func (o opOutcome) String() string {
	return [...]string{"ok", "failed", "unsent", "unknown"}[o]
}

// fhirOp is one request of the history.
type fhirOp struct {
	client     int
	write      bool   // a conditional create; otherwise a read
	retry      bool   // the retry of an ambiguous write, after the crashes
	rid        string // X-Request-Id
	ident      string // a write's Encounter.identifier value
	id         string // the Encounter: from a write's Location, or the one read
	status     int
	outcome    opOutcome
	err        string
	start, end time.Time
}

func (op *fhirOp) String() string {
	kind := "read " + op.id
	if op.write {
		kind = "write " + op.ident
	}
	return fmt.Sprintf("%s %s: %s (status %d, id %q, %s, %s–%s)", op.rid, kind, op.outcome, op.status, op.id, op.err,
		op.start.Format("15:04:05.000"), op.end.Format("15:04:05.000"))
}

// fhirLoad drives the clients and keeps the history.
type fhirLoad struct {
	base     string
	run      string // unique per test run: request ids and identifiers start with it
	mu       sync.Mutex
	ops      []*fhirOp
	okWrites atomic.Int64
}

func newFHIRLoad(base string) *fhirLoad {
	return &fhirLoad{base: base, run: strings.ToLower(testkit.RandomID(6))}
}

// crashEncounter is an ambulatory Encounter for patientID carrying the identifier ident,
// so a conditional create on it can never store it twice. (Encounter, not Observation:
// the exchange matches If-None-Exist on identifier only for types it indexes by one.)
func crashEncounter(patientID, ident string) []byte {
	return fmt.Appendf(nil, `{"resourceType":"Encounter","identifier":[{"system":%q,"value":%q}],"status":"finished",`+
		`"class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},`+
		`"subject":{"reference":"Patient/%s"},"period":{"start":%q}}`,
		crashIdentSystem, ident, patientID, time.Now().UTC().Add(-time.Hour).Format(time.RFC3339))
}

// identifierJSON is a FHIR Identifier.
type identifierJSON struct {
	System string `json:"system"`
	Value  string `json:"value"`
}

// write sends a conditional create of ident for c and records it in the history, unless
// it is the retry of an ambiguous write (retryUnknown keeps those).
func (l *fhirLoad) write(hc *http.Client, c crashClient, ident, rid string, retry bool) *fhirOp {
	op := &fhirOp{client: c.n, write: true, retry: retry, rid: rid, ident: ident}
	req, _ := http.NewRequest(http.MethodPost, l.base+"/fhir/Encounter", bytes.NewReader(crashEncounter(c.patient, ident)))
	req.Header.Set("Content-Type", "application/fhir+json")
	req.Header.Set("If-None-Exist", "identifier="+crashIdentSystem+"|"+ident)
	l.do(hc, c, req, op)
	return op
}

// read sends a GET of Encounter id for c and records it.
func (l *fhirLoad) read(hc *http.Client, c crashClient, id, rid string) *fhirOp {
	op := &fhirOp{client: c.n, rid: rid, id: id}
	req, _ := http.NewRequest(http.MethodGet, l.base+"/fhir/Encounter/"+id, nil)
	l.do(hc, c, req, op)
	return op
}

// do sends req as c with op's request id and records in op what came back: ok (2xx),
// failed (another status), unsent (refused at connect) or unknown (cut, timed out, or a
// 503 saying the COMMIT went unanswered).
func (l *fhirLoad) do(hc *http.Client, c crashClient, req *http.Request, op *fhirOp) {
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/fhir+json")
	req.Header.Set("X-Request-Id", op.rid)
	op.start = time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		op.end = time.Now()
		op.err = err.Error()
		var oe *net.OpError
		if errors.As(err, &oe) && oe.Op == "dial" {
			op.outcome = opUnsent
		} else {
			op.outcome = opUnknown
		}
	} else {
		// The status line decides: a 2xx is the server's acknowledgement, whatever
		// happens to the body afterwards.
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		op.end = time.Now()
		op.status = resp.StatusCode
		op.outcome = opFailed
		switch {
		case resp.StatusCode/100 == 2:
			op.outcome = opOK
		case resp.StatusCode == http.StatusServiceUnavailable && bytes.Contains(body, []byte("may or may not have been stored")):
			op.outcome = opUnknown // the server says its COMMIT went unanswered (db.CommitUnknown)
			op.err = string(body[:min(len(body), 300)])
		default:
			op.err = string(body[:min(len(body), 300)]) // an OperationOutcome: no PHI
		}
		if op.write && op.outcome == opOK {
			// .../fhir/Encounter/{id}/_history/{v}
			loc := strings.Split(resp.Header.Get("Location"), "/")
			if i := slices.Index(loc, "Encounter"); i >= 0 && i+1 < len(loc) {
				op.id = loc[i+1]
			}
		}
	}
	if op.retry {
		return
	}
	l.mu.Lock()
	l.ops = append(l.ops, op)
	l.mu.Unlock()
	if op.write && op.outcome == opOK {
		l.okWrites.Add(1)
	}
}

// client runs c until ctx is done: three writes in five, otherwise a read of one of its
// acknowledged writes. A request in flight when ctx ends completes: only the crash may
// cut one.
func (l *fhirLoad) client(ctx context.Context, c crashClient) {
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer hc.CloseIdleConnections()
	rng := rand.New(rand.NewPCG(uint64(c.n), 14))
	var mine []string
	for n := 0; ctx.Err() == nil; n++ {
		rid := fmt.Sprintf("fk-%s-%d-%d", l.run, c.n, n)
		var op *fhirOp
		if len(mine) == 0 || rng.IntN(5) < 3 {
			op = l.write(hc, c, fmt.Sprintf("%s-%d-%d", l.run, c.n, n), rid, false)
			if op.outcome == opOK && op.id != "" {
				mine = append(mine, op.id)
			}
		} else {
			op = l.read(hc, c, mine[rng.IntN(len(mine))], rid)
		}
		if op.outcome != opOK {
			hc.CloseIdleConnections()
			time.Sleep(20 * time.Millisecond) // the server or its database is down: don't spin
		}
	}
}

// start runs the clients until the returned stop is called; stop waits for them.
func (l *fhirLoad) start(clients []crashClient) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Go(func() { l.client(ctx, c) })
	}
	return func() { cancel(); wg.Wait() }
}

// loadPhase lets the load run for 700 ms and at least 40 more acknowledged writes (or
// fails the test after 20 s without them).
func (l *fhirLoad) loadPhase(t *testing.T) {
	t.Helper()
	time.Sleep(700 * time.Millisecond)
	l.waitOKWrites(t, l.okWrites.Load()+40, 20*time.Second)
}

// waitOKWrites waits until at least n writes were acknowledged, or fails the test.
func (l *fhirLoad) waitOKWrites(t *testing.T, n int64, d time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(d); l.okWrites.Load() < n; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			l.mu.Lock()
			last := l.ops[max(0, len(l.ops)-5):]
			l.mu.Unlock()
			t.Fatalf("only %d writes acknowledged in %s; want %d; the last requests: %v", l.okWrites.Load(), d, n, last)
		}
	}
}

// crashWindow is one injected crash: the kill and the moment the system was back.
type crashWindow struct{ kill, back time.Time }

// checkCrashed fails the test unless each crash really happened under load: acknowledged
// writes completed before the kill and others started after the recovery; and unless
// requests in flight at the kills did not succeed (cut: row 14; answered 503: row 1).
// (One kill may find every request past its last use of what was killed: the count is
// over all kills.)
func (l *fhirLoad) checkCrashed(t *testing.T, crashes []crashWindow) {
	t.Helper()
	var hits int
	for i, cw := range crashes {
		var before, after, hit int
		for _, op := range l.ops {
			switch {
			case op.write && op.outcome == opOK && op.end.Before(cw.kill):
				before++
			case op.write && op.outcome == opOK && op.start.After(cw.back):
				after++
			}
			if op.start.Before(cw.kill) && op.end.After(cw.kill) && op.outcome != opOK {
				hit++
			}
		}
		t.Logf("crash %d: %d acknowledged writes before the kill, %d after the recovery; %d requests in flight at the kill did not succeed",
			i+1, before, after, hit)
		if before == 0 || after == 0 {
			t.Errorf("crash %d did not happen mid-load: %d acknowledged writes before it, %d after", i+1, before, after)
		}
		hits += hit
	}
	if hits == 0 {
		t.Errorf("the %d kills cut no request in flight", len(crashes))
	}
}

// retryUnknown re-sends every write whose outcome is unknown, with the same identifier
// (so the same If-None-Exist), once the system is back, and returns the retries. Before
// each retry the write must be stored at most once.
func (l *fhirLoad) retryUnknown(t *testing.T, ctx context.Context, pool *pgxpool.Pool, clients []crashClient) []*fhirOp {
	t.Helper()
	stored := l.stored(t, ctx, pool)
	hc := &http.Client{Timeout: 10 * time.Second}
	var retries []*fhirOp
	var committed int
	for _, op := range l.ops {
		if !op.write || op.outcome != opUnknown {
			continue
		}
		if len(stored[op.ident]) > 0 {
			committed++
		}
		if n := len(stored[op.ident]); n > 1 {
			t.Errorf("ambiguous write %s is stored %d times before any retry: %v", op, n, stored[op.ident])
		}
		r := l.write(hc, clients[op.client], op.ident, op.rid+"-r", true)
		retries = append(retries, r)
		if r.outcome != opOK {
			t.Errorf("retry of the ambiguous write %s: %s", op, r)
			continue
		}
		switch ids := stored[op.ident]; {
		case len(ids) == 1 && (r.status != http.StatusOK || r.id != ids[0]):
			t.Errorf("retry of %s, stored as %s before the retry, answered %d with %q: want 200 and the stored one", op, ids[0], r.status, r.id)
		case len(ids) == 0 && r.status != http.StatusCreated:
			t.Errorf("retry of %s, absent before the retry, answered %d: want 201", op, r.status)
		}
	}
	t.Logf("%d ambiguous writes retried; %d of them had committed before their answer was lost", len(retries), committed)
	return retries
}

// stored returns the ids of the stored (not deleted) Encounters of this load, by
// identifier value, reading the stored bodies themselves.
func (l *fhirLoad) stored(t *testing.T, ctx context.Context, pool *pgxpool.Pool) map[string][]string {
	t.Helper()
	rows, err := pool.Query(ctx, `SELECT id, body FROM fhir_resources WHERE type = 'Encounter' AND NOT deleted
		AND position($1::bytea IN body) > 0`, []byte(`"`+l.run+`-`))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for rows.Next() {
		var id string
		var body []byte
		if err := rows.Scan(&id, &body); err != nil {
			t.Fatal(err)
		}
		var obs struct{ Identifier []identifierJSON }
		if err := json.Unmarshal(body, &obs); err != nil {
			t.Fatalf("stored Encounter %s: %v", id, err)
		}
		for _, x := range obs.Identifier {
			if x.System == crashIdentSystem {
				out[x.Value] = append(out[x.Value], id)
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// auditRow is one audit event as the invariants read it.
type auditRow struct {
	rid, action, outcome string
	resources            []string
}

// checkInvariants checks §5 and the audit against the history: see the file comment.
func (l *fhirLoad) checkInvariants(t *testing.T, ctx context.Context, pool *pgxpool.Pool, retries []*fhirOp) {
	t.Helper()
	stored := l.stored(t, ctx, pool)
	rows, err := pool.Query(ctx, `SELECT request_id, action, outcome, resources FROM audit_events WHERE request_id LIKE $1`, "fk-"+l.run+"-%")
	if err != nil {
		t.Fatal(err)
	}
	events, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (auditRow, error) {
		var a auditRow
		err := r.Scan(&a.rid, &a.action, &a.outcome, &a.resources)
		return a, err
	})
	if err != nil {
		t.Fatal(err)
	}
	byRID := map[string][]auditRow{}
	createsOf := map[string][]auditRow{} // "Encounter/id" → its create events
	for _, ev := range events {
		byRID[ev.rid] = append(byRID[ev.rid], ev)
		if ev.action == "create" {
			for _, r := range ev.resources {
				createsOf[r] = append(createsOf[r], ev)
			}
		}
	}
	has := func(rid, action, res string) bool {
		for _, ev := range byRID[rid] {
			if ev.action == action && ev.outcome == "permit" && slices.Contains(ev.resources, res) {
				return true
			}
		}
		return false
	}
	count := map[opOutcome]int{}
	var reads, writes int
	opsOf := map[string][]*fhirOp{} // identifier → its writes and retries
	ops := append(slices.Clone(l.ops), retries...)
	for _, op := range ops {
		if op.write {
			opsOf[op.ident] = append(opsOf[op.ident], op)
		}
	}
	var failedWithEvent int
	for _, op := range l.ops {
		count[op.outcome]++
		if !op.write {
			reads++
			switch {
			case op.outcome == opOK && !has(op.rid, "read", "Encounter/"+op.id):
				t.Errorf("acknowledged read %s has no read event; events with its request id: %v", op, byRID[op.rid])
			case op.outcome == opFailed && op.status == http.StatusNotFound:
				t.Errorf("read of an acknowledged write answered 404: %s", op)
			case op.outcome != opOK && len(byRID[op.rid]) > 0:
				failedWithEvent++
			}
			continue
		}
		writes++
		ids := stored[op.ident]
		switch op.outcome {
		case opOK:
			if len(ids) != 1 || ids[0] != op.id {
				t.Errorf("acknowledged write %s: stored as %v; want exactly [%s]", op, ids, op.id)
			}
			if !has(op.rid, "create", "Encounter/"+op.id) {
				t.Errorf("acknowledged write %s has no create event; events with its request id: %v", op, byRID[op.rid])
			}
		case opFailed, opUnsent:
			if len(ids) != 0 {
				t.Errorf("write %s got a definite answer (%s) but is stored as %v; its events: %v", op, op.outcome, ids, byRID[op.rid])
			}
			for _, ev := range byRID[op.rid] {
				if ev.action == "create" {
					t.Errorf("write %s (%s) has a create event %v", op, op.outcome, ev)
				}
			}
		case opUnknown:
			if len(ids) != 1 {
				t.Errorf("ambiguous write %s is stored as %v after its retry; want exactly once", op, ids)
			}
		}
	}
	for _, r := range retries {
		if r.outcome != opOK {
			continue
		}
		want := "create"
		if r.status == http.StatusOK {
			want = "read" // the condition matched: the retry read the stored one
		}
		if !has(r.rid, want, "Encounter/"+r.id) {
			t.Errorf("retry %s has no %s event; events with its request id: %v", r, want, byRID[r.rid])
		}
	}
	// Every stored write has exactly one create event, made by a request that wrote it;
	// a write that is not stored has none.
	for ident, ids := range stored {
		if len(opsOf[ident]) == 0 {
			t.Errorf("Encounter %v with identifier %s was stored, but no request of the history wrote it", ids, ident)
		}
		for _, id := range ids {
			evs := createsOf["Encounter/"+id]
			if len(evs) != 1 || !slices.ContainsFunc(opsOf[ident], func(op *fhirOp) bool { return op.rid == evs[0].rid }) {
				t.Errorf("stored Encounter/%s (identifier %s) has create events %v; want exactly one, by one of its writes %v", id, ident, evs, opsOf[ident])
			}
		}
	}
	storedIDs := map[string]bool{}
	for _, ids := range stored {
		for _, id := range ids {
			storedIDs["Encounter/"+id] = true
		}
	}
	for res, evs := range createsOf {
		if !storedIDs[res] {
			t.Errorf("create events %v for %s, which is not stored", evs, res)
		}
	}
	// Cross-check with the whole audit log, not only the load's request ids.
	var stray int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE action = 'create' AND request_id NOT LIKE $1
		AND EXISTS (SELECT 1 FROM unnest(resources) r WHERE r = ANY($2))`, "fk-"+l.run+"-%", slices.Collect(maps.Keys(storedIDs))).Scan(&stray); err != nil {
		t.Fatal(err)
	}
	if stray != 0 {
		t.Errorf("%d create events for the load's Encounters carry another request id", stray)
	}
	t.Logf("history: %d writes and %d reads: %d ok, %d failed, %d unsent, %d unknown (%d retried); %d Encounters stored; %d audit events; %d not-ok reads left an event",
		writes, reads, count[opOK], count[opFailed], count[opUnsent], count[opUnknown], len(retries), len(storedIDs), len(events), failedWithEvent)
}

// TestFHIRAppKill9 is security.md §7 row 14: 8 member systems send conditional creates
// and reads to /fhir while the server is killed with SIGKILL and started again, three
// times. Afterwards (see checkInvariants): every acknowledged write is stored once, no
// definitely failed or refused write is stored, an ambiguous one is stored at most once
// and exactly once after its retry; every acknowledged read or write has its audit event
// by request id, every stored write exactly one create event and an absent one none; and
// `concord audit verify` passes.
func TestFHIRAppKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the server as a child process four times")
	}
	rig := newFHIRCrashRig(t, testkit.DatabaseURL(t))
	rig.crashUnderLoad(func(i int) time.Time {
		// The kill's time is taken once the signal is sent: taken before, a descheduled test
		// goroutine could stamp it well before the server died.
		_ = rig.srv.cmd.Process.Signal(syscall.SIGKILL)
		kill := time.Now()
		rig.srv.kill() // reaps it
		rig.srv.start(rig.mllpAddr)
		if !rig.waitReady(20 * time.Second) {
			t.Fatalf("server not ready after restart %d:\n%s", i+1, rig.srv.out.String())
		}
		return kill
	})
}

// crashUnderLoad runs 8 clients against the rig's server and calls crash crashKills times
// between load phases; crash injects one failure, waits until the server is ready again
// and returns when the failure struck. A checkpoint is written after the second crash, so
// verification covers checkpoints signed between crashes. Then it checks every invariant
// of the fault table (checkCrashed, checkInvariants after retrying unknown writes) and
// that the audit chain verifies.
func (r *fhirCrashRig) crashUnderLoad(crash func(i int) time.Time) {
	t := r.t
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, r.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	clients := r.crashClients(ctx, pool, 8)
	load := newFHIRLoad(r.base)
	stop := load.start(clients)
	t.Cleanup(stop)
	var crashes []crashWindow
	for i := 0; i < crashKills; i++ {
		load.loadPhase(t)
		kill := crash(i)
		crashes = append(crashes, crashWindow{kill: kill, back: time.Now()})
		if i == 1 {
			r.auditCheckpoint()
		}
	}
	load.loadPhase(t)
	stop()
	pool.Reset() // connections a killed database took with it
	load.checkCrashed(t, crashes)
	retries := load.retryUnknown(t, ctx, pool, clients)
	load.checkInvariants(t, ctx, pool, retries)
	r.auditVerify()
}

// privatePG is a PostgreSQL cluster of the test's own, which it may kill: the shared one
// serves other test packages running in parallel.
type privatePG struct {
	t      *testing.T
	bin    string // the directory of initdb and postgres
	dir    string // socket dir and log; the data dir is dir/data
	port   string
	cred   *syscall.Credential // run as the postgres OS user when the test runs as root
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
	log    *os.File
}

// pgBinDir returns the directory holding PostgreSQL's server binaries, or "".
func pgBinDir() string {
	var dirs []string
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dirs = append(dirs, strings.TrimSpace(string(out)))
	}
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.Reverse(found) // the newest version first
	for _, d := range append(dirs, found...) {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d
		}
	}
	return ""
}

// newPrivatePG makes a cluster with initdb in a new directory under /tmp and starts it
// with fsync, synchronous_commit and full_page_writes on; the test's end stops it and
// removes the directory. It skips when no PostgreSQL server binaries are installed.
func newPrivatePG(t *testing.T) *privatePG {
	t.Helper()
	bin := pgBinDir()
	if bin == "" {
		t.Skip("no PostgreSQL server binaries (initdb, postgres): neither pg_config --bindir nor /usr/lib/postgresql/*/bin has them")
	}
	dir, err := os.MkdirTemp("/tmp", "concord-pgkill-") // short: the socket path has a length limit
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	p := &privatePG{t: t, bin: bin, dir: dir, port: strconv.Itoa(freePort(t))}
	if os.Geteuid() == 0 { // initdb and postgres refuse to run as root
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Skip("running as root and there is no postgres OS user to run a private PostgreSQL as")
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		p.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", filepath.Join(dir, "data"), "-U", "postgres", "--auth=trust",
		"-E", "UTF8", "--no-locale", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	initdb.Dir = dir
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	if p.log, err = os.Create(filepath.Join(dir, "postgres.log")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.log.Close() })
	t.Cleanup(func() { p.kill() })
	p.start()
	return p
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	_, port, _ := net.SplitHostPort(freeAddr(t))
	n, _ := strconv.Atoi(port)
	return n
}

// url returns the URL of database name as the superuser.
func (p *privatePG) url(name string) string {
	return "postgres://postgres@127.0.0.1:" + p.port + "/" + name + "?sslmode=disable"
}

// start starts the postmaster in its own process group and waits until it accepts
// connections (after crash recovery, when it was killed). A postmaster that exits at once
// (the killed one's backends still hold its shared memory) is started again.
func (p *privatePG) start() {
	p.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		cmd := exec.Command(filepath.Join(p.bin, "postgres"), "-D", filepath.Join(p.dir, "data"), "-p", p.port, "-k", p.dir,
			"-c", "listen_addresses=127.0.0.1", "-c", "fsync=on", "-c", "synchronous_commit=on", "-c", "full_page_writes=on",
			"-c", "max_connections=200")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: p.cred}
		cmd.Dir = p.dir
		cmd.Stdout, cmd.Stderr = p.log, p.log
		if err := cmd.Start(); err != nil {
			p.t.Fatalf("postgres: %v", err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		p.cmd, p.exited = cmd, exited
		if p.accepting(deadline) {
			return
		}
		p.kill()
		time.Sleep(200 * time.Millisecond)
	}
	b, _ := os.ReadFile(p.log.Name())
	p.t.Fatalf("private PostgreSQL did not start in 30 s; log:\n%s", b)
}

// accepting waits until the started postmaster accepts connections; it reports false if
// the postmaster exited or deadline passed first.
func (p *privatePG) accepting(deadline time.Time) bool {
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			return false
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := pgx.Connect(ctx, p.url("postgres"))
		cancel()
		if err == nil {
			c.Close(context.Background())
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// kill sends SIGKILL to the postmaster and every process of its group (its backends,
// checkpointer, WAL writer) at once, as an OOM killer or a power cut would, and returns
// when it was sent.
func (p *privatePG) kill() time.Time {
	if p.cmd == nil {
		return time.Time{}
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	at := time.Now()
	<-p.exited
	p.cmd = nil
	return at
}

// TestFHIRPostgresKill9 is security.md §7 row 1: the load of TestFHIRAppKill9 runs against
// a server whose private PostgreSQL (fsync and synchronous_commit on) is killed with
// SIGKILL, postmaster and backends together, and started again on the same data dir
// (crash recovery), three times; commits are cut before, during and after COMMIT. The
// server is not restarted: it must get ready again on its own (/readyz), and then the same
// invariants must hold, audit verify included.
func TestFHIRPostgresKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a private PostgreSQL and the server as a child process")
	}
	pg := newPrivatePG(t)
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, pg.url("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE concord"); err != nil {
		t.Fatal(err)
	}
	admin.Close(ctx)
	rig := newFHIRCrashRig(t, pg.url("concord"))
	rig.crashUnderLoad(func(i int) time.Time {
		kill := pg.kill()
		time.Sleep(300 * time.Millisecond) // the server sees its database gone
		pg.start()
		if !rig.waitReady(20 * time.Second) {
			t.Fatalf("server not ready 20 s after PostgreSQL came back (crash %d):\n%s", i+1, rig.srv.out.String())
		}
		return kill
	})
}
