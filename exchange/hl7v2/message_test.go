package hl7v2

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/concord-hie/concord/internal/errs"
)

const sampleADT = "MSH|^~\\&|EHR|CLINIC_A|CONCORD|HIE|20240102030405+0100||ADT^A01^ADT_A01|MSG0001|P|2.5.1\r" +
	"EVN|A01|20240102030405\r" +
	"PID|1||12345^^^&1.2.3.4&ISO^MR~999-88-7777^^^SSA^SS||Doe^Jane^Q^^Dr^^L~Roe^Jane^^^^^M||19800214|F|||1 Main St^Apt 2^Springfield^IL^62701^USA^H||^PRN^PH^^^217^5551234~^NET^Internet^jane@example.org|^WPN^PH^^^217^5559999|||||123-45-6789\r" +
	"PV1|1|I|W1^101^A^CLINIC_A||||||||||||||||V123^^^CLINIC_A^VN|||||||||||||||||||||||||20240102030000|20240105120000\r"

func TestParseAccess(t *testing.T) {
	m, err := Parse([]byte(sampleADT))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ loc, want string }{
		{"MSH-1", "|"},
		{"MSH-2", "^~\\&"},
		{"MSH-3", "EHR"},
		{"MSH-9", "ADT^A01^ADT_A01"},
		{"MSH-9.2", "A01"},
		{"MSH-10", "MSG0001"},
		{"MSH-12", "2.5.1"},
		{"PID-3[1].1", "12345"},
		{"PID-3[1].4.2", "1.2.3.4"},
		{"PID-3[2].5", "SS"},
		{"PID-3[3].1", ""},
		{"PID-5[2].1", "Roe"},
		{"PID-7", "19800214"},
		{"PV1-19.1", "V123"},
		{"PV1-44", "20240102030000"},
		{"ZZZ-1", ""},
		{"PID[2]-1", ""},
		{"bad", ""},
	}
	for _, tt := range tests {
		if got := m.Get(tt.loc); got != tt.want {
			t.Errorf("Get(%q) = %q, want %q", tt.loc, got, tt.want)
		}
	}
	pid, _ := m.Segment("PID")
	if got := pid.Field(3).Reps(); got != 2 {
		t.Errorf("PID-3 reps = %d", got)
	}
	if got := pid.Field(5).Rep(1).Comp(5).Sub(1).String(); got != "Dr" {
		t.Errorf("PID-5.5 = %q", got)
	}
}

// TestExplicitNull: the HL7 null `""` (a field, repetition, component or subcomponent
// holding exactly two double quotes) is told from an absent or empty element by IsNull
// alone: Empty is false for it, String returns it as sent, and Value, as read for data,
// gives "" exactly as for an absent element. `""` inside a longer value, or escaped, is
// text.
func TestExplicitNull(t *testing.T) {
	m, err := Parse([]byte("MSH|^~\\&|EHR|CLINIC_A|CONCORD|HIE|20240301||MDM^T04|1|P|2.5.1\r" +
		`TXA|1|""||""^Restricted|""~R|x^""&y|""""|say ""hi""|\X22\\X22\||a^^c` + "\r"))
	if err != nil {
		t.Fatal(err)
	}
	txa, _ := m.Segment("TXA")
	tests := []struct {
		name        string
		f           Field
		empty, null bool
		str, value  string
	}{
		{"field", txa.Field(2), false, true, `""`, ""},
		{"empty field", txa.Field(3), true, false, "", ""},
		{"field past the end", txa.Field(30), true, false, "", ""},
		{"component", txa.Field(4).Comp(1), false, true, `""`, ""},
		{"field with a null component", txa.Field(4), false, false, `""^Restricted`, `""^Restricted`},
		{"the component after it", txa.Field(4).Comp(2), false, false, "Restricted", "Restricted"},
		{"repetition", txa.Field(5).Rep(1), false, true, `""`, ""},
		{"field with a null repetition", txa.Field(5), false, false, `""~R`, `""~R`},
		{"the repetition after it", txa.Field(5).Rep(2), false, false, "R", "R"},
		{"subcomponent", txa.Field(6).Comp(2).Sub(1), false, true, `""`, ""},
		{"component with a null subcomponent", txa.Field(6).Comp(2), false, false, `""&y`, `""&y`},
		{"four quotes", txa.Field(7), false, false, `""""`, `""""`},
		{"quotes in text", txa.Field(8), false, false, `say ""hi""`, `say ""hi""`},
		{"escaped quotes", txa.Field(9), false, false, `""`, `""`},
		{"empty component", txa.Field(11).Comp(2), true, false, "", ""},
		{"component past the end", txa.Field(11).Comp(9), true, false, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.f.Empty(); got != tt.empty {
				t.Errorf("Empty = %v, want %v", got, tt.empty)
			}
			if got := tt.f.IsNull(); got != tt.null {
				t.Errorf("IsNull = %v, want %v", got, tt.null)
			}
			if got := tt.f.String(); got != tt.str {
				t.Errorf("String = %q, want %q", got, tt.str)
			}
			if got := tt.f.Value(); got != tt.value {
				t.Errorf("Value = %q, want %q", got, tt.value)
			}
		})
	}
	if got := m.Get("TXA-2"); got != `""` {
		t.Errorf(`Get("TXA-2") = %q, want the null as sent`, got)
	}
}

