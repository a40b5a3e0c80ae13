package documents_test

import (
	"bytes"
	"testing"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/documents"
)

// TestResendHealsDamagedObject: an object damaged in place (bit rot, a bad restore) keeps
// its size. Intake used to skip the write whenever an object of the right size was under
// the key, so a resend of the very same bytes, by the sender or another member, was
// acknowledged while every download of it failed its SHA-256 check, and no resend could
// ever repair it. An acknowledged upload must be readable: intake writes the bytes again,
// which also heals the documents that already named the object.
func TestResendHealsDamagedObject(t *testing.T) {
	e := setup(t, documents.Config{})
	ctx := t.Context()
	data := note(3000, 7)
	first, key := storeDoc(t, e, "a", data)
	bad := bytes.Clone(data)
	bad[100] ^= 1
	putRaw(t, e, key, bad)
	if rep, _ := checkAll(t, e, true); rep.DigestMismatches != 1 {
		t.Fatalf("after damaging the object: %d digest mismatches, want 1", rep.DigestMismatches)
	}

	st, err := e.ingest(t, "b", docRef(e.patients["b"], "text/plain", data, ""))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{st.ID, first} {
		c, err := e.svc.ContentOfDocument(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		tr, err := e.svc.Open(ctx, c, audit.Event{Actor: "test"})
		if err != nil {
			t.Fatalf("document %s: open: %v", id, err)
		}
		var out bytes.Buffer
		err = tr.WriteRange(&out, documents.ByteRange{Start: 0, End: -1})
		tr.Close()
		if err != nil || !bytes.Equal(out.Bytes(), data) {
			t.Errorf("document %s after the resend: read %d bytes, %v; want the bytes sent", id, out.Len(), err)
		}
	}
	if rep, ps := checkAll(t, e, true); !rep.OK() {
		t.Errorf("after the resend: check %+v, problems %v; want none", rep, ps)
	}
}
