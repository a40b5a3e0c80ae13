package main

import (
	"bytes"
	"context"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/concord-hie/concord/internal/bench"
	"github.com/concord-hie/concord/internal/testkit"
)

func TestBenchAnswerChecks(t *testing.T) {
	ok := `{"resourceType":"Bundle","type":"transaction-response","entry":[{"response":{"status":"201 Created"}},{"response":{"status":"200 OK"}}]}`
	if err := transactionResponse([]byte(ok), 2); err != nil {
		t.Errorf("good response: %v", err)
	}
	for _, bad := range []struct {
		body string
		n    int
	}{
		{ok, 3},
		{strings.Replace(ok, "200 OK", "409 Conflict", 1), 2},
		{strings.Replace(ok, "transaction-response", "batch-response", 1), 2},
		{`{"resourceType":"OperationOutcome"}`, 0},
	} {
		if transactionResponse([]byte(bad.body), bad.n) == nil {
			t.Errorf("%s with %d entries passed", bad.body, bad.n)
		}
	}

	page := func(total int, dates ...string) []byte {
		var es []string
		for _, d := range dates {
			es = append(es, fmt.Sprintf(`{"resource":{"resourceType":"Observation","effectiveDateTime":%q},"search":{"mode":"match"}}`, d))
		}
		return []byte(fmt.Sprintf(`{"resourceType":"Bundle","total":%d,"entry":[%s]}`, total, strings.Join(es, ",")))
	}
	if err := labPage(2)(200, page(2, "2025-03-01T10:00:00Z", "2024-01-01T10:00:00Z")); err != nil {
		t.Errorf("good page: %v", err)
	}
	for name, body := range map[string][]byte{
		"unsorted":      page(2, "2024-01-01T10:00:00Z", "2025-03-01T10:00:00Z"),
		"wrong total":   page(3, "2025-03-01T10:00:00Z", "2024-01-01T10:00:00Z"),
		"short page":    page(2, "2025-03-01T10:00:00Z"),
		"not a bundle":  []byte(`{"resourceType":"Observation"}`),
		"included mode": bytes.Replace(page(2, "2025-03-01T10:00:00Z", "2024-01-01T10:00:00Z"), []byte(`"match"`), []byte(`"include"`), 1),
	} {
		if labPage(2)(200, body) == nil {
			t.Errorf("%s passed", name)
		}
	}
	// With more than 50 matches the first page holds 50.
	var fifty []string
	for i := range 50 {
		fifty = append(fifty, fmt.Sprintf("2025-01-%02dT00:00:00Z", 31-i%31))
	}
	slices.Sort(fifty)
	slices.Reverse(fifty)
	if err := labPage(120)(200, page(120, fifty...)); err != nil {
		t.Errorf("full page: %v", err)
	}

	docs := func(n int, typ, mode string) []byte {
		es := slices.Repeat([]string{fmt.Sprintf(`{"resource":{"resourceType":%q},"search":{"mode":%q}}`, typ, mode)}, n)
		return []byte(`{"resourceType":"Bundle","entry":[` + strings.Join(es, ",") + `]}`)
	}
	if err := docPage(3)(200, docs(3, "DocumentReference", "match")); err != nil {
		t.Errorf("good document page: %v", err)
	}
	if err := docPage(354)(200, docs(50, "DocumentReference", "match")); err != nil {
		t.Errorf("full document page: %v", err)
	}
	for name, body := range map[string][]byte{
		"short":     docs(2, "DocumentReference", "match"),
		"long":      docs(51, "DocumentReference", "match"),
		"other":     docs(3, "Binary", "match"),
		"included":  docs(3, "DocumentReference", "include"),
		"not found": []byte(`{"resourceType":"OperationOutcome"}`),
	} {
		if docPage(3)(200, body) == nil && name != "long" || name == "long" && docPage(354)(200, body) == nil {
			t.Errorf("document page %s passed", name)
		}
	}

	if wantCount(3)(200, []byte(`{"resourceType":"Bundle","total":3}`)) != nil || wantCount(3)(200, []byte(`{"resourceType":"Bundle","total":4}`)) == nil {
		t.Error("wantCount")
	}
	a, b := dicomBytes(mrand.New(mrand.NewPCG(1, 2)), 4096), dicomBytes(mrand.New(mrand.NewPCG(1, 2)), 4096)
	if !bytes.Equal(a, b) || len(a) != 4096 || string(a[128:132]) != "DICM" || !bytes.Equal(a[:128], make([]byte, 128)) {
		t.Error("dicomBytes is not a deterministic DICOM-shaped object")
	}
	got := referencedAnchors([]bench.Scenario{
		bench.HTTPScenario{Name: "a", Anchor: bench.AnchorPG}, bench.HTTPScenario{Name: "b", Anchor: bench.AnchorPG},
		bench.HTTPScenario{Name: "c", Anchor: "a"}, bench.HTTPScenario{Name: "d", Anchor: bench.AnchorS3_1M},
	})
	if !slices.Equal(got, []string{bench.AnchorPG, bench.AnchorS3_1M}) {
		t.Errorf("referencedAnchors = %v", got)
	}
}

func TestBenchUnknownScenario(t *testing.T) {
	var stderr bytes.Buffer
	err := runBench(context.Background(), []string{"--scenarios", "s2,nope"}, &bytes.Buffer{}, &stderr)
	if err == nil || !strings.Contains(err.Error(), "nope") || !strings.Contains(err.Error(), "s7-synthea-c4") {
		t.Fatalf("err = %v; want the unknown name and the known ones", err)
	}
}

