package documents_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/concord-hie/concord/documents"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

// replacing is the relatesTo of a DocumentReference that appends to nothing in
// particular (an external one, which no rule checks) and replaces DocumentReference/target,
// so the replaces relation is relatesTo[1].
func replacing(target string) string {
	return `"relatesTo":[{"code":"appends","target":{"reference":"http://elsewhere.test/fhir/DocumentReference/x"}},` +
		`{"code":"replaces","target":{"reference":"DocumentReference/` + target + `"}}],`
}

// ingestIn stores body as a new DocumentReference of member in tx, as exchange.Ingest
// does, reporting no superseded versions.
func (e *env) ingestIn(ctx context.Context, tx db.Querier, member, body string) (store.Stored, error) {
	res, err := fhir.Parse([]byte(body))
	if err != nil {
		return store.Stored{}, err
	}
	id := store.NewID()
	out, err := e.svc.IngestResource(ctx, tx, documents.Intake{MemberID: member, PatientID: e.patients[member], ID: id, Resource: res})
	if err != nil {
		return store.Stored{}, err
	}
	return e.fs.Put(ctx, tx, store.Write{Resource: out, ID: id, MemberID: member, PatientID: e.patients[member], At: time.Now()})
}

// rowCounts is how many rows the document service and the FHIR store hold.
func rowCounts(t *testing.T, e *env) [4]int {
	t.Helper()
	return [4]int{
		count(t, e.pool, `SELECT count(*) FROM documents_metadata`),
		count(t, e.pool, `SELECT count(*) FROM documents_contents`),
		count(t, e.pool, `SELECT count(*) FROM fhir_resources`),
		count(t, e.pool, `SELECT coalesce(sum(cardinality(replaces)), 0)::int FROM documents_metadata`),
	}
}

// TestReplaceNotCurrentRefused: MHD replaces only the current version of a document. A
// replacement of one that another document superseded, that is entered in error, or that
// its sender stored as superseded is errs.Conflict at its relatesTo, naming what to
// replace instead, and writes nothing: no row, no version of the target, no object.
func TestReplaceNotCurrentRefused(t *testing.T) {
	e := setup(t, documents.Config{})
	a := e.patients["a"]
	mustIngest := func(body string) store.Stored {
		t.Helper()
		st, err := e.ingest(t, "a", body)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	replaced := mustIngest(docRef(a, "text/plain", note(400, 1), ""))
	current := mustIngest(docRef(a, "text/plain", note(400, 2), `"relatesTo":[{"code":"replaces","target":{"reference":"DocumentReference/`+replaced.ID+`"}}],`))
	cancelled := mustIngest(docRef(a, "text/plain", note(400, 3), ""))
	e.update(t, "a", cancelled.ID, strings.Replace(docRef(a, "text/plain", note(400, 3), ""), `"status":"current"`, `"status":"entered-in-error"`, 1))
	sentSuperseded := mustIngest(strings.Replace(docRef(a, "text/plain", note(400, 4), ""), `"status":"current"`, `"status":"superseded"`, 1))
	// Replaced, then cancelled: the replacement is still what to replace.
	replacedCancelled := mustIngest(docRef(a, "text/plain", note(400, 5), ""))
	replacement := mustIngest(docRef(a, "text/plain", note(400, 6), `"relatesTo":[{"code":"replaces","target":{"reference":"DocumentReference/`+replacedCancelled.ID+`"}}],`))
	e.update(t, "a", replacedCancelled.ID, strings.Replace(docRef(a, "text/plain", note(400, 5), ""), `"status":"current"`, `"status":"entered-in-error"`, 1))

	for i, tt := range []struct {
		name, target, msg string
	}{
		{"superseded by another", replaced.ID, "DocumentReference/" + replaced.ID + " is superseded by DocumentReference/" + current.ID + "; replace the current document"},
		{"entered in error", cancelled.ID, "DocumentReference/" + cancelled.ID + " is entered-in-error and cannot be replaced"},
		{"sent as superseded", sentSuperseded.ID, "DocumentReference/" + sentSuperseded.ID + " is superseded; replace the current document"},
		{"replaced, then entered in error", replacedCancelled.ID, "DocumentReference/" + replacedCancelled.ID + " is superseded by DocumentReference/" + replacement.ID + "; replace the current document"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before, reported, alerts := rowCounts(t, e), len(e.superseded), len(e.audit.events)
			version, err := e.fs.Get(t.Context(), nil, "DocumentReference", tt.target)
			if err != nil {
				t.Fatal(err)
			}
			bytes := note(500, byte(20+i))
			_, err = e.ingest(t, "a", docRef(a, "text/plain", bytes, replacing(tt.target)))
			if errs.CodeOf(err) != errs.Conflict {
				t.Fatalf("err = %v, want conflict", err)
			}
			if got, want := errs.PathOf(err), "DocumentReference.relatesTo[1].target"; got != want {
				t.Errorf("path %q, want %q", got, want)
			}
			if got := errs.MessageOf(err); got != tt.msg {
				t.Errorf("message %q, want %q", got, tt.msg)
			}
			if after := rowCounts(t, e); after != before {
				t.Errorf("rows (metadata, contents, resources, replaces) %v after the refusal, were %v", after, before)
			}
			if st, err := e.fs.Get(t.Context(), nil, "DocumentReference", tt.target); err != nil || st.Version != version.Version {
				t.Errorf("target at v%d (%v), want v%d", st.Version, err, version.Version)
			}
			if len(e.superseded) != reported || len(e.audit.events) != alerts {
				t.Errorf("refused replacement reported versions %q or alerts %+v", e.superseded[reported:], e.audit.events[alerts:])
			}
			if _, err := e.blobs.Stat(t.Context(), documents.KeyOf(bytes)); errs.CodeOf(err) != errs.NotFound {
				t.Errorf("refused replacement's object: Stat = %v, want not found", err)
			}
		})
	}

	// The current document of the chain may be replaced, and a replacement resent after
	// its target was cancelled still succeeds.
	third, err := e.ingest(t, "a", docRef(a, "text/plain", note(400, 7), replacing(current.ID)))
	if err != nil {
		t.Fatalf("replacing the current document: %v", err)
	}
	if n := count(t, e.pool, `SELECT count(*) FROM documents_metadata WHERE id = $1 AND status = 'superseded' AND superseded_by = $2`, current.ID, third.ID); n != 1 {
		t.Error("the current document is not superseded by its replacement")
	}
	e.update(t, "a", replacement.ID, docRef(a, "text/plain", note(400, 6), `"relatesTo":[{"code":"replaces","target":{"reference":"DocumentReference/`+replacedCancelled.ID+`"}}],`))
}

