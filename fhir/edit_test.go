package fhir

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/concord-hie/concord/internal/errs"
)

func TestStamp(t *testing.T) {
	in := `{"resourceType":"Patient","meta":{"profile":["http://p"],"tag":[{"system":"s","code":"a"}],"security":[{"system":"x","code":"client"}]},"name":[{"family":"A\u00e9<>"}],"gender":"female"}`
	r := MustParse([]byte(in))
	at := time.Date(2026, 1, 2, 3, 4, 5, 600e6, time.FixedZone("", 3600))
	out, err := r.Stamp(Stamp{
		ID: "p1", VersionID: "2", LastUpdated: at, Source: "urn:member:a",
		AddTags:  []Coding{{System: "s", Code: "a"}, {System: "urn:concord:member", Code: "A"}},
		Security: []Coding{{System: "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", Code: "R"}}, ReplaceSecurity: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"resourceType":"Patient","id":"p1","meta":{"profile":["http://p"],"tag":[{"system":"s","code":"a"},{"system":"urn:concord:member","code":"A"}],"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"R"}],"versionId":"2","lastUpdated":"2026-01-02T02:04:05.600Z","source":"urn:member:a"},"name":[{"family":"A\u00e9<>"}],"gender":"female"}`
	if got := string(out.Bytes()); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if out.ID != "p1" || out.Meta.VersionID != "2" || out.Meta.Source != "urn:member:a" || len(out.Meta.Tag) != 2 {
		t.Errorf("facts not updated: %+v", out)
	}
	if string(r.Bytes()) != in {
		t.Error("Stamp modified its receiver")
	}

	// no meta yet, id replaced in place
	r2 := MustParse([]byte(`{"resourceType":"Observation","id":"client","status":"final","code":{"text":"x"}}`))
	out2, err := r2.Stamp(Stamp{ID: "srv", VersionID: "1"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(out2.Bytes()), `{"resourceType":"Observation","id":"srv","meta":{"versionId":"1"},"status":"final","code":{"text":"x"}}`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	// drop client security labels
	out3, err := r.Stamp(Stamp{ReplaceSecurity: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(out3.Meta.Security) != 0 || strings.Contains(string(out3.Bytes()), "client") {
		t.Errorf("security not dropped: %s", out3.Bytes())
	}
	if _, err := r.Stamp(Stamp{ID: "bad/id"}); errs.CodeOf(err) != errs.Invalid {
		t.Errorf("bad id: err = %v", err)
	}
}

func TestParseReference(t *testing.T) {
	tests := []struct {
		in   string
		want Reference
		err  bool
	}{
		{in: "Patient/123", want: Reference{Kind: RefRelative, Type: "Patient", ID: "123"}},
		{in: "Patient/123/_history/2", want: Reference{Kind: RefRelative, Type: "Patient", ID: "123", Version: "2"}},
		{in: "https://ex.org/fhir/r4/Patient/123", want: Reference{Kind: RefAbsolute, Base: "https://ex.org/fhir/r4", Type: "Patient", ID: "123"}},
		{in: "http://ex.org/Observation/a.b/_history/7", want: Reference{Kind: RefAbsolute, Base: "http://ex.org", Type: "Observation", ID: "a.b", Version: "7"}},
		{in: "urn:uuid:6E2BD0D2-6C2C-4F2B-9B1A-2D1E0C7A1F00", want: Reference{Kind: RefURN, URN: "urn:uuid:6e2bd0d2-6c2c-4f2b-9b1a-2d1e0c7a1f00"}},
		{in: "urn:oid:1.2.840.113619", want: Reference{Kind: RefURN, URN: "urn:oid:1.2.840.113619"}},
		{in: "#med1", want: Reference{Kind: RefContained, ID: "med1"}},
		{in: "Patient?identifier=http://sys|val", want: Reference{Kind: RefConditional, Type: "Patient", Query: map[string][]string{"identifier": {"http://sys|val"}}, RawQuery: "identifier=http://sys|val"}},
		{in: "", err: true},
		{in: "Patient", err: true},
		{in: "Patient/", err: true},
		{in: "Foo/1", err: true},
		{in: "Patient/1/2", err: true},
		{in: "Patient/a_b", err: true},
		{in: "Patient/1/_history/", err: true},
		{in: "urn:uuid:nope", err: true},
		{in: "urn:oid:1..2", err: true},
		{in: "Bogus?x=1", err: true},
		{in: "ftp://ex.org/Patient/1", err: true},
		{in: "https://ex.org/1", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseReference(tt.in)
			if tt.err {
				if errs.CodeOf(err) != errs.Invalid {
					t.Fatalf("got %+v, %v; want invalid", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if tt.want.Kind != RefURN && got.String() != tt.in {
				t.Errorf("String() = %q", got.String())
			}
		})
	}
}

func TestRewriteReferences(t *testing.T) {
	in := `{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:1","resource":{"resourceType":"DetectedIssue","status":"final","reference":"urn:uuid:1","patient":{"reference":"urn:uuid:1"},"extension":[{"url":"http://x","valueReference":{"reference":"urn:uuid:2"}}],"contained":[{"resourceType":"Provenance","target":[{"reference":"urn:uuid:2"}],"recorded":"2020-01-01T00:00:00Z","agent":[{"who":{"display":"x"}}]}]},"request":{"method":"POST","url":"DetectedIssue"}}]}`
	r := MustParse([]byte(in))
	if got, want := References(r), []string{"urn:uuid:1", "urn:uuid:2", "urn:uuid:2"}; !reflect.DeepEqual(got, want) {
		t.Errorf("References = %v, want %v (the uri element DetectedIssue.reference must not count)", got, want)
	}
	out, err := RewriteReferences(r, func(s string) (string, error) {
		return strings.Replace(s, "urn:uuid:", "Patient/", 1), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := strings.NewReplacer(`"reference":"urn:uuid:1"}`, `"reference":"Patient/1"}`, `"reference":"urn:uuid:2"}`, `"reference":"Patient/2"}`).Replace(in)
	if string(out.Bytes()) != want {
		t.Errorf("got  %s\nwant %s", out.Bytes(), want)
	}
	same, err := RewriteReferences(r, func(s string) (string, error) { return s, nil })
	if err != nil || same != r {
		t.Errorf("identity rewrite: %v, same=%v", err, same == r)
	}
	boom := errs.E("test", errs.Invalid, "unresolvable")
	if _, err := RewriteReferences(r, func(string) (string, error) { return "", boom }); err != boom {
		t.Errorf("err = %v, want the callback's", err)
	}
}

// TestRewriteAttachmentURN: an Attachment.url naming a Bundle entry (urn:uuid) is rewritten
// like a reference; an ordinary URL in the same place, and uri elements elsewhere, are not
// offered to fn at all.
func TestRewriteAttachmentURN(t *testing.T) {
	in := `{"resourceType":"DocumentReference","status":"current","content":[{"attachment":{"contentType":"text/plain","url":"urn:uuid:b1"}},{"attachment":{"url":"https://docs.example.org/a.pdf"}}],"extension":[{"url":"urn:uuid:b1","valueString":"x"}]}`
	var seen []string
	out, err := RewriteReferences(MustParse([]byte(in)), func(s string) (string, error) {
		seen = append(seen, s)
		return "Binary/42", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(seen, []string{"urn:uuid:b1"}) {
		t.Errorf("fn saw %v, want only the attachment's urn", seen)
	}
	if want := strings.Replace(in, `"url":"urn:uuid:b1"}`, `"url":"Binary/42"}`, 1); string(out.Bytes()) != want {
		t.Errorf("got  %s\nwant %s", out.Bytes(), want)
	}
}

func TestSyntheaBundleReferences(t *testing.T) {
	dir := sharedData(t, "synthea", "bundles")
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) == 0 {
		t.Skip("no Synthea bundles")
	}
	if testing.Short() && len(files) > 5 {
		files = files[:5]
	}
	for _, f := range files {
		t.Run(filepath.Base(f)[:8], func(t *testing.T) { checkBundleReferences(t, f) })
	}
}

// checkBundleReferences resolves every urn:uuid reference of a Synthea transaction to the
// entry with that fullUrl, as the exchange does, and checks the result.
func checkBundleReferences(t *testing.T, file string) {
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	bn, err := ParseBundle(MustParse(b))
	if err != nil {
		t.Fatal(err)
	}
	if bn.Type != "transaction" || len(bn.Entries) == 0 {
		t.Fatalf("type %s, %d entries", bn.Type, len(bn.Entries))
	}
	// Resolve urn:uuid fullUrls to server ids, as a transaction does.
	ids := map[string]string{}
	for i, e := range bn.Entries {
		if e.Request.Method != "POST" && e.Request.Method != "PUT" {
			t.Errorf("entry %d: method %s", i, e.Request.Method)
		}
		if strings.HasPrefix(e.FullURL, "urn:uuid:") {
			ids[e.FullURL] = e.Resource.ResourceType + "/srv" + e.FullURL[len(e.FullURL)-8:]
		}
	}
	var unresolved, resolved int
	for _, e := range bn.Entries {
		out, err := RewriteReferences(e.Resource, func(s string) (string, error) {
			if v, ok := ids[s]; ok {
				resolved++
				return v, nil
			}
			if strings.HasPrefix(s, "urn:uuid:") {
				unresolved++
			}
			return s, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, ref := range References(out) {
			if _, err := ParseReference(ref); err != nil {
				t.Errorf("%s: reference does not parse after rewrite (%v)", e.Resource.ResourceType, err)
			}
		}
		// Once resolved, clinical resources index their patient.
		switch rt := out.ResourceType; rt {
		case "Observation", "Condition", "Encounter", "Procedure", "Immunization", "MedicationRequest", "DiagnosticReport":
			if len(rows(Extract(out), "patient")) != 1 {
				t.Errorf("%s: want one patient row after resolution", rt)
			}
		}
	}
	if resolved == 0 || unresolved != 0 {
		t.Errorf("resolved %d, unresolved urn:uuid %d", resolved, unresolved)
	}
}

func TestParseBundleRequiresRequest(t *testing.T) {
	_, err := ParseBundle(MustParse([]byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient"}}]}`)))
	if errs.CodeOf(err) != errs.Invalid || errs.PathOf(err) != "Bundle.entry[0].request" {
		t.Errorf("err = %v, path %q", err, errs.PathOf(err))
	}
	if _, err := ParseBundle(MustParse([]byte(`{"resourceType":"Patient"}`))); errs.CodeOf(err) != errs.Invalid {
		t.Errorf("non-bundle: %v", err)
	}
}

func TestWriters(t *testing.T) {
	p := MustParse([]byte(`{"resourceType":"Patient","id":"1"}`))
	total := 1
	score := 0.9
	ss, err := SearchSet{ID: "s", Total: &total, Links: []Link{{"self", "https://x/fhir/Patient?_count=1&a=<b>"}},
		Entries: []SearchEntry{{FullURL: "https://x/fhir/Patient/1", Resource: p, Mode: "match", Score: &score}}}.JSON()
	if err != nil {
		t.Fatal(err)
	}
	r, err := Parse(ss)
	if err != nil {
		t.Fatalf("searchset does not validate: %v (%s)", err, errs.PathOf(err))
	}
	bn, err := ParseBundle(r)
	if err != nil || bn.Type != "searchset" || len(bn.Entries) != 1 || bn.Entries[0].Resource.ID != "1" {
		t.Fatalf("searchset round trip: %v %+v", err, bn)
	}
	if !strings.Contains(string(ss), "a=<b>") {
		t.Error("HTML escaping applied to link URL")
	}

	oo := OperationOutcome(IssueFor(&errs.Error{Code: errs.Invalid, Msg: "unknown element", Path: "Patient.foo"}))
	rb, err := ResponseBundle("t", true, []ResponseEntry{
		{Response: EntryResponse{Status: "201 Created", Location: "Patient/1/_history/1", Etag: `W/"1"`}},
		{Response: EntryResponse{Status: "400 Bad Request", Outcome: oo}},
	})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := Parse(rb)
	if err != nil {
		t.Fatalf("transaction-response does not validate: %v (%s)", err, errs.PathOf(err))
	}
	var got struct {
		Type  string
		Entry []struct {
			Response struct {
				Status  string
				Outcome struct {
					Issue []Issue
				}
			}
		}
	}
	if err := json.Unmarshal(r2.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Type != "transaction-response" || got.Entry[1].Response.Outcome.Issue[0].Code != IssueInvalid ||
		got.Entry[1].Response.Outcome.Issue[0].Expression[0] != "Patient.foo" {
		t.Errorf("got %+v", got)
	}
	if _, err := Parse(OperationOutcome()); err != nil {
		t.Errorf("empty OperationOutcome invalid: %v", err)
	}
}
