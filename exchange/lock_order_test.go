package exchange

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/concord-hie/concord/directory"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/records"
)

// The lock-order tests run each path in a plain transaction (not db.InTx, which retries a
// deadlock and would hide it) and fail on SQLSTATE 40P01.

// lockBundle plans a transaction Bundle of member A: a Patient with MRN mrn (with
// ifNoneExist on that MRN when patientCond) and, when visit is not "", an Encounter of it
// with ifNoneExist on visit number urn:visit|visit.
func lockBundle(t testing.TB, env *writeEnv, mrn, visit string, patientCond bool) []plannedEntry {
	t.Helper()
	scopes, err := directory.Grant(allScopes, []string{allScopes})
	if err != nil {
		t.Fatal(err)
	}
	p := directory.Principal{ClientID: "client-" + env.a.ID, MemberID: env.a.ID, Scopes: scopes}
	const urn = "urn:uuid:22222222-2222-4222-8222-222222222222"
	ifNone := ""
	if patientCond {
		ifNone = `,"ifNoneExist":"identifier=` + syntheaMRN + `|` + mrn + `"`
	}
	body := `{"resourceType":"Bundle","type":"transaction","entry":[
		{"fullUrl":"` + urn + `","resource":` + string(patientJSON(mrn)) + `,"request":{"method":"POST","url":"Patient"` + ifNone + `}}`
	if visit != "" {
		body += `,{"resource":` + string(encounterJSON("", "X", visit)) + `,"request":{"method":"POST","url":"Encounter","ifNoneExist":"identifier=urn:visit|` + visit + `"}}`
	}
	body += `]}`
	body = strings.Replace(body, "Patient/X", urn, 1)
	res, err := fhir.Parse([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	b, err := fhir.ParseBundle(res)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]plannedEntry, len(b.Entries))
	for i, e := range b.Entries {
		if out[i], err = plan(p, env.a, i, e); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// inTx runs fn in a plain transaction and commits it; a deadlock comes back as it is.
func inTx(ctx context.Context, env *writeEnv, fn func(pgx.Tx) error) error {
	tx, err := env.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

func isDeadlock(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "40P01"
}

// TestLockOrderHL7AndBundle: the HL7 intake stores a message's Patient (taking its MRN's
// lock) before it looks up the Encounter's visit number (taking that condition's lock); a
// transaction Bundle with the same Patient and an Encounter conditional on the same visit
// number takes all its keys in one call. The two interleave so that each holds its first
// key when the other asks for it: both must take the MRN first, or PostgreSQL finds a
// deadlock and aborts one (40P01).
func TestLockOrderHL7AndBundle(t *testing.T) {
	env := newWriteEnv(t)
	ctx := context.Background()
	entries := lockBundle(t, env, "mrn-lock", "v-lock", false)
	cond := store.Condition{Type: "Encounter", System: "urn:visit", Value: "v-lock"}
	pat, err := fhir.Parse(patientJSON("mrn-lock"))
	if err != nil {
		t.Fatal(err)
	}

	hl7Has := make(chan struct{})   // the HL7 path holds the MRN
	bundleOn := make(chan struct{}) // the bundle has taken what it could
	var bundleErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-hl7Has
		bundleErr = inTx(ctx, env, func(tx pgx.Tx) error {
			var w records.Writes
			go func() { time.Sleep(300 * time.Millisecond); close(bundleOn) }() // it blocks on a key below
			_, err := env.srv.runEntries(ctx, tx, env.a, entries, &w, new(int64))
			return err
		})
	}()
	hl7Err := inTx(ctx, env, func(tx pgx.Tx) error {
		// The HL7 intake's store: Patients first (Ingest locks the MRN) ...
		if _, _, err := env.srv.Ingest(ctx, tx, env.a, pat); err != nil {
			return err
		}
		close(hl7Has)
		<-bundleOn
		// ... then the Encounter's visit number (existingEncounter).
		_, err := env.srv.FHIR.MatchLocked(ctx, tx, env.a.ID, cond)
		return err
	})
	wg.Wait()
	for name, err := range map[string]error{"HL7 path": hl7Err, "bundle": bundleErr} {
		if isDeadlock(err) {
			t.Errorf("%s: deadlock: %v", name, err)
		} else if err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if n := env.count(t, env.a.ID, "Patient"); n != 1 {
		t.Errorf("%d Patients, want 1", n)
	}
}

// TestLockOrderConditionalAndBundle: a conditional create of a Patient (If-None-Exist on
// its MRN) and a transaction Bundle creating the same Patient with the same condition run
// against each other many times: no deadlock (40P01), and one Patient per MRN. The
// conditional path locks the MRN with the condition (matchLocked), as the Bundle does.
func TestLockOrderConditionalAndBundle(t *testing.T) {
	env := newWriteEnv(t)
	ctx := context.Background()
	const rounds = 40
	var mu sync.Mutex
	var errsSeen []error
	var wg sync.WaitGroup
	for i := range rounds {
		mrn := fmt.Sprintf("mrn-race-%d", i)
		entries := lockBundle(t, env, mrn, "", true)
		pat, err := fhir.Parse(patientJSON(mrn))
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(2)
		go func() {
			defer wg.Done()
			err := inTx(ctx, env, func(tx pgx.Tx) error {
				var w records.Writes
				_, err := env.srv.runEntries(ctx, tx, env.a, entries, &w, new(int64))
				return err
			})
			mu.Lock()
			errsSeen = append(errsSeen, err)
			mu.Unlock()
		}()
		go func() {
			defer wg.Done()
			err := inTx(ctx, env, func(tx pgx.Tx) error {
				var w records.Writes
				_, _, err := env.srv.createIfNoneExist(ctx, tx, env.a, pat, "identifier="+syntheaMRN+"|"+mrn, &w)
				return err
			})
			mu.Lock()
			errsSeen = append(errsSeen, err)
			mu.Unlock()
		}()
	}
	wg.Wait()
	for _, err := range errsSeen {
		if err != nil {
			t.Errorf("deadlock=%v: %v", isDeadlock(err), err)
		}
	}
	if n := env.count(t, env.a.ID, "Patient"); n != rounds {
		t.Errorf("%d Patients for %d MRNs", n, rounds)
	}
}

// TestLockOrderPatchMRNAndPut: a PATCH that changes a Patient's MRN is refused (409)
// before it takes any lock but the old MRN's and the row's, so it cannot deadlock with a
// PUT of the same Patient carrying the new MRN, which takes that MRN and then the row
// (update's order). The PUT holds the new MRN while the patch runs, then asks for the
// row: had the patch locked the new MRN after the row, PostgreSQL would abort one (40P01).
func TestLockOrderPatchMRNAndPut(t *testing.T) {
	env := newWriteEnv(t)
	ctx := context.Background()
	pa := env.create(t, env.token(t, env.a.ID, allScopes), "/Patient", patientJSON("mrn-old"))
	p, err := fhir.ParsePatch([]byte(`[{"op":"replace","path":"/identifier/0/value","value":"mrn-new"}]`))
	if err != nil {
		t.Fatal(err)
	}
	put, err := fhir.Parse(withID(patientJSON("mrn-new"), pa))
	if err != nil {
		t.Fatal(err)
	}
	newKey := mrnLockKey(identifier{System: syntheaMRN, Value: "mrn-new"})

	putHas := make(chan struct{}) // the PUT holds the new MRN
	patchOn := make(chan struct{})
	var patchErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-putHas
		patchErr = inTx(ctx, env, func(tx pgx.Tx) error {
			go func() { time.Sleep(300 * time.Millisecond); close(patchOn) }() // before the fix it blocks below
			_, err := env.srv.patchOwn(ctx, tx, env.a, "Patient", pa, p, "", nil)
			return err
		})
	}()
	putErr := inTx(ctx, env, func(tx pgx.Tx) error {
		if err := env.srv.FHIR.LockConditions(ctx, tx, env.a.ID, []string{newKey}); err != nil { // update's first lock
			return err
		}
		close(putHas)
		<-patchOn
		_, err := env.srv.update(ctx, tx, env.a, "Patient", pa, put, "")
		return err
	})
	wg.Wait()
	for name, err := range map[string]error{"patch": patchErr, "PUT": putErr} {
		if isDeadlock(err) {
			t.Errorf("%s: deadlock: %v", name, err)
		}
	}
	if errs.CodeOf(patchErr) != errs.Conflict {
		t.Errorf("patch changing the MRN: %v; want errs.Conflict", patchErr)
	}
	if cur, _ := env.version(t, "Patient", pa); cur != 1 {
		t.Errorf("Patient version %d, want 1", cur)
	}
}
