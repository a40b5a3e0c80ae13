package hl7v2

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// mdm builds an MDM message of event ev with the given TXA and OBX segments.
func mdm(ev, txa string, obx ...string) string {
	s := "MSH|^~\\&|EHR|CLINIC_A^1.2.3^ISO|CONCORD|HIE|20240301101500||MDM^" + ev + "^MDM_T02|DOC1|P|2.5.1\r" +
		"EVN|" + ev + "|20240301101500\r" +
		"PID|1||555^^^CLINIC_A&1.2.3&ISO^MR||Smith^Ann||19700101|F\r" +
		"PV1|1|O|||||||||||||||||V77^^^CLINIC_A&1.2.3&ISO^VN\r"
	if txa != "" {
		s += txa + "\r"
	}
	for _, o := range obx {
		s += o + "\r"
	}
	return s
}

const txaT02 = "TXA|1|PR|TX|20240301093000|C001^Forster^Richard^^^Dr|20240301100000||||||DOC-77^EHR^1.2.3.4^ISO|||||AU|R"

func TestMapMDMT02(t *testing.T) {
	out := mustMap(t, mdm("T02", txaT02,
		"OBX|1|TX|||Patient seen \\T\\ examined.",
		"OBX|2|TX|||",
		"OBX|3|FT|||Plan:\\.br\\rest \\F\\ fluids~follow up",
		"OBX|4|ST|||Done"))
	d := out.Document
	if d == nil || d.Action != DocumentNew || d.Resource != 1 || len(out.Resources) != 2 {
		t.Fatalf("document %+v, %d resources", d, len(out.Resources))
	}
	if d.Number.Value != "DOC-77" || d.NumberSystem != "urn:oid:1.2.3.4" || d.NumberLoc != "TXA-12" || d.Parent != nil {
		t.Errorf("number %+v in %s (%s), parent %v", d.Number, d.NumberSystem, d.NumberLoc, d.Parent)
	}
	if d.Visit == nil || d.Visit.Value != "V77" {
		t.Errorf("visit %+v", d.Visit)
	}
	r := out.Resources[d.Resource]
	doc := r.DocumentReference
	if r.Kind != KindDocumentReference || doc.Subject == nil || doc.Subject.Reference != out.Resources[0].FullURL {
		t.Fatalf("resource %s, subject %+v", r.Kind, doc.Subject)
	}
	wantText := "Patient seen & examined.\n\nPlan:\nrest | fluids\nfollow up\nDone\n"
	if len(doc.Content) != 1 || doc.Content[0].Attachment.ContentType != "text/plain; charset=utf-8" || string(doc.Content[0].Attachment.Data) != wantText {
		t.Errorf("content %+v, want %q", doc.Content, wantText)
	}
	v := jsonOf(t, r)
	b, _ := json.Marshal(v)
	for _, want := range []string{
		`"type":{"coding":[{"code":"11506-3","display":"Progress note","system":"http://loinc.org"},{"code":"PR","display":"Progress note","system":"http://terminology.hl7.org/CodeSystem/v2-0270"}]}`,
		`"category":[{"coding":[{"code":"clinical-note","display":"Clinical Note","system":"http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category"}]}]`,
		`"docStatus":"final"`, `"status":"current"`,
		`"date":"2024-03-01T10:00:00+01:00"`, `"context":{"period":{"start":"2024-03-01T09:30:00+01:00"}}`,
		`"author":[{"display":"Dr Richard Forster"}]`,
		`"identifier":[{"system":"urn:oid:1.2.3.4","value":"DOC-77"}]`,
		`"meta":{"security":[{"code":"R","system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality"}]}`,
		`"data":"` + base64.StdEncoding.EncodeToString([]byte(wantText)) + `"`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("missing %s in\n%s", want, b)
		}
	}
}

