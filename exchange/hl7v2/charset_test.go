package hl7v2

import (
	"context"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/concord-hie/concord/internal/errs"
)

// withCharset returns sampleADT with MSH-18 set to cs and PID-5 replaced by pid5 (raw
// ER7, in whatever bytes the test wants).
func withCharset(cs, pid5 string) string {
	s := strings.Replace(sampleADT, "|P|2.5.1\r", "|P|2.5.1||||||"+cs+"\r", 1)
	return strings.Replace(s, "Doe^Jane^Q^^Dr^^L~Roe^Jane^^^^^M", pid5, 1)
}

func TestParseCharset(t *testing.T) {
	tests := []struct {
		name, cs, pid5 string
		family, given  string
		code           ErrCode
		loc, text      string
	}{
		{name: "8859/1 bytes", cs: "8859/1", pid5: "M\xfcller^J\xf6rg", family: "Müller", given: "Jörg"},
		{name: "8859/1 hex escape", cs: "8859/1", pid5: `M\XFC\ller^J\XF6\rg`, family: "Müller", given: "Jörg"},
		{name: "8859/1 NBSP and y-umlaut", cs: "8859/1", pid5: "A\xa0B^\xff", family: "A\u00a0B", given: "ÿ"},
		{name: "UTF-8 declared", cs: "UNICODE UTF-8", pid5: "Müller^Jörg", family: "Müller", given: "Jörg"},
		{name: "no MSH-18 is UTF-8", cs: "", pid5: "Müller^Jörg", family: "Müller", given: "Jörg"},
		{name: "ASCII is read as UTF-8", cs: "ASCII", pid5: "Müller^Jörg", family: "Müller", given: "Jörg"},
		{name: "UTF-8 hex escape", cs: "", pid5: `M\XC3BC\ller^J\XC3\\XB6\rg`, family: "Müller", given: "Jörg"},
		{name: "tab, CR and LF are text", cs: "", pid5: "A\tB^\\X0D0A\\x\\.br\\y", family: "A\tB", given: "\r\nx\ny"},

		{name: "Latin-1 bytes in a UTF-8 message", cs: "", pid5: "M\xfcller^J\xf6rg", code: DataTypeError, loc: "PID-5", text: badCharset},
		{name: "Latin-1 bytes declared UTF-8", cs: "UNICODE UTF-8", pid5: "M\xfcller", code: DataTypeError, loc: "PID-5", text: badCharset},
		{name: "Latin-1 hex escape in a UTF-8 message", cs: "", pid5: `M\XFC\ller`, code: DataTypeError, loc: "PID-5", text: badCharset},
		{name: "truncated UTF-8 escape", cs: "", pid5: `M\XC3\ller`, code: DataTypeError, loc: "PID-5", text: badCharset},
		{name: "unsupported 8859/15", cs: "8859/15", pid5: "Muller", code: DataTypeError, loc: "MSH-18", text: unsupportedCharset},
		{name: "unsupported UTF-16", cs: "UNICODE UTF-16", pid5: "Muller", code: DataTypeError, loc: "MSH-18", text: unsupportedCharset},
		{name: "not a table 0211 value", cs: "windows-1252", pid5: "Muller", code: DataTypeError, loc: "MSH-18", text: unsupportedCharset},
		// Spellings engines send instead of table 0211's names.
		{name: "UTF-8 spelled as such", cs: "UTF-8", pid5: "Müller^Jörg", family: "Müller", given: "Jörg"},
		{name: "bare UNICODE, 8-bit text", cs: "UNICODE", pid5: "Müller^Jörg", family: "Müller", given: "Jörg"},
		{name: "ISO-8859-1 spelled as such", cs: "ISO-8859-1", pid5: "M\xfcller^J\xf6rg", family: "Müller", given: "Jörg"},
		{name: "latin1", cs: "latin1", pid5: "M\xfcller^J\xf6rg", family: "Müller", given: "Jörg"},
		{name: "NUL escape", cs: "", pid5: `Mul\X00\ler`, code: DataTypeError, loc: "PID-5", text: badControl},
		{name: "NUL escape in 8859/1", cs: "8859/1", pid5: `Mul\X00\ler`, code: DataTypeError, loc: "PID-5", text: badControl},
		{name: "NUL byte", cs: "", pid5: "Mul\x00ler", code: DataTypeError, loc: "PID-5", text: badControl},
		{name: "ESC escape", cs: "", pid5: `\X1B\[2J`, code: DataTypeError, loc: "PID-5", text: badControl},
		{name: "DEL", cs: "", pid5: "Mul\x7fler", code: DataTypeError, loc: "PID-5", text: badControl},
		{name: "C1 control in UTF-8", cs: "", pid5: "Mul\u0085ler", code: DataTypeError, loc: "PID-5", text: badControl},
		{name: "C1 control in 8859/1", cs: "8859/1", pid5: "O\x92Brien", code: DataTypeError, loc: "PID-5", text: badControl},
		// Escape sequences pair up differently in a field and in its components: each
		// level is checked as it would be read.
		{name: "NUL only in a component", cs: "", pid5: `x\^\X00\`, code: DataTypeError, loc: "PID-5", text: badControl},
		{name: "NUL only in the whole field", cs: "", pid5: `\x^y\\X00\`, code: DataTypeError, loc: "PID-5", text: badControl},
		{name: "NUL only in a subcomponent", cs: "", pid5: `a\&\X00\^b`, code: DataTypeError, loc: "PID-5", text: badControl},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := withCharset(tt.cs, tt.pid5)
			m, err := Parse([]byte(in))
			if tt.code != NoError {
				p := ProblemOf(err)
				if !errs.Is(err, errs.Invalid) || p == nil || p.Code != tt.code || p.Loc != tt.loc || p.Text != tt.text {
					t.Fatalf("Parse: %v, want %d at %s: %s", err, tt.code, tt.loc, tt.text)
				}
				a := AckFromError(err)
				if a.Code != AE || a.Err != tt.code || a.Loc != tt.loc {
					t.Errorf("ack %+v", a)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := m.Get("MSH-18"); got != tt.cs {
				t.Fatalf("MSH-18 = %q, want %q", got, tt.cs)
			}
			if got := m.Get("PID-5.1"); got != tt.family {
				t.Errorf("PID-5.1 = %q, want %q", got, tt.family)
			}
			if got := m.Get("PID-5.2"); got != tt.given {
				t.Errorf("PID-5.2 = %q, want %q", got, tt.given)
			}
			// The bytes are kept as sent, in the declared character set.
			if got := string(m.Bytes()); got != in {
				t.Errorf("Bytes() = %q, want the input", got)
			}
			out, err := Map(m, MapOptions{})
			if err != nil {
				t.Fatal(err)
			}
			b, err := out.Resources[0].JSON()
			if err != nil {
				t.Fatal(err)
			}
			if !utf8.Valid(b) || strings.ContainsRune(string(b), utf8.RuneError) {
				t.Errorf("Patient JSON is not clean UTF-8: %q", b)
			}
			p := out.Resources[0].Patient
			if len(p.Name) != 1 || p.Name[0].Family != tt.family || strings.Join(p.Name[0].Given, " ") != tt.given {
				t.Errorf("name %+v", p.Name)
			}
		})
	}
}

// TestCheckTextLocations checks the location named for text errors outside PID-5.
func TestCheckTextLocations(t *testing.T) {
	tests := []struct{ name, base, from, to, loc string }{
		{"second OBX", sampleORU, "<^10", `<^1\X00\0`, "OBX[2]-5"},
		{"OBX-3 subcomponent", sampleORU, "2823-3^Potassium^LN", "2823-3^Pot\x01assium^LN", "OBX-3"},
		{"MSH-10", sampleADT, "|MSG0001|", "|MSG\x00001|", "MSH-10"},
		{"MSH-3", sampleADT, "|EHR|", "|E\xffHR|", "MSH-3"},
		{"NTE", sampleORU, "hemolyzed", `hemo\X7F\lyzed`, "NTE-3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := strings.Replace(tt.base, tt.from, tt.to, 1)
			if in == tt.base {
				t.Fatal("replacement did not apply")
			}
			_, err := Parse([]byte(in))
			if p := ProblemOf(err); p == nil || p.Code != DataTypeError || p.Loc != tt.loc {
				t.Fatalf("Parse: %v, want 102 at %s", err, tt.loc)
			}
		})
	}
}

// TestMapChecksBuiltMessages: a message built in code is not parsed, so Map checks it.
func TestMapChecksBuiltMessages(t *testing.T) {
	m := mustParse(t, sampleADT)
	if err := m.Set("PID-5.1", "Mul\x00ler"); err != nil {
		t.Fatal(err)
	}
	_, err := Map(m, MapOptions{})
	if p := ProblemOf(err); p == nil || p.Code != DataTypeError || p.Loc != "PID-5" {
		t.Fatalf("Map: %v, want 102 at PID-5", err)
	}
}

func TestSetLatin1(t *testing.T) {
	m := mustParse(t, withCharset("8859/1", "Doe^Jane"))
	if err := m.Set("PID-5.1", "Müller"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(m.Bytes()), "|M\xfcller^Jane|") {
		t.Errorf("Bytes() = %q, want PID-5 in ISO 8859-1", m.Bytes())
	}
	if got := m.Get("PID-5.1"); got != "Müller" {
		t.Errorf("PID-5.1 = %q", got)
	}
	err := m.Set("PID-5.1", "Łukasz")
	if p := ProblemOf(err); p == nil || p.Code != DataTypeError {
		t.Errorf("Set of a character 8859/1 lacks: %v", err)
	}
	if got := m.Get("PID-5.1"); got != "Müller" {
		t.Errorf("PID-5.1 = %q after a refused Set", got)
	}
}

// TestHeaderCharset: the ACK of a message in ISO 8859-1, or of one that could not be
// read, is UTF-8.
func TestHeaderCharset(t *testing.T) {
	in := strings.Replace(withCharset("8859/1", "Doe^Jane"), "|CLINIC_A|", "|CLINIC_\xc4|", 1)
	m := mustParse(t, in)
	if got := m.Header().SendingFacility; got != "CLINIC_Ä" {
		t.Errorf("SendingFacility = %q", got)
	}
	if got := KeyOf(m).SendingFacility; got != "CLINIC_Ä" {
		t.Errorf("dedupe key facility = %q", got)
	}
	bad := strings.Replace(withCharset("UNICODE UTF-16", "Doe^Jane"), "|CLINIC_A|", "|CLINIC_\xc4|", 1)
	if _, err := Parse([]byte(bad)); ProblemOf(err) == nil || ProblemOf(err).Loc != "MSH-18" {
		t.Fatalf("Parse: %v", err)
	}
	h, ok := ReadHeader([]byte(bad))
	if !ok {
		t.Fatal("no header")
	}
	ack := BuildACK(h, Ack{Code: AE, Err: DataTypeError, Loc: "MSH-18"}, "A1", time.Unix(0, 0))
	if !utf8.Valid(ack) {
		t.Errorf("ACK is not UTF-8: %q", ack)
	}
	if a := mustParse(t, string(ack)); a.Get("MSA-2") != "MSG0001" || a.Get("ERR-2") != "MSH^1^18" {
		t.Errorf("ACK %q", ack)
	}
}

// TestServerCharsetErrors: over a real connection, a message the server cannot read as
// text gets AE 102 naming the field, never AA or AR.
func TestServerCharsetErrors(t *testing.T) {
	h := &mapHandler{t: t, kinds: map[string]int{}}
	addr := startServer(t, &Server{Handler: h})
	c := NewClient(dial(t, addr))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tests := []struct {
		name, msg, ack, err, loc string
	}{
		{"8859/1", withCharset("8859/1", "M\xfcller^J\xf6rg"), "AA", "", ""},
		{"invalid UTF-8", withCharset("", "M\xfcller^J\xf6rg"), "AE", "102", "PID^1^5"},
		{"NUL escape", withCharset("", `M\X00\`), "AE", "102", "PID^1^5"},
		{"unsupported charset", withCharset("ISO IR87", "Doe"), "AE", "102", "MSH^1^18"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ack, err := c.Send(ctx, []byte(tt.msg))
			if err != nil {
				t.Fatal(err)
			}
			if ack.Get("MSA-1") != tt.ack || ack.Get("ERR-3.1") != tt.err || ack.Get("ERR-2") != tt.loc {
				t.Errorf("ACK %s %s at %s, want %s %s at %s", ack.Get("MSA-1"), ack.Get("ERR-3.1"), ack.Get("ERR-2"), tt.ack, tt.err, tt.loc)
			}
		})
	}
}
