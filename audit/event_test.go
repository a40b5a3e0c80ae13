package audit

import (
	"bytes"
	"crypto/sha256"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"
	"time"
)

func sampleEvent(r *rand.Rand) Event {
	acts := []Action{Read, Query, Create, Update, Delete, Disclosure, ConsentDecision, BreakGlass, Export}
	outs := []Outcome{Permit, Deny, Failure}
	ev := Event{
		Time:           time.Date(2026, time.Month(1+r.IntN(11)), 1+r.IntN(27), r.IntN(24), r.IntN(60), 0, r.IntN(1e6)*1000, time.UTC),
		Action:         acts[r.IntN(len(acts))],
		Outcome:        outs[r.IntN(len(outs))],
		Reason:         []string{"", "permitted", "no-directive", "denied"}[r.IntN(4)],
		Actor:          "https://idp.example|user" + itoa(r.Int64N(50)),
		Client:         "client-" + itoa(r.Int64N(5)),
		Org:            []string{"riverside", "hillcrest", "lakeside"}[r.IntN(3)],
		Role:           []string{"clinician", "nurse", "patient"}[r.IntN(3)],
		Purpose:        []string{"TREAT", "HPAYMT", "BTG", "PATRQT"}[r.IntN(4)],
		Patient:        "p" + itoa(r.Int64N(20)),
		Consent:        "c" + itoa(r.Int64N(9)),
		ConsentVersion: r.Int64N(5),
		TokenID:        "jti-" + itoa(r.Int64()),
		RequestID:      "req-" + itoa(r.Int64()),
		SourceIP:       "10.0.0." + itoa(r.Int64N(255)),
		Query:          "code=1234-5",
		BreakGlass:     r.IntN(5) == 0,
		ShareLink:      r.IntN(7) == 0,
	}
	for i := r.IntN(4); i > 0; i-- {
		ev.Resources = append(ev.Resources, Resource{Type: "Observation", ID: "o" + itoa(r.Int64N(1000))})
	}
	return ev
}

func TestEncodeRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 500; i++ {
		ev := sampleEvent(r)
		enc := Encode(&ev)
		got, err := Decode(enc)
		if err != nil {
			t.Fatalf("Decode: %v", err)
		}
		if !bytes.Equal(Encode(&got), enc) {
			t.Fatalf("round trip changed the encoding")
		}
		if got.Time != ev.Time || got.Patient != ev.Patient || len(got.Resources) != len(ev.Resources) || got.BreakGlass != ev.BreakGlass {
			t.Fatalf("round trip: got %+v, want %+v", got, ev)
		}
		// Every truncation and every trailing byte is rejected.
		for cut := 0; cut < len(enc); cut += 1 + len(enc)/17 {
			if _, err := Decode(enc[:cut]); err == nil {
				t.Fatalf("Decode accepted a truncation at %d", cut)
			}
		}
		if _, err := Decode(append(enc[:len(enc):len(enc)], 0)); err == nil {
			t.Fatal("Decode accepted a trailing byte")
		}
	}
}

func TestEncodingIsFieldSensitive(t *testing.T) {
	// Moving bytes between adjacent fields must change the encoding (length prefixes).
	a := Event{Time: time.Unix(0, 0).UTC(), Action: Read, Outcome: Permit, Actor: "ab", Client: "c"}
	b := a
	b.Actor, b.Client = "a", "bc"
	if bytes.Equal(Encode(&a), Encode(&b)) {
		t.Fatal("encodings of different events are equal")
	}
	c := a
	c.Resources = []Resource{{Type: "A", ID: "b/c"}}
	d := a
	d.Resources = []Resource{{Type: "A/b", ID: "c"}}
	if bytes.Equal(Encode(&c), Encode(&d)) {
		t.Fatal("resource encodings collide")
	}
}

func FuzzDecode(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 8; i++ {
		ev := sampleEvent(r)
		f.Add(Encode(&ev))
	}
	f.Add([]byte{1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := Decode(b)
		if err != nil {
			return
		}
		if !bytes.Equal(Encode(&ev), b) {
			t.Fatalf("decoded event does not encode back to its input")
		}
	})
}

// refRoot is RFC 6962's recursive MTH, written straight from the RFC.
func refRoot(leaves [][]byte) Hash {
	if len(leaves) == 0 {
		return sha256.Sum256(nil)
	}
	if len(leaves) == 1 {
		return leafHash(leaves[0])
	}
	k := 1
	for k*2 < len(leaves) {
		k *= 2
	}
	return nodeHash(refRoot(leaves[:k]), refRoot(leaves[k:]))
}

