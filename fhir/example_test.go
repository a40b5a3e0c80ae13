package fhir_test

import (
	"fmt"
	"net/url"
	"time"

	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/internal/errs"
)

func ExampleParse() {
	_, err := fhir.Parse([]byte(`{"resourceType":"Observation","subject":{"reference":"Patient/1"},"Subject":{"reference":"Patient/2"}}`))
	fmt.Println(errs.CodeOf(err), errs.MessageOf(err), errs.PathOf(err))

	r, err := fhir.Parse([]byte(`{"resourceType":"Patient","id":"p1","meta":{"versionId":"3"}}`))
	fmt.Println(r.ResourceType, r.ID, r.Meta.VersionID, err)
	// Output:
	// invalid JSON member names differ only in case Observation.Subject
	// Patient p1 3 <nil>
}

func ExampleResource_Stamp() {
	r := fhir.MustParse([]byte(`{"resourceType":"Patient","id":"client-chosen","gender":"female"}`))
	r, err := r.Stamp(fhir.Stamp{
		ID: "a1b2", VersionID: "1", LastUpdated: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Source:  "https://concord.example/member/clinic-a",
		AddTags: []fhir.Coding{{System: "https://concord.example/member", Code: "clinic-a"}},
	})
	fmt.Println(string(r.Bytes()), err)
	// Output:
	// {"resourceType":"Patient","id":"a1b2","meta":{"versionId":"1","lastUpdated":"2026-01-02T03:04:05.000Z","source":"https://concord.example/member/clinic-a","tag":[{"system":"https://concord.example/member","code":"clinic-a"}]},"gender":"female"} <nil>
}

func ExampleRewriteReferences() {
	r := fhir.MustParse([]byte(`{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"urn:uuid:6e2bd0d2-6c2c-4f2b-9b1a-2d1e0c7a1f00"}}`))
	ids := map[string]string{"urn:uuid:6e2bd0d2-6c2c-4f2b-9b1a-2d1e0c7a1f00": "Patient/42"}
	r, _ = fhir.RewriteReferences(r, func(ref string) (string, error) {
		if id, ok := ids[ref]; ok {
			return id, nil
		}
		return ref, nil
	})
	fmt.Println(fhir.References(r))
	// Output: [Patient/42]
}

func ExampleParseSearch() {
	q, _ := url.ParseQuery("patient=42&category=laboratory&date=ge2025-01-01&code=http://loinc.org|4548-4&_sort=-date&_count=50")
	s, err := fhir.ParseSearch("Observation", q)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, c := range s.Clauses {
		v := c.Values[0]
		fmt.Println(c.Param, c.Type, v.System, v.Code, v.RefType, v.RefID, v.Date.Low.Format(time.RFC3339))
	}
	fmt.Println(s.Count, s.Sort)
	// Output:
	// category token  laboratory   0001-01-01T00:00:00Z
	// code token http://loinc.org 4548-4   0001-01-01T00:00:00Z
	// date date     2025-01-01T00:00:00Z
	// patient reference   Patient 42 0001-01-01T00:00:00Z
	// 50 [{date true}]
}