// TestBenchScenarios runs one scenario of each new kind against the real services: a
// search with a count, the deny path, a document read with its hash check, and a load.
func TestBenchScenarios(t *testing.T) {
	if testing.Short() {
		t.Skip("a bench run takes half a minute")
	}
	s3 := testkit.S3(t)
	_, prefix := testkit.Redis(t)
	t.Setenv("CONCORD_DATABASE_URL", testkit.DatabaseURL(t))
	t.Setenv("CONCORD_REDIS_URL", os.Getenv("CONCORD_TEST_REDIS_URL"))
	t.Setenv("CONCORD_REDIS_PREFIX", prefix)
	t.Setenv("CONCORD_S3_ENDPOINT", s3.Endpoint)
	t.Setenv("CONCORD_S3_ACCESS_KEY", s3.AccessKey)
	t.Setenv("CONCORD_S3_SECRET_KEY", s3.SecretKey)
	t.Setenv("CONCORD_S3_BUCKET", s3.Bucket)
	t.Setenv("CONCORD_DATA_DIR", t.TempDir())
	jsonPath := filepath.Join(t.TempDir(), "run.jsonl")
	var out, stderr bytes.Buffer
	err := runBench(context.Background(), []string{"--scenarios", "s2-identifier,s3-lab-code,s5-binary-64k,s5-binary-deny,s8,s6,s7-synthea-c4",
		"--duration", "300ms", "--no-gate", "--json", jsonPath, "--synthea", testkit.SharedData(t, "synthea", "bundles"), "--hl7v2", testkit.SharedData(t, "hl7v2")}, &out, &stderr)
	if err != nil {
		t.Fatalf("bench: %v\n%s\n%s", err, out.String(), stderr.String())
	}
	recs, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"s2-identifier", "s3-lab-code", "s5-binary-64k", "s5-binary-deny", "s8-portal-labs", "s6-mllp-ingest", "s7-synthea-c4", "pg-insert-1k7"} {
		if n := bytes.Count(recs, []byte(`"name":"`+name+`"`)); n < 2 {
			t.Errorf("%s: %d records, want one per round", name, n)
		}
	}
	for _, not := range []string{"s2-match", "thin-slice-read", "s7-synthea-c1"} {
		if bytes.Contains(recs, []byte(`"name":"`+not+`"`)) {
			t.Errorf("%s ran but was not selected", not)
		}
	}
	if !strings.Contains(out.String(), "load checks") || !strings.Contains(out.String(), "s6-mllp-ingest: median") || !strings.Contains(out.String(), "s5-binary-64k bytes/s") {
		t.Errorf("output lacks the S7 check or the S5 bytes ratio:\n%s", out.String())
	}
}

func TestBenchWithPass(t *testing.T) {
	msg := []byte("MSH|^~\\&|SIMHOSP|SFAC|RAPP|RFAC|20200501140643||ORU^R01|17|T|2.3\rPID|1|42\r")
	same, id := withPass(msg, 0)
	if !bytes.Equal(same, msg) || id != "17" {
		t.Errorf("pass 0: %q %q", same, id)
	}
	again, id := withPass(msg, 3)
	want := bytes.Replace(msg, []byte("|17|"), []byte("|17-p3|"), 1)
	if !bytes.Equal(again, want) || id != "17-p3" {
		t.Errorf("pass 3: %q %q, want %q", again, id, want)
	}
}

// A bigger region starts with the demo's people unchanged and spreads the people it adds
// over regionFamilies, as thinly as benchmarks.md's 46 cloned patients (about 2 % each).
func TestSizedRegionKeepsTheDemoAndSpreadsFamilies(t *testing.T) {
	const seed = 20260301
	demo, big := demoRegion(seed), sizedRegion(seed, 10000)
	if !slices.EqualFunc(demo.persons, big.persons[:demoPersons], func(a, b demoPerson) bool { return fmt.Sprint(a) == fmt.Sprint(b) }) {
		t.Fatal("the first people of a bigger region differ from the demo's")
	}
	if len(big.persons) != 10000 {
		t.Fatalf("%d people, want 10000", len(big.persons))
	}
	n := map[string]int{}
	for _, p := range big.persons {
		n[p.Family]++
	}
	if len(n) != len(regionFamilies)+1 { // and the demo's Rivera
		t.Errorf("%d families, want %d", len(n), len(regionFamilies)+1)
	}
	for f, c := range n {
		if c > 300 {
			t.Errorf("%d people named %s (%.1f %%): want about 2 %% each", c, f, float64(c)/100)
		}
	}
}

// TestMixParts: the mix takes its parts from the built read scenarios by name, with
// benchmarks.md's proportions, and leaves out what was not built.
func TestMixParts(t *testing.T) {
	var ss []bench.Scenario
	for _, n := range benchScenarioNames {
		if n != "s4-docref-category" && n != mixName {
			ss = append(ss, bench.HTTPScenario{Name: n, URL: "http://127.0.0.1/" + n, Conns: 16})
		}
	}
	parts := mixParts(ss)
	total, s1s2 := 0, 0
	for _, p := range parts {
		total += p.Weight
		if n := p.Scenario.ScenarioName(); n == "thin-slice-read" || strings.HasPrefix(n, "s2-") {
			s1s2 += p.Weight
		}
		if h := p.Scenario.(bench.HTTPScenario); h.Conns != 4*mixWorkers {
			t.Errorf("%s keeps %d connections", h.Name, h.Conns)
		}
	}
	if len(parts) != len(mixShares)-1 || total != 83 || s1s2 != 60 {
		t.Fatalf("%d parts, weight %d (S1/S2 %d); want 6 parts without S4, 83, 60", len(parts), total, s1s2)
	}
}
