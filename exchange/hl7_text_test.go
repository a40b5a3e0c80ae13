package exchange

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// latin1 declares ISO 8859-1 in MSH-18 of a message built by adtA01 or oruR01.
func latin1(msg string) string {
	return strings.Replace(msg, "|P|2.5.1\r", "|P|2.5.1||||||8859/1\r", 1)
}

// patientBody returns the stored body of the member's one live Patient.
func (e *hl7Env) patientBody(t *testing.T) map[string]any {
	t.Helper()
	var body []byte
	if err := e.pool.QueryRow(context.Background(), `SELECT body FROM fhir_resources WHERE type = 'Patient' AND member_id = $1 AND NOT deleted`,
		e.member.ID).Scan(&body); err != nil {
		t.Fatal(err)
	}
	var p map[string]any
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestHL7IntakeCharacterSets: MSH-18 is honoured end to end; text that cannot be read is
// refused with AE 102 naming the field, and nothing is stored.
func TestHL7IntakeCharacterSets(t *testing.T) {
	e := newHL7Env(t)
	c := mllpClient(t, e.addr)
	umlauts := strings.Replace(pidA, "Testperson^Alex", "M\xfcller^J\xf6rg", 1)
	if ack, code := send(t, c, latin1(adtA01("T1", umlauts))); ack != "AA" {
		t.Fatalf("8859/1 A01: %s %s", ack, code)
	}
	p := e.patientBody(t)
	name, _ := json.Marshal(p["name"])
	if !strings.Contains(string(name), `"family":"Müller"`) || !strings.Contains(string(name), `"Jörg"`) {
		t.Errorf("stored name %s, want Müller, Jörg", name)
	}
	before := e.count(t, "Patient") + e.count(t, "Encounter")
	for _, tt := range []struct{ name, msg, loc string }{
		{"8859/1 bytes in a UTF-8 message", adtA01("T2", umlauts), "PID^1^5"},
		{"8859/1 bytes declared UTF-8", strings.Replace(adtA01("T3", umlauts), "|P|2.5.1\r", "|P|2.5.1||||||UNICODE UTF-8\r", 1), "PID^1^5"},
		{"unsupported character set", strings.Replace(adtA01("T4", pidA), "|P|2.5.1\r", "|P|2.5.1||||||8859/2\r", 1), "MSH^1^18"},
		{"NUL escape", adtA01("T5", strings.Replace(pidA, "Testperson^Alex", `Test\X00\person^Alex`, 1)), "PID^1^5"},
		{"invalid UTF-8 escape", adtA01("T6", strings.Replace(pidA, "Testperson^Alex", `Test\XFF\person^Alex`, 1)), "PID^1^5"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ack, err := c.Send(context.Background(), []byte(tt.msg))
			if err != nil {
				t.Fatal(err)
			}
			if ack.Get("MSA-1") != "AE" || ack.Get("ERR-3.1") != "102" || ack.Get("ERR-2") != tt.loc {
				t.Errorf("ACK %s %s at %s, want AE 102 at %s", ack.Get("MSA-1"), ack.Get("ERR-3.1"), ack.Get("ERR-2"), tt.loc)
			}
		})
	}
	if n := e.count(t, "Patient") + e.count(t, "Encounter"); n != before {
		t.Errorf("refused messages stored %d resources", n-before)
	}
}

// TestHL7IntakeExplicitNull: `""` clears a stored value on update and is never a value;
// a null visit number never finds (and merges into) another visit's Encounter.
func TestHL7IntakeExplicitNull(t *testing.T) {
	e := newHL7Env(t)
	c := mllpClient(t, e.addr)
	if ack, code := send(t, c, adtA01("N1", pidA)); ack != "AA" {
		t.Fatalf("A01: %s %s", ack, code)
	}
	if g := e.patientBody(t)["gender"]; g != "female" {
		t.Fatalf("gender %v after the A01", g)
	}
	a08 := func(ctl, pid string) string {
		return strings.NewReplacer("ADT^A01^ADT_A01", "ADT^A08^ADT_A01", "EVN|A01", "EVN|A08").Replace(adtA01(ctl, pid))
	}
	if ack, code := send(t, c, a08("N2", strings.Replace(pidA, "|F\r", `|""`+"\r", 1))); ack != "AA" {
		t.Fatalf("A08 clearing the gender: %s %s", ack, code)
	}
	if g, ok := e.patientBody(t)["gender"]; ok {
		t.Errorf("gender %v after an A08 with PID-8 \"\"; want none", g)
	}

	// Two admissions whose visit number is null are two Encounters; neither updates the
	// Encounter of the visit with a number.
	encounters := e.count(t, "Encounter")
	nullVN := func(ctl string) string {
		return strings.Replace(adtA01(ctl, pidA), "V"+ctl+"^^^GENFAC", `""^^^GENFAC`, 1)
	}
	for _, ctl := range []string{"N3", "N4"} {
		if ack, code := send(t, c, nullVN(ctl)); ack != "AA" {
			t.Fatalf("A01 %s with a null visit number: %s %s", ctl, ack, code)
		}
	}
	if n := e.count(t, "Encounter"); n != encounters+2 {
		t.Errorf("%d Encounters after two admissions without a visit number, want %d", n, encounters+2)
	}
	if n := e.scalar(t, `SELECT count(*) FROM fhir_resources WHERE type = 'Encounter' AND position('""'::bytea in body) > 0`); n != 0 {
		t.Errorf("%d Encounters store the explicit null as a value", n)
	}
	if v := e.scalar(t, `SELECT max(version) FROM fhir_resources WHERE type = 'Encounter'`); v != 1 {
		t.Errorf("an Encounter was updated (version %d) by another visit", v)
	}
}

// TestHL7IntakeEscapedText: text that merely looks like a character-set switch is kept.
func TestHL7IntakeEscapedText(t *testing.T) {
	e := newHL7Env(t)
	c := mllpClient(t, e.addr)
	msg := strings.Replace(oruR01("E1", pidA), "OBX|3|SN|33914-3^eGFR^LN||>^60|mL/min/{1.73_m2}^mL/min/1.73m2^UCUM|>60||||F|||20250301090000\r",
		`OBX|3|ST|18776-5^Plan^LN||give \Ceftriaxone\ 1 g, see C:\Main\plan||||||F|||20250301090000`+"\r", 1)
	if ack, code := send(t, c, msg); ack != "AA" {
		t.Fatalf("ORU: %s %s", ack, code)
	}
	var body []byte
	if err := e.pool.QueryRow(context.Background(), `SELECT body FROM fhir_resources WHERE type = 'Observation' AND position('18776-5'::bytea in body) > 0`).Scan(&body); err != nil {
		t.Fatal(err)
	}
	var o struct{ ValueString string }
	if err := json.Unmarshal(body, &o); err != nil {
		t.Fatal(err)
	}
	if want := `give \Ceftriaxone\ 1 g, see C:\Main\plan`; o.ValueString != want {
		t.Errorf("valueString %q, want %q", o.ValueString, want)
	}
}
