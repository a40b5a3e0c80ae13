package exchange

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/concord-hie/concord/exchange/hl7v2"
	"github.com/concord-hie/concord/fhir"
)

// openWrite runs write in a transaction on a connection of the test pool and leaves it
// open, as a FHIR or MHD write that has not committed yet; the returned function commits
// it. The transaction is rolled back if the test ends first.
func (e *mdmEnv) openWrite(t *testing.T, write func(ctx context.Context, tx pgx.Tx) error) (commit func()) {
	t.Helper()
	ctx := t.Context()
	tx, err := e.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Rollback(context.Background()) })
	if err := write(ctx, tx); err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		if err := tx.Commit(ctx); err != nil {
			t.Fatalf("commit: %v", err)
		}
	}
}

// sendLater sends msg on a connection of its own in the background; the returned
// function waits for the ACK and returns MSA-1 and the table 0357 code ("" for none).
func (e *mdmEnv) sendLater(t *testing.T, msg string) (wait func() (string, string)) {
	t.Helper()
	c := mllpClient(t, e.addr)
	type answer struct {
		ack *hl7v2.Message
		err error
	}
	done := make(chan answer, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		ack, err := c.Send(ctx, []byte(msg))
		done <- answer{ack, err}
	}()
	return func() (string, string) {
		t.Helper()
		a := <-done
		if a.err != nil {
			t.Fatalf("send: %v", a.err)
		}
		code := a.ack.Get("ERR-3.1")
		if code == "" {
			code = a.ack.Get("ERR-1.4.1")
		}
		return a.ack.Get("MSA-1"), code
	}
}

