package documents_test

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/concord-hie/concord/documents"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/internal/testkit"
)

// TestSyntheaNotesLoad stores a subset of the Synthea clinical notes (DocumentReference
// with inline base64 text/plain data) the way the exchange does, and checks that each note
// comes out of S3 byte for byte, with the sender's status and LOINC type in the metadata.
func TestSyntheaNotesLoad(t *testing.T) {
	path := filepath.Join(testkit.SharedData(t, "synthea", "bulk-10"), "DocumentReference.000.ndjson")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	e := setup(t, documents.Config{})
	limit := 60
	if testing.Short() {
		limit = 15
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	type noteFields struct {
		Status string `json:"status"`
		Type   struct {
			Coding []fhir.Coding `json:"coding"`
		} `json:"type"`
		Content []struct {
			Attachment attachment `json:"attachment"`
		} `json:"content"`
	}
	n, superseded := 0, 0
	for sc.Scan() && n < limit {
		line := sc.Text()
		var in noteFields
		if err := json.Unmarshal([]byte(line), &in); err != nil || len(in.Content) != 1 {
			t.Fatalf("line %d: unexpected Synthea format: %v", n+1, err)
		}
		// The notes name Synthea's Patient ids; here every note goes to member a's Patient.
		i := strings.Index(line, `"subject":{"reference":"Patient/`)
		j := strings.Index(line[i+32:], `"`)
		line = line[:i+32] + e.patients["a"] + line[i+32+j:]
		st, err := e.ingest(t, "a", line)
		if err != nil {
			t.Fatalf("note %d: %v", n+1, err)
		}
		att := attachmentOf(t, st.Body)
		c, err := e.svc.Content(t.Context(), strings.TrimPrefix(att.URL, base+"/Binary/"))
		if err != nil {
			t.Fatal(err)
		}
		want := decode(t, in.Content[0].Attachment.Data)
		if c.Key != documents.KeyOf(want) || c.Size != int64(len(want)) || c.ContentType != "text/plain; charset=utf-8" {
			t.Errorf("note %d: content %+v", n+1, c)
		}
		var status, typ string
		if err := e.pool.QueryRow(t.Context(), `SELECT status, type_code FROM documents_metadata WHERE id = $1`, st.ID).Scan(&status, &typ); err != nil {
			t.Fatal(err)
		}
		if status != in.Status || typ != in.Type.Coding[0].Code {
			t.Errorf("note %d: metadata status %q type %q, sent %q %q", n+1, status, typ, in.Status, in.Type.Coding[0].Code)
		}
		if status == "superseded" {
			superseded++
		}
		n++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n < limit {
		t.Fatalf("only %d notes in %s", n, path)
	}
	if dangling, err := e.svc.DanglingReferences(t.Context()); err != nil || dangling != 0 {
		t.Errorf("dangling = %d, %v", dangling, err)
	}
	t.Logf("%d Synthea notes stored (%d superseded by the sender)", n, superseded)
}

func decode(t *testing.T, s string) []byte {
	t.Helper()
	var b []byte
	if err := json.Unmarshal([]byte(`"`+s+`"`), &b); err != nil { // []byte decodes base64
		t.Fatal(err)
	}
	return b
}
