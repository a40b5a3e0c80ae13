package documents_test

import (
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/concord-hie/concord/documents"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

// docRefWith is a DocumentReference of patient whose content holds the given attachments
// (JSON objects) in order.
func docRefWith(patient string, attachments ...string) string {
	var cs []string
	for _, a := range attachments {
		cs = append(cs, `{"attachment":`+a+`}`)
	}
	return fmt.Sprintf(`{"resourceType":"DocumentReference","status":"current","type":{"coding":[{"system":"http://loinc.org","code":"34117-2"}]},`+
		`"subject":{"reference":"Patient/%s"},"content":[%s]}`, patient, strings.Join(cs, ","))
}

// inline is an attachment with data as inline text/plain bytes.
func inline(data []byte) string {
	return fmt.Sprintf(`{"contentType":"text/plain","data":%q}`, base64.StdEncoding.EncodeToString(data))
}

// external is an attachment whose bytes are elsewhere: Concord stores none.
const external = `{"contentType":"application/pdf","url":"https://ehr.example/docs/1.pdf"}`

// groupKeys returns the object keys Group lists for the documents ids.
func groupKeys(t *testing.T, e *env, ids ...string) []string {
	t.Helper()
	ls, err := e.svc.Group(t.Context(), ids)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, l := range ls {
		for range l.Copies {
			keys = append(keys, l.Key)
		}
	}
	return keys
}

// binaryOf returns the Binary id the stored DocumentReference's first attachment names.
func binaryOf(t *testing.T, st store.Stored) string {
	t.Helper()
	return strings.TrimPrefix(attachmentOf(t, st.Body).URL, base+"/Binary/")
}

// TestContentFollowsTheCurrentVersion: a DocumentReference updated with new
// attachment.data keeps its earlier version's content row, as history. What the portal
// opens (ContentOfDocument) and lists (Group) must be the bytes the current version names,
// never an earlier version's. Binary ids are random, so picking by (idx, binary_id) among
// all the rows returned the previous bytes for about half the updated documents (eight
// documents make a pass by luck a 1 in 256 chance), and Group listed them as a second copy.
// A resend of the first bytes makes the first Binary current again, and an earlier
// version's Binary stays readable by its id.
func TestContentFollowsTheCurrentVersion(t *testing.T) {
	e := setup(t, documents.Config{})
	ctx := t.Context()
	const docs = 8
	for i := range docs {
		v1, v2 := note(2000, byte(2*i)), note(2100, byte(2*i+1))
		id := store.NewID()
		first := e.update(t, "a", id, docRef(e.patients["a"], "text/plain", v1, ""))
		second := e.update(t, "a", id, docRef(e.patients["a"], "text/plain", v2, ""))
		c, err := e.svc.ContentOfDocument(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if c.Key != documents.KeyOf(v2) || c.BinaryID != binaryOf(t, second) {
			t.Errorf("document %d: ContentOfDocument after an update = Binary %s (the earlier version's is %s); want %s, the current version's",
				i, c.BinaryID, binaryOf(t, first), binaryOf(t, second))
		}
		if got, want := groupKeys(t, e, id), []string{documents.KeyOf(v2)}; !slices.Equal(got, want) {
			t.Errorf("document %d: Group lists keys %q, want only the current version's %q", i, got, want)
		}
		if i > 0 {
			continue
		}
		// The first bytes sent again: the first Binary is the document's content again.
		third := e.update(t, "a", id, docRef(e.patients["a"], "text/plain", v1, ""))
		if binaryOf(t, third) != binaryOf(t, first) {
			t.Fatalf("resending the first bytes made Binary %s, want the first Binary %s again", binaryOf(t, third), binaryOf(t, first))
		}
		if c, err := e.svc.ContentOfDocument(ctx, id); err != nil || c.BinaryID != binaryOf(t, first) {
			t.Errorf("after the first bytes came back: ContentOfDocument = Binary %s (%v), want %s", c.BinaryID, err, binaryOf(t, first))
		}
		if got, want := groupKeys(t, e, id), []string{documents.KeyOf(v1)}; !slices.Equal(got, want) {
			t.Errorf("after the first bytes came back: Group lists keys %q, want %q", got, want)
		}
		if c, err := e.svc.Content(ctx, binaryOf(t, second)); err != nil || c.DocumentID != id || c.Key != documents.KeyOf(v2) {
			t.Errorf("the earlier version's Binary: %+v, %v; want it readable, of document %s", c, err, id)
		}
	}
}

// TestContentOfDocumentSkipsContentsTheCurrentVersionDropped: a version that no longer
// holds the earlier bytes at content[0] (here an external url, whose bytes Concord does
// not keep) must not be opened or listed as those bytes. The earlier row sorts first by
// position whatever its id, so this fails every time the earlier version is read, unlike
// the random choice between two rows at one position.
func TestContentOfDocumentSkipsContentsTheCurrentVersionDropped(t *testing.T) {
	e := setup(t, documents.Config{})
	ctx := t.Context()
	id := store.NewID()
	a, b := note(1500, 3), note(1600, 4)
	e.update(t, "a", id, docRefWith(e.patients["a"], inline(a)))
	e.update(t, "a", id, docRefWith(e.patients["a"], external, inline(b)))
	if c, err := e.svc.ContentOfDocument(ctx, id); err != nil || c.Key != documents.KeyOf(b) {
		t.Errorf("external url, then inline bytes: ContentOfDocument = key %s (%v), want content[1]'s %s", c.Key, err, documents.KeyOf(b))
	}
	if got, want := groupKeys(t, e, id), []string{documents.KeyOf(b)}; !slices.Equal(got, want) {
		t.Errorf("external url, then inline bytes: Group lists keys %q, want %q", got, want)
	}
	e.update(t, "a", id, docRefWith(e.patients["a"], external))
	if c, err := e.svc.ContentOfDocument(ctx, id); !errs.Is(err, errs.NotFound) {
		t.Errorf("only an external url: ContentOfDocument = key %s (%v), want not found", c.Key, err)
	}
	if got := groupKeys(t, e, id); len(got) != 0 {
		t.Errorf("only an external url: Group lists keys %q, want none", got)
	}
}

// TestMigrationMarksEarlierVersionsContents: migration 0104 adds documents_contents.current
// to a database whose rows were written without it, all of a document's versions alike. It
// must mark exactly what intake marks now: the rows the stored DocumentReference names are
// current, earlier versions' rows are not, and rows no DocumentReference decides (a Binary
// not linked yet, a patient's upload) stay current. The test writes documents through
// intake, drops the column and runs the migration again over the same rows.
func TestMigrationMarksEarlierVersionsContents(t *testing.T) {
	e := setup(t, documents.Config{})
	ctx := t.Context()
	updated, revived, dropped, two := store.NewID(), store.NewID(), store.NewID(), store.NewID()
	e.update(t, "a", updated, docRef(e.patients["a"], "text/plain", note(700, 1), ""))
	e.update(t, "a", updated, docRef(e.patients["a"], "text/plain", note(700, 2), ""))
	e.update(t, "a", revived, docRef(e.patients["a"], "text/plain", note(700, 3), ""))
	e.update(t, "a", revived, docRef(e.patients["a"], "text/plain", note(700, 4), ""))
	e.update(t, "a", revived, docRef(e.patients["a"], "text/plain", note(700, 3), ""))
	e.update(t, "b", dropped, docRefWith(e.patients["b"], inline(note(700, 5))))
	e.update(t, "b", dropped, docRefWith(e.patients["b"], external))
	e.update(t, "b", two, docRefWith(e.patients["b"], inline(note(700, 6)), inline(note(700, 7))))
	e.update(t, "b", two, docRefWith(e.patients["b"], inline(note(700, 8)), inline(note(700, 7))))
	if _, err := e.ingest(t, "a", fmt.Sprintf(`{"resourceType":"Binary","contentType":"text/plain","data":%q}`,
		base64.StdEncoding.EncodeToString(note(700, 9)))); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.UploadPatientDocument(ctx, "person-1", documents.PatientUpload{ContentType: "text/plain",
		Body: strings.NewReader(string(note(700, 10)))}); err != nil {
		t.Fatal(err)
	}
	marks := func() map[string]bool {
		t.Helper()
		rows, err := e.pool.Query(ctx, `SELECT binary_id, current FROM documents_contents`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		m := map[string]bool{}
		for rows.Next() {
			var id string
			var cur bool
			if err := rows.Scan(&id, &cur); err != nil {
				t.Fatal(err)
			}
			m[id] = cur
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return m
	}
	want := marks()
	if n := count(t, e.pool, `SELECT count(*) FROM documents_contents WHERE NOT current`); n != 4 {
		t.Fatalf("intake left %d rows of earlier versions, want 4 (one each of updated, revived and dropped, content[0] of two)", n)
	}
	var m db.Migration
	for _, mm := range db.Migrations() {
		if mm.Version == 104 {
			m = mm
		}
	}
	if m.Name != "documents_contents_current" {
		t.Fatalf("migration 0104 is %q, want documents_contents_current", m.Name)
	}
	err := db.InTx(ctx, e.pool, func(tx db.Querier) error {
		if _, err := tx.Exec(ctx, `ALTER TABLE documents_contents DROP COLUMN current`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, m.SQL)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	got := marks()
	for id, cur := range want {
		if got[id] != cur {
			t.Errorf("Binary %s: the migration marks current = %v, intake %v", id, got[id], cur)
		}
	}
}
