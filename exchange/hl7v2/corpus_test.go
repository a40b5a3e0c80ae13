package hl7v2

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// cdcExceptions is the expected ACK of every cdc-ti file that is not a plain supported
// message, written by hand from the files and their README. Every other file is expected
// to get AA when its name says ORU or ADT, and AR 200 otherwise (ORM, OML, ACK).
var cdcExceptions = map[string]struct {
	code AckCode
	err  ErrCode
	why  string
}{
	"CA/002_CA_ORU_R01.hl7":                                  {AE, RequiredFieldMissing, "PID-3 has an authority but no ID"},
	"Epic/002_Epic_ORU_R01.hl7":                              {AE, DataTypeError, "template: PID-7 is the text DOB"},
	"NewSTEPs/002_NewSTEPs_ORU_R01.hl7":                      {AE, DataTypeError, "OBR-22 is 2017-02-29"},
	"TN/001_TN_ORU_R01_LRI_annotated_for_transformation.hl7": {AE, SegmentSequenceError, "free-text annotation lines"},
	"TX/001_TX_OML_O21.hl7":                                  {AE, SegmentSequenceError, "OBR broken across two lines"},
	"Test/Message/empty.hl7":                                 {AE, SegmentSequenceError, "empty"},
	"Test/Message/msh_present_but_missing_all_fields.hl7":    {AE, RequiredFieldMissing, "MSH with no fields"},
	"Test/Message/msh_present_but_missing_msh-10.hl7":        {AE, RequiredFieldMissing, "no MSH-10"},
	"Test/Message/msh_present_but_missing_msh-2.hl7":         {AE, RequiredFieldMissing, "no MSH-2"},
	"Test/Message/msh_present_but_missing_msh-9.hl7":         {AE, RequiredFieldMissing, "no MSH-9"},
	"Test/Message/msh-12_has_value_2_3.hl7":                  {AR, UnsupportedMessageType, "ORM^O01"},
	"Test/Message/msh_present_but_missing_msh-6.hl7":         {AR, UnsupportedMessageType, "ORM^O01"},
	"Test/Message/orm_obx-5_is_not_a_numeric_value.hl7":      {AR, UnsupportedMessageType, "ORM^O01"},
}

// mapHandler maps each message and answers with the mapping's ACK, checking that every
// resource renders as JSON. It counts resources by kind.
type mapHandler struct {
	t     testing.TB
	mu    sync.Mutex
	kinds map[string]int
}