// waitLockWait waits until a backend of the test database waits for a lock another
// transaction holds (pg_stat_activity: wait_event_type Lock).
func (e *mdmEnv) waitLockWait(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); ; {
		if e.scalar(t, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`) > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no backend waits for a lock")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// updateDocument is a FHIR update of the member's DocumentReference id as an update
// through the API does it (the row lock, then ingestUpdate), of the stored body as edit
// changes it.
func (e *mdmEnv) updateDocument(ctx context.Context, tx pgx.Tx, id string, edit func(body map[string]any)) error {
	if _, err := e.srv.FHIR.Lock(ctx, tx, "DocumentReference", id); err != nil {
		return err
	}
	st, err := e.srv.FHIR.Get(ctx, tx, "DocumentReference", id)
	if err != nil {
		return err
	}
	var body map[string]any
	if err := json.Unmarshal(st.Body, &body); err != nil {
		return err
	}
	edit(body)
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	res, err := fhir.Parse(b)
	if err != nil {
		return err
	}
	_, err = e.srv.ingestUpdate(ctx, tx, e.member, res, id)
	return err
}

// labelDocument is updateDocument giving the document the v3-Confidentiality label code
// as its only one.
func (e *mdmEnv) labelDocument(ctx context.Context, tx pgx.Tx, id, code string) error {
	return e.updateDocument(ctx, tx, id, func(body map[string]any) {
		body["meta"] = map[string]any{"security": []any{map[string]any{"system": systemConfidentiality, "code": code}}}
	})
}

// metaLabels returns the labels of the document's metadata row, comma-separated.
func (e *mdmEnv) metaLabels(t testing.TB, id string) string {
	t.Helper()
	var s string
	if err := e.pool.QueryRow(context.Background(), `SELECT array_to_string(security, ',') FROM documents_metadata WHERE id = $1`, id).Scan(&s); err != nil {
		t.Fatalf("metadata of %s: %v", id, err)
	}
	return s
}

// TestHL7MDMStatusChangeConcurrentWrite: a T04 works on the document as it is once it
// holds the document's row lock, the lock a FHIR update (PUT, PATCH) and the document
// service's supersede (an MHD replacement) take. A write that commits while the T04
// waits is kept: a label a FHIR update added stays (the T04 sends no TXA-18), and a
// document an MHD replacement superseded stays superseded, in its FHIR status and its
// metadata. A deadlock of the T04 with a write that locks the metadata before the row,
// as supersede does, is retried by the message's transaction: AA, and the write kept.
func TestHL7MDMStatusChangeConcurrentWrite(t *testing.T) {
	const note = "Dictated note."
	t04 := mdmWith("T04", "S2", pidA, "DOC-1", "", note, map[int]string{17: "AU"})

	t.Run("FHIR update adds a label", func(t *testing.T) {
		e := newMDMEnv(t)
		visible := e.otherReader(t)
		sendAA(t, mllpClient(t, e.addr), "T02", mdmWith("T02", "S1", pidA, "DOC-1", "", note, map[int]string{17: "PA"}))
		d, _ := e.doc(t, "DOC-1")
		commit := e.openWrite(t, func(ctx context.Context, tx pgx.Tx) error { return e.labelDocument(ctx, tx, d.ID, "V") })
		wait := e.sendLater(t, t04)
		e.waitLockWait(t)
		commit()
		if code, err := wait(); code != "AA" {
			t.Fatalf("T04: %s %s", code, err)
		}
		if got := e.mdmStatus(t, "DOC-1"); got.Version != 3 || got.DocStatus != "final" || !slices.Equal(got.Security, []string{"V"}) {
			t.Errorf("after the label and the T04: %+v, want version 3, final, [V]", got)
		}
		if got := e.metaLabels(t, d.ID); got != "V" {
			t.Errorf("metadata labels %q, want V", got)
		}
		if visible(d.ID) {
			t.Error("orgb reads the document labelled V")
		}
	})

	t.Run("MHD replacement supersedes it", func(t *testing.T) {
		e := newMDMEnv(t)
		sendAA(t, mllpClient(t, e.addr), "T02", mdmWith("T02", "S1", pidA, "DOC-1", "", note, map[int]string{17: "PA"}))
		d, patient := e.doc(t, "DOC-1")
		var by string
		commit := e.openWrite(t, func(ctx context.Context, tx pgx.Tx) error {
			res, err := fhir.Parse([]byte(`{"resourceType":"DocumentReference","status":"current","subject":{"reference":"Patient/` + patient + `"},
				"relatesTo":[{"code":"replaces","target":{"reference":"DocumentReference/` + d.ID + `"}}],
				"content":[{"attachment":{"contentType":"text/plain","data":"` + base64.StdEncoding.EncodeToString([]byte("Corrected note.")) + `"}}]}`))
			if err != nil {
				return err
			}
			st, _, err := e.srv.IngestAs(ctx, tx, e.member, res, "")
			by = st.ID
			return err
		})
		wait := e.sendLater(t, t04)
		e.waitLockWait(t)
		commit()
		if code, err := wait(); code != "AA" {
			t.Fatalf("T04: %s %s", code, err)
		}
		if d1, _ := e.doc(t, "DOC-1"); d1.Status != "superseded" || d1.DocStatus != "final" {
			t.Errorf("DOC-1 %s %s, want superseded and final", d1.Status, d1.DocStatus)
		}
		if n := e.scalar(t, `SELECT count(*) FROM documents_metadata WHERE id = $1 AND status = 'superseded' AND superseded_by = $2`, d.ID, by); n != 1 {
			t.Error("DOC-1's metadata is not superseded by the replacement")
		}
		if n := e.scalar(t, `SELECT count(*) FROM documents_metadata WHERE status = 'current'`); n != 1 {
			t.Errorf("%d current documents, want 1 (the replacement)", n)
		}
	})

	t.Run("deadlock with a write that locks the metadata first", func(t *testing.T) {
		e := newMDMEnv(t)
		sendAA(t, mllpClient(t, e.addr), "T02", mdmWith("T02", "S1", pidA, "DOC-1", "", note, map[int]string{17: "PA"}))
		d, _ := e.doc(t, "DOC-1")
		// Supersede's first step: the target's metadata row.
		var tx pgx.Tx
		commit := e.openWrite(t, func(ctx context.Context, x pgx.Tx) error {
			tx = x
			_, err := tx.Exec(ctx, `SELECT 1 FROM documents_metadata WHERE id = $1 FOR UPDATE`, d.ID)
			return err
		})
		wait := e.sendLater(t, t04)
		e.waitLockWait(t) // the T04 holds the row and waits for the metadata
		// Its second: the row, which the T04 holds. PostgreSQL aborts the T04, which
		// waited first (40P01); had the message's transaction not been retried, it would
		// be answered AR.
		if err := e.labelDocument(t.Context(), tx, d.ID, "V"); err != nil {
			t.Fatalf("the write that locks the metadata first: %v", err)
		}
		commit()
		if code, err := wait(); code != "AA" {
			t.Fatalf("T04: %s %s", code, err)
		}
		if got := e.mdmStatus(t, "DOC-1"); got.Version != 3 || got.DocStatus != "final" || !slices.Equal(got.Security, []string{"V"}) {
			t.Errorf("after the label and the T04: %+v, want version 3, final, [V]", got)
		}
	})
}