func TestMapMDMTypesAndNumbers(t *testing.T) {
	// Codings as code|system, with the systems shortened: LN (LOINC), 0270 (table 0270),
	// none (no system).
	for _, tt := range []struct {
		name, txa2, wantCodes string
	}{
		{"procedure note is not a progress note", "PN", "28570-0|LN PN|0270"},
		{"discharge summary", "DS", "18842-5|LN DS|0270"},
		{"no certain LOINC", "CD", "CD|0270"},
		{"local code", "ZZ^Wound care note", "ZZ|none"},
		{"CWE in LOINC", "34109-9^Note^LN", "34109-9|LN"},
		// Table 0270 only with no coding system or HL70270; a named local system is kept
		// as sent, without LOINC.
		{"table 0270 named", "PR^Progress note^HL70270", "11506-3|LN PR|0270"},
		{"local system", "PR^Progress note^99LOCAL", "PR|none"},
		{"local system, a table 0270 code", "DS^Day surgery^99LOCAL", "DS|none"},
		// Table 0270 is user-defined: a text that contradicts its meaning gets no LOINC.
		{"PN sent as a progress note", "PN^Progress Note", "PN|0270"},
		{"PN sent as a procedure note", "PN^Procedure Note", "28570-0|LN PN|0270"},
		{"PR sent as a physician note", "PR^Physician Note^HL70270", "PR|0270"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			txa := strings.Replace(txaT02, "|PR|", "|"+tt.txa2+"|", 1)
			doc := mustMap(t, mdm("T02", txa, "OBX|1|TX|||x")).Resources[1].DocumentReference
			short := map[string]string{"http://loinc.org": "LN", systemDocumentType: "0270", "": "none"}
			var got []string
			for _, c := range doc.Type.Coding {
				got = append(got, c.Code+"|"+short[c.System])
			}
			if strings.Join(got, " ") != tt.wantCodes {
				t.Errorf("codes %v, want %s", got, tt.wantCodes)
			}
			if parts := strings.Split(tt.txa2, "^"); len(parts) > 1 && doc.Type.Text != parts[1] {
				t.Errorf("text %q, want %q", doc.Type.Text, parts[1])
			}
		})
	}
	// A number with no authority is the sending facility's.
	out := mustMap(t, mdm("T02", strings.Replace(txaT02, "DOC-77^EHR^1.2.3.4^ISO", "DOC-78", 1), "OBX|1|TX|||x"))
	if d := out.Document; d.NumberLoc != "MSH-4" || d.NumberSystem != "urn:oid:1.2.3" {
		t.Errorf("number %s in %s", d.NumberLoc, d.NumberSystem)
	}
}

func TestMapMDMReplaceCancelAndEncapsulated(t *testing.T) {
	txa10 := strings.Replace(txaT02, "DOC-77^EHR^1.2.3.4^ISO|", "DOC-79^EHR^1.2.3.4^ISO|DOC-77^EHR^1.2.3.4^ISO", 1)
	out := mustMap(t, mdm("T10", txa10, "OBX|1|TX|||corrected"))
	if d := out.Document; d.Action != DocumentReplace || d.Parent == nil || d.Parent.Value != "DOC-77" || d.ParentSystem != "urn:oid:1.2.3.4" || d.Number.Value != "DOC-79" {
		t.Errorf("T10 document %+v", d)
	}
	out = mustMap(t, mdm("T11", txaT02))
	if d := out.Document; d.Action != DocumentCancel || d.Resource != -1 || len(out.Resources) != 1 {
		t.Errorf("T11 document %+v, %d resources", d, len(out.Resources))
	}
	pdf := []byte("%PDF-1.4 a tiny document")
	ed := "^application^pdf^Base64^" + base64.StdEncoding.EncodeToString(pdf)
	out = mustMap(t, mdm("T02", txaT02, "OBX|1|TX|||", "OBX|2|ED|||"+ed))
	doc := out.Resources[1].DocumentReference
	if len(doc.Content) != 1 || doc.Content[0].Attachment.ContentType != "application/pdf" || string(doc.Content[0].Attachment.Data) != string(pdf) ||
		out.Document.ContentLoc[0] != "OBX[2]-5" {
		t.Errorf("ED content %+v at %v", doc.Content, out.Document.ContentLoc)
	}

	// Nothing is dropped: text next to an encapsulated document, and a second
	// encapsulated value, are refused at the OBX that adds it.
	for _, tt := range []struct {
		name string
		obx  []string
		loc  string
	}{
		{"text, then ED", []string{"OBX|1|TX|||a rendering", "OBX|2|ED|||" + ed}, "OBX[2]-5"},
		{"ED, then text", []string{"OBX|1|ED|||" + ed, "OBX|2|FT|||a rendering"}, "OBX[2]-5"},
		{"two ED segments", []string{"OBX|1|ED|||" + ed, "OBX|2|ED|||" + ed}, "OBX[2]-5"},
		{"two ED repetitions", []string{"OBX|1|ED|||" + ed + "~" + ed}, "OBX-5"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse([]byte(mdm("T02", txaT02, tt.obx...)))
			if err != nil {
				t.Fatal(err)
			}
			_, err = Map(m, MapOptions{})
			p := ProblemOf(err)
			if p == nil || p.Code != DataTypeError || p.Loc != tt.loc {
				t.Fatalf("err %v, want 102 at %s", err, tt.loc)
			}
			if a := AckFromError(err); a.Code != AE || a.Text == "" {
				t.Errorf("ACK %s %q, want AE with a reason", a.Code, a.Text)
			}
		})
	}
}