// TestConcurrentReplacementsOneSucceeds: two replacements of one current document in
// concurrent transactions cannot both commit. supersede decides under the target's
// metadata row lock, so the one that waited for it sees the other's replacement and is
// refused (errs.Conflict), leaving one current replacement.
func TestConcurrentReplacementsOneSucceeds(t *testing.T) {
	t.Run("the second waits for the first", func(t *testing.T) {
		e := setup(t, documents.Config{})
		ctx := t.Context()
		a := e.patients["a"]
		target, err := e.ingest(t, "a", docRef(a, "text/plain", note(400, 1), ""))
		if err != nil {
			t.Fatal(err)
		}
		tx, err := e.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(context.Background())
		first, err := e.ingestIn(ctx, tx, "a", docRef(a, "text/plain", note(400, 2), replacing(target.ID)))
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			done <- db.InTx(ctx, e.pool, func(tx db.Querier) error {
				_, err := e.ingestIn(ctx, tx, "a", docRef(a, "text/plain", note(400, 3), replacing(target.ID)))
				return err
			})
		}()
		// The second has passed the unlocked check (the first is not committed) and waits
		// for the target's row.
		deadline := time.Now().Add(10 * time.Second)
		for count(t, e.pool, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`) == 0 {
			if time.Now().After(deadline) {
				t.Fatal("the second replacement never waited for the target's lock")
			}
			time.Sleep(5 * time.Millisecond)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		err = <-done
		if errs.CodeOf(err) != errs.Conflict || !strings.Contains(errs.MessageOf(err), "superseded by DocumentReference/"+first.ID) {
			t.Fatalf("second replacement: %v, want conflict naming the first", err)
		}
		if n := count(t, e.pool, `SELECT count(*) FROM documents_metadata WHERE id = $1 AND superseded_by = $2`, target.ID, first.ID); n != 1 {
			t.Error("target not superseded by the first replacement")
		}
		if n := count(t, e.pool, `SELECT count(*) FROM documents_metadata`) + count(t, e.pool, `SELECT count(*) FROM fhir_resources WHERE type = 'DocumentReference'`); n != 4 {
			t.Errorf("%d metadata rows and DocumentReferences, want 4 (target and first, each in both)", n)
		}
	})

	t.Run("racing", func(t *testing.T) {
		e := setup(t, documents.Config{})
		ctx := t.Context()
		a := e.patients["a"]
		target, err := e.ingest(t, "a", docRef(a, "text/plain", note(400, 1), ""))
		if err != nil {
			t.Fatal(err)
		}
		const n = 4
		var wg sync.WaitGroup
		start := make(chan struct{})
		results := make([]error, n)
		ids := make([]string, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				results[i] = db.InTx(ctx, e.pool, func(tx db.Querier) error {
					st, err := e.ingestIn(ctx, tx, "a", docRef(a, "text/plain", note(400, byte(10+i)), replacing(target.ID)))
					ids[i] = st.ID
					return err
				})
			}()
		}
		close(start)
		wg.Wait()
		winner := ""
		for i, err := range results {
			switch {
			case err == nil && winner == "":
				winner = ids[i]
			case err == nil:
				t.Errorf("two replacements committed: %s and %s", winner, ids[i])
			case errs.CodeOf(err) != errs.Conflict:
				t.Errorf("replacement %d: %v, want conflict", i, err)
			}
		}
		if winner == "" {
			t.Fatalf("no replacement committed: %v", results)
		}
		if n := count(t, e.pool, `SELECT count(*) FROM documents_metadata WHERE id = $1 AND status = 'superseded' AND superseded_by = $2`, target.ID, winner); n != 1 {
			t.Error("target not superseded by the replacement that committed")
		}
		if n := count(t, e.pool, `SELECT count(*) FROM documents_metadata WHERE $1 = ANY (replaces)`, target.ID); n != 1 {
			t.Errorf("%d documents replace the target, want 1", n)
		}
		if n := count(t, e.pool, `SELECT count(*) FROM fhir_resources WHERE type = 'DocumentReference'`); n != 2 {
			t.Errorf("%d DocumentReferences, want 2", n)
		}
		if st, err := e.fs.Get(ctx, nil, "DocumentReference", target.ID); err != nil || st.Version != 2 {
			t.Errorf("target at v%d (%v), want v2", st.Version, err)
		}
	})
}