func TestFrontierMatchesRFC6962(t *testing.T) {
	var f frontier
	var leaves [][]byte
	if f.root() != refRoot(nil) {
		t.Fatal("empty root")
	}
	for i := 0; i < 70; i++ {
		leaf := []byte{byte(i), byte(i >> 8)}
		leaves = append(leaves, leaf)
		f.push(leaf)
		if got, want := f.root(), refRoot(leaves); got != want {
			t.Fatalf("root after %d leaves differs from RFC 6962 MTH", i+1)
		}
		g, err := unmarshalFrontier(f.marshal())
		if err != nil || g.root() != f.root() || g.size != f.size {
			t.Fatalf("frontier round trip at %d: %v", i+1, err)
		}
	}
	if _, err := unmarshalFrontier(f.marshal()[:40]); err == nil {
		t.Fatal("malformed frontier accepted")
	}
}

func TestHashQueryKeepsPHIOut(t *testing.T) {
	const canary = "Zebediah-Canary-Quinterro"
	h, err := NewHasher(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewHasher([]byte("short")); err == nil {
		t.Fatal("short key accepted")
	}
	q := url.Values{"name:contains": {canary}, "birthdate": {"1961-02-03"}, "code": {"4548-4"}, "subject:Patient.family": {canary}}
	got := h.HashQuery(q, PHIParams())
	if strings.Contains(got, canary) || strings.Contains(got, "1961-02-03") {
		t.Fatalf("HashQuery leaked PHI: %s", got)
	}
	if !strings.Contains(got, "code=4548-4") {
		t.Fatalf("HashQuery dropped a non-PHI parameter: %s", got)
	}
	if h.Hash("name", canary) != h.Hash("name", " "+strings.ToUpper(canary)) {
		t.Fatal("case variants hash differently")
	}
	h2, _ := NewHasher(bytes.Repeat([]byte{8}, 32))
	if h.Hash("name", canary) == h2.Hash("name", canary) {
		t.Fatal("hash does not depend on the key")
	}

	ev := Event{Time: time.Now(), Action: Query, Outcome: Permit, Actor: "iss|sub", Patient: "p1", Query: got}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "ev", ev)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "ev", ev)
	for _, out := range [][]byte{buf.Bytes(), Encode(&ev), []byte(ToFHIR(ev, "https://hie.example/fhir"))} {
		if bytes.Contains(out, []byte(canary)) || bytes.Contains(out, []byte("1961-02-03")) {
			t.Fatalf("canary found in output: %s", out)
		}
	}
	if !bytes.Contains(buf.Bytes(), []byte("p1")) {
		t.Fatalf("log output lacks the IDs it should carry: %s", buf.Bytes())
	}
}

func TestValidate(t *testing.T) {
	ok := Event{Action: Read, Outcome: Permit}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, ev := range map[string]Event{
		"action":   {Action: "peek", Outcome: Permit},
		"outcome":  {Action: Read, Outcome: "maybe"},
		"nul":      {Action: Read, Outcome: Permit, Actor: "a\x00b"},
		"utf8":     {Action: Read, Outcome: Permit, Org: "\xff"},
		"long":     {Action: Read, Outcome: Permit, Reason: strings.Repeat("x", 2000)},
		"resource": {Action: Read, Outcome: Permit, Resources: []Resource{{Type: "", ID: "x"}}},
	} {
		if err := ev.Validate(); err == nil {
			t.Errorf("%s: Validate accepted an invalid event", name)
		}
	}
}

func TestEncodeRowMatchesEncode(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	for i := 0; i < 300; i++ {
		ev := sampleEvent(r)
		row := verifyRow{seq: 1, time: ev.Time, action: string(ev.Action), outcome: string(ev.Outcome), reason: ev.Reason,
			actor: ev.Actor, client: ev.Client, org: ev.Org, role: ev.Role, purpose: ev.Purpose, patient: ev.Patient,
			resources: resourceStrings(ev.Resources), consent: ev.Consent, consentVersion: ev.ConsentVersion,
			tokenID: ev.TokenID, reqID: ev.RequestID, sourceIP: ev.SourceIP, query: ev.Query,
			breakGlass: ev.BreakGlass, shareLink: ev.ShareLink}
		if !bytes.Equal(encodeRow(nil, &row), Encode(&ev)) {
			t.Fatalf("encodeRow differs from Encode for %+v", ev)
		}
	}
}