func TestMapMDMErrors(t *testing.T) {
	for _, tt := range []struct {
		name, msg string
		code      ErrCode
		loc       string
	}{
		{"unsupported event", mdm("T01", txaT02), UnsupportedEventCode, "MSH-9"},
		{"no TXA", mdm("T02", "", "OBX|1|TX|||x"), SegmentSequenceError, "TXA"},
		{"no number", mdm("T02", strings.Replace(txaT02, "DOC-77^EHR^1.2.3.4^ISO", "", 1), "OBX|1|TX|||x"), RequiredFieldMissing, "TXA-12"},
		{"no type", mdm("T02", strings.Replace(txaT02, "|PR|", "||", 1), "OBX|1|TX|||x"), RequiredFieldMissing, "TXA-2"},
		{"no content", mdm("T02", txaT02, "OBX|1|TX|||", "OBX|2|TX|||  "), RequiredFieldMissing, "OBX"},
		{"no OBX", mdm("T02", txaT02), RequiredFieldMissing, "OBX"},
		{"numeric OBX", mdm("T02", txaT02, "OBX|1|NM|||5"), TableValueNotFound, "OBX-2"},
		{"bad status", mdm("T02", strings.Replace(txaT02, "|AU|", "|XX|", 1), "OBX|1|TX|||x"), TableValueNotFound, "TXA-17"},
		{"bad date", mdm("T02", strings.Replace(txaT02, "20240301093000", "20241301", 1), "OBX|1|TX|||x"), DataTypeError, "TXA-4"},
		{"T10 without parent", mdm("T10", txaT02, "OBX|1|TX|||x"), RequiredFieldMissing, "TXA-13"},
		{"ED not base64", mdm("T02", txaT02, "OBX|1|ED|||^AP^PDF^Base64^###"), DataTypeError, "OBX-5"},
		{"ED of unknown type", mdm("T02", txaT02, "OBX|1|ED|||^AP^WAV^Base64^AAAA"), TableValueNotFound, "OBX-5"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse([]byte(tt.msg))
			if err != nil {
				t.Fatal(err)
			}
			_, err = Map(m, MapOptions{})
			p := ProblemOf(err)
			if p == nil || p.Code != tt.code || p.Loc != tt.loc {
				t.Fatalf("err %v, want %d at %s", err, tt.code, tt.loc)
			}
			a := AckFromError(err)
			if want := AE; tt.code >= 200 {
				if a.Code != AR {
					t.Errorf("ACK %s, want AR", a.Code)
				}
			} else if a.Code != want {
				t.Errorf("ACK %s, want AE", a.Code)
			}
			if a.Text == "" || strings.Contains(a.Text, "Smith") {
				t.Errorf("ACK text %q", a.Text)
			}
		})
	}
}