func (h *mapHandler) HandleHL7(_ context.Context, _ ConnInfo, m *Message) Ack {
	out, err := Map(m, MapOptions{})
	if err != nil {
		return AckFromError(err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range out.Resources {
		if _, err := r.JSON(); err != nil {
			h.t.Errorf("%s JSON: %v", r.Kind, err)
		}
		h.kinds[r.Kind]++
	}
	return Accept()
}

type corpusMsg struct {
	name string
	b    []byte
}

// sendAll sends msgs over one TCP connection to a fresh Server and returns the ACKs.
func sendAll(t *testing.T, h Handler, msgs []corpusMsg) []*Message {
	t.Helper()
	addr := startServer(t, &Server{Handler: h})
	c := NewClient(dial(t, addr))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	acks := make([]*Message, len(msgs))
	for i, m := range msgs {
		ack, err := c.Send(ctx, m.b)
		if err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
		acks[i] = ack
	}
	return acks
}

func TestCorpusCDC(t *testing.T) {
	root := repoData(t, "hl7v2", "cdc-ti")
	var msgs []corpusMsg
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".hl7") {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(root, p)
		msgs = append(msgs, corpusMsg{filepath.ToSlash(rel), b})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 132 {
		t.Fatalf("%d files, want 132", len(msgs))
	}
	h := &mapHandler{t: t, kinds: map[string]int{}}
	acks := sendAll(t, h, msgs)
	counts := map[string]int{}
	for i, m := range msgs {
		ack := acks[i]
		want, ok := cdcExceptions[m.name]
		if !ok {
			want.code, want.err = AR, UnsupportedMessageType
			if t := nameType(filepath.Base(m.name)); t == "ORU" || t == "ADT" {
				want.code, want.err = AA, NoError
			}
		}
		got := AckCode(ack.Get("MSA-1"))
		gotErr := ack.Get("ERR-3.1")
		if gotErr == "" { // 2.3/2.4 ACK
			gotErr = ack.Get("ERR-1.4.1")
		}
		if got != want.code || (want.err != NoError && gotErr != itoa(int(want.err))) {
			t.Errorf("%s: ACK %s %s, want %s %d (%s)", m.name, got, gotErr, want.code, want.err, want.why)
		}
		if h, ok := ReadHeader(m.b); ok && h.ControlID != "" && ack.Get("MSA-2") != h.ControlID {
			t.Errorf("%s: MSA-2 %q, want MSH-10", m.name, ack.Get("MSA-2"))
		}
		counts[string(got)]++
	}
	t.Logf("cdc-ti ACKs %v, resources %v", counts, h.kinds)
}

// nameType returns the first message type named in a cdc-ti file name
// ("001_Staging_ORM_O01_short_linked_to_002_ORU" is an ORM).
func nameType(name string) string {
	best, at := "", len(name)
	for _, t := range []string{"ORU", "ADT", "ORM", "OML", "ACK"} {
		if i := strings.Index(name, t); i >= 0 && i < at {
			best, at = t, i
		}
	}
	return best
}

func TestCorpusSimHospital(t *testing.T) {
	var msgs []corpusMsg
	for i, b := range simhospital(t) {
		msgs = append(msgs, corpusMsg{fmt.Sprintf("message %d", i), b})
	}
	h := &mapHandler{t: t, kinds: map[string]int{}}
	acks := sendAll(t, h, msgs)
	counts := map[string]int{}
	for i, m := range msgs {
		hd, _ := ReadHeader(m.b)
		want := AR
		if strings.HasPrefix(hd.Type, "ADT^") || strings.HasPrefix(hd.Type, "ORU^") || hd.Type == "MDM^T02" {
			want = AA
		}
		got := AckCode(acks[i].Get("MSA-1"))
		if got != want || acks[i].Get("MSA-2") != hd.ControlID {
			t.Errorf("%s (%s): ACK %s %q, want %s", m.name, hd.Type, got, acks[i].Get("MSA-2"), want)
		}
		counts[hd.Type+" "+string(got)]++
	}
	if counts["ADT^A01 AA"] != 400 || counts["ORU^R01 AA"] != 610 || counts["ADT^A34 AA"] != 1 || counts["MDM^T02 AA"] != 2 || len(counts) != 4 {
		t.Errorf("counts %v", counts)
	}
	if h.kinds[KindObservation] == 0 || h.kinds[KindDiagnosticReport] != 610 || h.kinds[KindEncounter] != 400 || h.kinds[KindDocumentReference] != 2 {
		t.Errorf("resources %v", h.kinds)
	}
	t.Logf("simhospital ACKs %v, resources %v", counts, h.kinds)
}

func TestGenerate(t *testing.T) {
	a, b := Generate(7, 60), Generate(7, 60)
	if len(a) != 60 {
		t.Fatalf("%d messages", len(a))
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			t.Fatalf("message %d differs between runs", i)
		}
	}
	if c := Generate(8, 60); bytes.Equal(c[1], a[1]) {
		t.Error("seed ignored")
	}
	ids := map[string]bool{}
	types := map[string]int{}
	var msgs []corpusMsg
	for i, raw := range a {
		m, err := Parse(raw)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if _, err := Map(m, MapOptions{}); err != nil {
			t.Fatalf("message %d (%s): %v", i, m.Get("MSH-9"), err)
		}
		ids[m.Get("MSH-10")] = true
		types[m.Get("MSH-9.1")]++
		msgs = append(msgs, corpusMsg{itoa(i), raw})
	}
	if len(ids) != 60 || types["ADT"] != 20 || types["ORU"] != 40 {
		t.Errorf("ids %d types %v", len(ids), types)
	}
	h := &mapHandler{t: t, kinds: map[string]int{}}
	for i, ack := range sendAll(t, h, msgs) {
		if ack.Get("MSA-1") != "AA" {
			t.Errorf("generated %d: %s", i, ack.Get("MSA-1"))
		}
	}
	t.Logf("generated resources %v", h.kinds)
}

func BenchmarkParseORU(b *testing.B) {
	msg := largestORU(b)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		m, err := Parse(msg)
		if err != nil {
			b.Fatal(err)
		}
		_ = m.Get("OBX[3]-5")
	}
}

func BenchmarkMapORU(b *testing.B) {
	m, err := Parse(largestORU(b))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Map(m, MapOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// largestORU is the generated ORU^R01 with the most OBX segments among 30.
func largestORU(tb testing.TB) []byte {
	var best []byte
	for _, m := range Generate(1, 30) {
		if bytes.Contains(m, []byte("ORU^R01")) && bytes.Count(m, []byte("\rOBX")) > bytes.Count(best, []byte("\rOBX")) {
			best = m
		}
	}
	if best == nil {
		tb.Fatal("no ORU generated")
	}
	return best
}
