package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/concord-hie/concord/internal/bench"
)

// The scenarios of benchmarks.md that `concord bench` runs besides the thin-slice reads.
// Every expected result count is computed from the region definition or from the stored
// rows (raw SQL, not the search code under test) before the run, never written down.
var (
	s2Names = []string{"s2-family-birthdate", "s2-identifier", "s2-name-gender", "s2-match"}
	s3Names = []string{"s3-lab", "s3-lab-code", "s3-lab-date"}
	s5Names = []string{"s5-binary-4k", "s5-binary-64k", "s5-binary-1m", "s5-binary-deny"}
	s7Names = []string{"s7-synthea-c1", "s7-synthea-c4"}
)

// benchEnv is what the scenario builders share: the running Concord and its demo region.
type benchEnv struct {
	ctx    context.Context
	m      *Main
	region region
	seed   uint64
	read   *tokenSource // member 0, system/*.rs
	write  func(member int) (*tokenSource, error)
	client *http.Client
}

// patientOf returns member mi's Patient id for region person pi.
func (e *benchEnv) patientOf(mi, pi int) (string, error) {
	src, err := e.m.mpi.SourceByIdentifier(e.ctx, nil, e.region.members[mi].OID, e.region.mrn(mi, pi))
	return src.PatientID, err
}

// call sends one request with ts's token and returns the status and body.
func (e *benchEnv) call(ts *tokenSource, method, path, ctype string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(e.ctx, method, e.m.cfg.BaseURL+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	for k, v := range ts.header() {
		req.Header[k] = v
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var out bytes.Buffer
	_, err = out.ReadFrom(resp.Body)
	return resp.StatusCode, out.Bytes(), err
}

// wantCount checks that a Bundle answer carries n results (its total, or its entries
// when it has none).
func wantCount(n int) func(int, []byte) error {
	return func(_ int, body []byte) error {
		got, err := bench.BundleCount(body)
		if err != nil {
			return err
		}
		if got != n {
			return fmt.Errorf("%d results, want %d", got, n)
		}
		return nil
	}
}

// knows reports whether region person p is known to member mi.
func knows(p demoPerson, mi int) bool { return slices.Contains(p.Members, mi) }

// visibleRecords counts the Patient records member 0 may see of the persons that match:
// every member's record of a person member 0 knows (treatment relationship), none of a
// person it does not know.
func (e *benchEnv) visibleRecords(match func(demoPerson) bool) int {
	n := 0
	for _, p := range e.region.persons {
		if knows(p, 0) && match(p) {
			n += len(p.Members)
		}
	}
	return n
}

// patientSearch is S2: Patient search and $match as member 0, 16 connections, against the
// PostgreSQL point-select anchor.
func (e *benchEnv) patientSearch() ([]bench.Scenario, error) {
	r := e.region
	own := r.members[0]
	ana := r.persons[0]
	// name+gender: the family most persons member 0 knows share.
	fam := map[string]int{}
	for _, p := range r.persons {
		if knows(p, 0) {
			fam[p.Family]++
		}
	}
	name, best := "", 0
	for f, n := range fam {
		if n > best || n == best && f < name {
			name, best = f, n
		}
	}
	var gender string
	for _, p := range r.persons {
		if knows(p, 0) && p.Family == name {
			gender = p.Gender
			break
		}
	}
	prefix := func(s string) bool { return strings.HasPrefix(strings.ToLower(s), strings.ToLower(name)) }
	nFamBirth := e.visibleRecords(func(p demoPerson) bool { return p.Family == ana.Family && p.BirthDate == ana.BirthDate })
	nNameGender := e.visibleRecords(func(p demoPerson) bool { return p.Gender == gender && (prefix(p.Family) || prefix(p.Given)) })
	mrn := r.mrn(0, 0)
	nIdent := 0
	for i, p := range r.persons {
		for _, mi := range p.Members {
			if r.members[mi].OID == own.OID && r.mrn(mi, i) == mrn {
				nIdent++
			}
		}
	}
	// $match with onlyCertainMatches: one entry per person with the same demographics.
	nMatch := 0
	for _, p := range r.persons {
		if knows(p, 0) && p.Family == ana.Family && p.Given == ana.Given && p.BirthDate == ana.BirthDate && p.Gender == ana.Gender {
			nMatch++
		}
	}
	match, _ := json.Marshal(map[string]any{"resourceType": "Parameters", "parameter": []any{
		map[string]any{"name": "resource", "resource": map[string]any{"resourceType": "Patient",
			"name": []any{map[string]any{"family": ana.Family, "given": []string{ana.Given}}}, "gender": ana.Gender, "birthDate": ana.BirthDate,
			"telecom": []any{map[string]any{"system": "phone", "value": ana.Phone}},
			"address": []any{map[string]any{"line": []string{ana.Street}, "city": ana.City, "postalCode": ana.ZIP}}}},
		map[string]any{"name": "onlyCertainMatches", "valueBoolean": true},
	}})
	base := e.m.cfg.BaseURL + "/fhir/Patient"
	form := func(ct string) func() http.Header {
		return func() http.Header {
			h := e.read.header()
			h.Set("Content-Type", ct)
			return h
		}
	}
	q := func(kv ...string) string {
		v := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v.Encode()
	}
	return []bench.Scenario{
		bench.HTTPScenario{Name: s2Names[0], URL: base + "?" + q("family", ana.Family, "birthdate", ana.BirthDate), Header: e.read.header,
			Check: wantCount(nFamBirth), Count: bench.BundleCount, Anchor: bench.AnchorPG, Conns: 16},
		bench.HTTPScenario{Name: s2Names[1], URL: base + "?" + q("identifier", own.OID+"|"+mrn), Header: e.read.header,
			Check: wantCount(nIdent), Count: bench.BundleCount, Anchor: bench.AnchorPG, Conns: 16},
		bench.HTTPScenario{Name: s2Names[2], Method: http.MethodPost, URL: base + "/_search", Body: []byte(q("name", name, "gender", gender)),
			Header: form("application/x-www-form-urlencoded"), Check: wantCount(nNameGender), Count: bench.BundleCount, Anchor: bench.AnchorPG, Conns: 16},
		bench.HTTPScenario{Name: s2Names[3], Method: http.MethodPost, URL: base + "/$match", Body: match,
			Header: form("application/fhir+json"), Check: wantCount(nMatch), Count: bench.BundleCount, Anchor: bench.AnchorPG, Conns: 16},
	}, nil
}