func TestMapMDMCorpus(t *testing.T) {
	var n int
	for _, b := range simhospital(t) {
		if !strings.Contains(string(b), "MDM^T02") {
			continue
		}
		m, err := Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		out, err := Map(m, MapOptions{Location: time.UTC})
		if err != nil {
			t.Fatalf("corpus MDM: %v", err)
		}
		n++
		doc := out.Resources[out.Document.Resource].DocumentReference
		var lines []string
		for i := 1; m.Get("OBX["+itoa(i)+"]-1") != ""; i++ {
			lines = append(lines, m.Get("OBX["+itoa(i)+"]-5"))
		}
		if got := string(doc.Content[0].Attachment.Data); got != strings.Join(lines, "\n")+"\n" || len(lines) < 30 {
			t.Errorf("content of %d lines differs from the OBX text", len(lines))
		}
		if out.Document.NumberLoc != "MSH-4" || out.Document.NumberSystem != "SFAC" || doc.DocStatus != "final" || len(doc.Author) != 1 || doc.Date == "" {
			t.Errorf("document %+v: %+v", out.Document, doc)
		}
	}
	if n != 2 {
		t.Errorf("%d MDM^T02 in the corpus, want 2", n)
	}
}

// mapProblem maps msg, which must parse, and fails t unless Map refuses it with code at
// loc, saying text; it returns Map's error.
func mapProblem(t *testing.T, msg string, code ErrCode, loc, text string) error {
	t.Helper()
	m, err := Parse([]byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Map(m, MapOptions{})
	if p := ProblemOf(err); p == nil || p.Code != code || p.Loc != loc || p.Text != text {
		t.Fatalf("err %v, want %d at %s: %q", err, code, loc, text)
	}
	return err
}

func TestMapMDMAddendum(t *testing.T) {
	txa06 := strings.Replace(txaT02, "DOC-77^EHR^1.2.3.4^ISO|", "DOC-80^EHR^1.2.3.4^ISO|DOC-77", 1)
	out := mustMap(t, mdm("T06", txa06, "OBX|1|TX|||addendum"))
	d := out.Document
	if d.Action != DocumentAddendum || d.Number.Value != "DOC-80" || d.Parent == nil || d.Parent.Value != "DOC-77" ||
		d.ParentLoc != "MSH-4" || d.ParentSystem != "urn:oid:1.2.3" || d.Resource != 1 {
		t.Errorf("T06 document %+v", d)
	}
	if doc := out.Resources[1].DocumentReference; string(doc.Content[0].Attachment.Data) != "addendum\n" || doc.RelatesTo != nil {
		t.Errorf("T06 resource %+v", doc)
	}
	for _, tt := range []struct {
		name, msg string
		code      ErrCode
		loc, text string
	}{
		{"T06 without parent", mdm("T06", txaT02, "OBX|1|TX|||x"), RequiredFieldMissing, "TXA-13", "Parent document number missing"},
		{"T06 its own parent", mdm("T06", strings.Replace(txaT02, "DOC-77^EHR^1.2.3.4^ISO|", "DOC-77^EHR^1.2.3.4^ISO|DOC-77^EHR^1.2.3.4^ISO", 1), "OBX|1|TX|||x"),
			DataTypeError, "TXA-13", "An addendum needs its own unique document number"},
		{"T06 without content", mdm("T06", txa06), RequiredFieldMissing, "OBX", "No document content"},
	} {
		t.Run(tt.name, func(t *testing.T) { mapProblem(t, tt.msg, tt.code, tt.loc, tt.text) })
	}
}

func TestMapMDMStatusChange(t *testing.T) {
	// No resource to store: the document as it is now is in Change.
	txa04 := strings.Replace(txaT02, "|AU|R", "|LA|V||||C002^Signer^Sam^^^Dr", 1)
	out := mustMap(t, mdm("T04", txa04, "OBX|1|TX|||signed text"))
	d := out.Document
	if d.Action != DocumentStatusChange || d.Resource != -1 || len(out.Resources) != 1 || d.Parent != nil || d.Change == nil ||
		d.Number.Value != "DOC-77" || d.NumberSystem != "urn:oid:1.2.3.4" {
		t.Fatalf("T04 document %+v, %d resources", d, len(out.Resources))
	}
	c := d.Change
	if c.DocStatus != "final" || c.Authenticator == nil || c.Authenticator.Display != "Dr Sam Signer" ||
		c.Meta == nil || len(c.Meta.Security) != 1 || c.Meta.Security[0].Code != "V" ||
		string(c.Content[0].Attachment.Data) != "signed text\n" || d.ContentLoc[0] != "OBX" {
		t.Errorf("T04 change %+v", c)
	}
	for _, tt := range []struct {
		name, msg string
		code      ErrCode
		loc, text string
	}{
		{"T04 without status", mdm("T04", strings.Replace(txaT02, "|AU|", "||", 1), "OBX|1|TX|||x"), RequiredFieldMissing, "TXA-17", "Document completion status missing"},
		{"T04 without content", mdm("T04", txaT02), RequiredFieldMissing, "OBX", "No document content"},
		{"T04 canceled", mdm("T04", strings.Replace(txaT02, "|AU|", "|CA|", 1), "OBX|1|TX|||x"), TableValueNotFound, "TXA-17", "Send MDM^T11 to cancel a document"},
		{"T02 canceled", mdm("T02", strings.Replace(txaT02, "|AU|", "|CA|", 1), "OBX|1|TX|||x"), TableValueNotFound, "TXA-17", "Send MDM^T11 to cancel a document"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if a := AckFromError(mapProblem(t, tt.msg, tt.code, tt.loc, tt.text)); a.Code != AE {
				t.Errorf("ACK %s, want AE", a.Code)
			}
		})
	}
}