func TestEscapes(t *testing.T) {
	d := StandardDelimiters()
	tests := []struct{ raw, want string }{
		{`a\F\b\S\c\T\d\R\e\E\f`, "a|b^c&d~e\\f"},
		{`line1\.br\line2`, "line1\nline2"},
		{`\X41424344\`, "ABCD"},
		{`\H\bold\N\`, "bold"},
		{`trailing\`, `trailing\`},
		{`\Q\`, `\Q\`},
		// Only the exact forms of character-set switches and formatting commands carry no
		// text; anything else that merely starts like one is text.
		{`file C:\Main\report`, `file C:\Main\report`},
		{`\Ceftriaxone\ 1 g IV`, `\Ceftriaxone\ 1 g IV`},
		{`\Metoprolol\`, `\Metoprolol\`},
		{`a\C2842\b`, "ab"},
		{`a\c2d42\b`, `a\c2d42\b`},
		{`a\C284\b`, `a\C284\b`},
		{`a\C28421\b`, `a\C28421\b`},
		{`a\M242842\b`, "ab"},
		{`a\M2428\b`, `a\M2428\b`},
		{`a\Zlocal\b`, `a\Zlocal\b`},
		{`\Z\`, `\Z\`},
		{`a\.fi\b\.nf\c\.ce\d`, "abcd"},
		{`\.in+4\a\.ti-2\b\.sk+3\c\.in4\`, "abc"},
		{`\.sp\\.sp2\\.sp+1\`, "\n\n\n"},
		{`\.hidden\`, `\.hidden\`},
		{`\.spx\`, `\.spx\`},
		{`\.in+x\`, `\.in+x\`},
	}
	for _, tt := range tests {
		if got := d.Decode(tt.raw); got != tt.want {
			t.Errorf("Unescape(%q) = %q, want %q", tt.raw, got, tt.want)
		}
	}
	for _, v := range []string{"a|b^c&d~e\\f", "x\r\ny", "plain", "", "\\F\\"} {
		if got := d.Decode(d.Encode(v)); got != v {
			t.Errorf("round trip %q -> %q -> %q", v, d.Encode(v), got)
		}
	}
	d27 := d
	d27.Truncation = '#'
	if got := d27.Decode(d27.Encode("a#b")); got != "a#b" {
		t.Errorf("truncation round trip = %q", got)
	}
}

func TestParseSeparatorsAndBOM(t *testing.T) {
	base := strings.TrimSuffix(sampleADT, "\r")
	for name, in := range map[string]string{
		"CR":       base,
		"LF":       strings.ReplaceAll(base, "\r", "\n"),
		"CRLF":     strings.ReplaceAll(base, "\r", "\r\n") + "\r\n\r\n  \n",
		"BOM":      "\xef\xbb\xbf" + base + "\r\n",
		"batch":    "FHS|^~\\&|X\rBHS|^~\\&|X\r" + base,
		"trailing": base + "   \n\n\n",
	} {
		m, err := Parse([]byte(in))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(m.Segments) != 4 {
			t.Errorf("%s: %d segments", name, len(m.Segments))
		}
		if got := string(m.Bytes()); got != sampleADT {
			t.Errorf("%s: Bytes() = %q", name, got)
		}
	}
}

func TestCustomDelimiters(t *testing.T) {
	in := "MSH*:!$@#*APP*FAC*R*RF*20240101**ORU:R01*ID1*P*2.7\rOBX*1*ST*C:code*1*a$F$b$T$c$P$d:x@y!z\r"
	m, err := Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if m.Delims.Truncation != '#' {
		t.Errorf("truncation = %q", m.Delims.Truncation)
	}
	if got := m.Get("OBX-5"); got != "a*b@c#d:x@y!z" {
		t.Errorf("OBX-5 = %q", got)
	}
	if got := m.Get("OBX-5.1"); got != "a*b@c#d" {
		t.Errorf("OBX-5.1 = %q", got)
	}
	if got := m.Get("OBX-5.2.2"); got != "y" {
		t.Errorf("OBX-5.2.2 = %q", got)
	}
	if got := m.Get("OBX-5[2]"); got != "z" {
		t.Errorf("OBX-5[2] = %q", got)
	}
	if got := m.Get("MSH-9.2"); got != "R01" {
		t.Errorf("MSH-9.2 = %q", got)
	}
	if got := string(m.Bytes()); got != in {
		t.Errorf("round trip %q", got)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		code ErrCode
		loc  string
	}{
		{"empty", "", SegmentSequenceError, "MSH"},
		{"not MSH", "PID|1\r", SegmentSequenceError, "MSH"},
		{"no fields", "MSH|\n", RequiredFieldMissing, "MSH-2"},
		{"no MSH-2", "MSH||A|B|C|D|20240101||ADT^A01|1|P|2.5\r", RequiredFieldMissing, "MSH-2"},
		{"short MSH-2", "MSH|^~|A|B|C|D|20240101||ADT^A01|1|P|2.5\r", DataTypeError, "MSH-2"},
		{"dup delimiters", "MSH|^^\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\r", DataTypeError, "MSH-2"},
		{"NUL delimiter", "MSH|\x00~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\r", DataTypeError, "MSH-2"},
		{"NUL truncation", "MSH|^~\\&\x00|A|B|C|D|20240101||ADT^A01|1|P|2.5\r", DataTypeError, "MSH-2"},
		{"no MSH-9", "MSH|^~\\&|A|B|C|D|20240101|||1|P|2.5\r", RequiredFieldMissing, "MSH-9"},
		{"no MSH-10", "MSH|^~\\&|A|B|C|D|20240101||ADT^A01||P|2.5\r", RequiredFieldMissing, "MSH-10"},
		{"junk line", "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\rpanel AHIC^LN|x\r", SegmentSequenceError, "segment 2"},
		{"two MSH", "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\rMSH|^~\\&|A\r", SegmentSequenceError, "segment 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.in))
			if !errs.Is(err, errs.Invalid) {
				t.Fatalf("err = %v, want invalid", err)
			}
			p := ProblemOf(err)
			if p == nil || p.Code != tt.code || p.Loc != tt.loc {
				t.Fatalf("problem = %+v, want %d at %s", p, tt.code, tt.loc)
			}
			if errs.PathOf(err) != tt.loc {
				t.Errorf("path = %q", errs.PathOf(err))
			}
		})
	}
}

func TestSet(t *testing.T) {
	m := NewMessage(StandardDelimiters())
	m.AddSegment("MSH", "A", "B", "C", "D", "20240101", "", "ADT^A01", "1", "P", "2.5")
	m.AddSegment("PID", "1")
	for _, c := range []struct{ loc, v string }{
		{"PID-5[2].2", "Jo|hn"},
		{"PID-3.4.2", "1.2.3"},
		{"PID-3.1", "42"},
		{"PID-8", "M"},
		{"MSH-10", "X^1"},
	} {
		if err := m.Set(c.loc, c.v); err != nil {
			t.Fatalf("Set(%s): %v", c.loc, err)
		}
	}
	want := "PID|1||42^^^&1.2.3||~^Jo\\F\\hn|||M"
	if got := m.Segments[1].Raw(); got != want {
		t.Errorf("PID = %q, want %q", got, want)
	}
	m2, err := Parse(m.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if m2.Get("PID-5[2].2") != "Jo|hn" || m2.Get("MSH-10") != "X^1" || m2.Get("PID-3.4.2") != "1.2.3" {
		t.Errorf("reparse: %q %q", m2.Get("PID-5[2].2"), m2.Get("MSH-10"))
	}
	if err := m.Set("MSH-2", "x"); err == nil {
		t.Error("Set MSH-2 succeeded")
	}
	if err := m.Set("OBX-1", "x"); err == nil {
		t.Error("Set on a missing segment succeeded")
	}
}

// repoData returns ../shared/data/<parts> relative to the module root, or skips.
func repoData(tb testing.TB, parts ...string) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Skip("module root not found")
		}
		dir = parent
	}
	p := filepath.Join(append([]string{dir, "..", "shared", "data"}, parts...)...)
	if _, err := os.Stat(p); err != nil {
		tb.Skipf("test data %s missing: %v", p, err)
	}
	return p
}

// simhospital splits the Simulated Hospital file into messages.
func simhospital(tb testing.TB) [][]byte {
	tb.Helper()
	b, err := os.ReadFile(repoData(tb, "hl7v2", "simhospital", "messages.hl7"))
	if err != nil {
		tb.Fatal(err)
	}
	var out [][]byte
	for _, m := range bytes.Split(b, []byte("\n\n")) {
		if len(bytes.TrimSpace(m)) > 0 {
			out = append(out, m)
		}
	}
	return out
}

func TestParseCorpusRoundTrip(t *testing.T) {
	msgs := simhospital(t)
	if len(msgs) != 1013 {
		t.Fatalf("%d messages, want 1013", len(msgs))
	}
	for i, b := range msgs {
		m, err := Parse(b)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if got := string(m.Bytes()); got != string(b)+"\r" {
			t.Fatalf("message %d does not round-trip", i)
		}
		if m.Get("MSH-12") != "2.3" {
			t.Fatalf("message %d version %q", i, m.Get("MSH-12"))
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(sampleADT))
	f.Add([]byte("MSH*:!$@#*APP*FAC*R*RF*20240101**ORU:R01*ID1*P*2.7\rOBX*1*ST*C:code*1*a$F$b\r"))
	f.Add([]byte("MSH|^~\\&|A\r"))
	f.Add([]byte(`\X4\ \.br\ \E`))
	f.Add([]byte(sampleORU))
	for _, m := range Generate(3, 3) {
		f.Add(m)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			if ProblemOf(err) == nil {
				t.Fatalf("error without problem: %v", err)
			}
			return
		}
		for _, s := range m.Segments {
			for i := 0; i <= min(s.NumFields()+1, 40); i++ {
				f := s.Field(i)
				_ = f.Rep(2).Comp(2).Sub(2).String()
				_ = f.String()
			}
		}
		out := m.Bytes()
		m2, err := Parse(out)
		if err != nil {
			t.Fatalf("reparse: %v", err)
		}
		if !bytes.Equal(m2.Bytes(), out) {
			t.Fatalf("unstable: %q vs %q", m2.Bytes(), out)
		}
		if mapped, err := Map(m, MapOptions{}); err == nil {
			for _, r := range mapped.Resources {
				if _, err := r.JSON(); err != nil {
					t.Fatalf("JSON: %v", err)
				}
			}
		} else if ProblemOf(err) == nil {
			t.Fatalf("map error without problem: %v", err)
		}
	})
}