// txaWith is txaT02 with the fields in set (1-based) changed, and as many fields as it
// needs.
func txaWith(set map[int]string) string {
	f := strings.Split(txaT02, "|")
	for i, v := range set {
		for len(f) <= i {
			f = append(f, "")
		}
		f[i] = v
	}
	return strings.Join(f, "|")
}

// TestMapMDMStatusChangeNull: a T04 leaves the stored confidentiality (TXA-18) and
// authenticator (TXA-22) as they are when the field is empty, or has nothing the mapping
// reads (no code, no name); the HL7 null `""` removes them; a value sets them. `""` never
// becomes a label or a name.
func TestMapMDMStatusChangeNull(t *testing.T) {
	const signer = "C002^Signer^Sam^^^Dr"
	for _, tt := range []struct {
		name                 string
		txa18, txa22         string
		keepConf, keepAuth   bool
		label, authenticator string // "" for none in Change
	}{
		{"only the completion status", "", "", true, true, "", ""},
		{"values", "R", signer, false, false, "R", "Dr Sam Signer"},
		{"very restricted", "V", "", false, true, "V", ""},
		{"usual control", "U", "", false, true, "", ""},
		{"confidentiality null", `""`, "", false, true, "", ""},
		{"authenticator null", "", `""`, true, false, "", ""},
		{"both null", `""`, `""`, false, false, "", ""},
		{"confidentiality without a code", "^Restricted", "", true, true, "", ""},
		{"confidentiality with a null code", `""^Restricted`, "", true, true, "", ""},
		{"authenticator without a name", "", "C002", true, true, "", ""},
		{"authenticator with a null family name", "", `C002^""^Sam`, true, false, "", "Sam"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := mustMap(t, mdm("T04", txaWith(map[int]string{18: tt.txa18, 22: tt.txa22}), "OBX|1|TX|||x")).Document
			c := d.Change
			if d.KeepConfidentiality != tt.keepConf || d.KeepAuthenticator != tt.keepAuth {
				t.Errorf("keep confidentiality %v, authenticator %v; want %v, %v", d.KeepConfidentiality, d.KeepAuthenticator, tt.keepConf, tt.keepAuth)
			}
			label := ""
			if c.Meta != nil {
				if len(c.Meta.Security) != 1 || c.Meta.Security[0].System != systemConfidentiality {
					t.Fatalf("labels %+v", c.Meta.Security)
				}
				label = c.Meta.Security[0].Code
			}
			auth := ""
			if c.Authenticator != nil {
				auth = c.Authenticator.Display
			}
			if label != tt.label || auth != tt.authenticator {
				t.Errorf("label %q, authenticator %q; want %q, %q", label, auth, tt.label, tt.authenticator)
			}
		})
	}

	// The events that store a new document keep nothing from `""`: it means none.
	for _, ev := range []string{"T02", "T06", "T10"} {
		txa := txaWith(map[int]string{2: `PR^""`, 5: `""`, 13: "DOC-1", 18: `""`, 22: `""`})
		out := mustMap(t, mdm(ev, txa, "OBX|1|TX|||x"))
		d := out.Document
		doc := out.Resources[d.Resource].DocumentReference
		if d.KeepConfidentiality || d.KeepAuthenticator || d.Change != nil {
			t.Errorf("%s: keep confidentiality %v, authenticator %v, change %v", ev, d.KeepConfidentiality, d.KeepAuthenticator, d.Change)
		}
		if doc.Meta != nil || doc.Authenticator != nil || doc.Author != nil || doc.Type.Text != "" {
			t.Errorf("%s: meta %+v, authenticator %+v, author %+v, type text %q; want none", ev, doc.Meta, doc.Authenticator, doc.Author, doc.Type.Text)
		}
		if b, _ := out.Resources[d.Resource].JSON(); strings.Contains(string(b), `\"\"`) {
			t.Errorf("%s: the explicit null became a value: %s", ev, b)
		}
	}
}

// TestMapMDMParentConfidentiality: a T06 or T10 whose TXA-18 says nothing (empty, or
// without a code) keeps its parent's confidentiality (KeepConfidentiality, no label of its
// own); `""` and a value (U included) decide for it, as on a T02, which keeps nothing.
func TestMapMDMParentConfidentiality(t *testing.T) {
	for _, tt := range []struct {
		ev, txa18 string
		keep      bool
		label     string
	}{
		{"T06", "", true, ""},
		{"T10", "", true, ""},
		{"T06", "^Restricted", true, ""},
		{"T06", `""`, false, ""},
		{"T10", `""`, false, ""},
		{"T06", "U", false, ""},
		{"T10", "U", false, ""},
		{"T06", "V", false, "V"},
		{"T10", "R", false, "R"},
		{"T02", "", false, ""},
		{"T02", "V", false, "V"},
	} {
		t.Run(tt.ev+" "+tt.txa18, func(t *testing.T) {
			out := mustMap(t, mdm(tt.ev, txaWith(map[int]string{13: "DOC-1", 18: tt.txa18}), "OBX|1|TX|||x"))
			d := out.Document
			doc := out.Resources[d.Resource].DocumentReference
			label := ""
			if doc.Meta != nil {
				if len(doc.Meta.Security) != 1 || doc.Meta.Security[0].System != systemConfidentiality {
					t.Fatalf("labels %+v", doc.Meta.Security)
				}
				label = doc.Meta.Security[0].Code
			}
			if d.KeepConfidentiality != tt.keep || d.KeepAuthenticator || label != tt.label {
				t.Errorf("keep confidentiality %v, authenticator %v, label %q; want %v, false, %q", d.KeepConfidentiality, d.KeepAuthenticator, label, tt.keep, tt.label)
			}
		})
	}
}

// TestMapMDMUnsupportedEvents: the events without content, and edits in place, stay
// unsupported (AR 201).
func TestMapMDMUnsupportedEvents(t *testing.T) {
	txa := strings.Replace(txaT02, "DOC-77^EHR^1.2.3.4^ISO|", "DOC-80^EHR^1.2.3.4^ISO|DOC-77", 1)
	for _, ev := range []string{"T01", "T03", "T05", "T07", "T08", "T09"} {
		m, err := Parse([]byte(mdm(ev, txa, "OBX|1|TX|||x")))
		if err != nil {
			t.Fatal(err)
		}
		_, err = Map(m, MapOptions{})
		if p := ProblemOf(err); p == nil || p.Code != UnsupportedEventCode || p.Loc != "MSH-9" || p.Text != mdmUnsupportedEventMsg {
			t.Errorf("%s: err %v, want 201 at MSH-9", ev, err)
		}
		if a := AckFromError(err); a.Code != AR {
			t.Errorf("%s: ACK %s, want AR", ev, a.Code)
		}
	}
}
