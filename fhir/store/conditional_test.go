package store_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/internal/testkit"
)

func mustCondition(t *testing.T, typ, query string) store.Condition {
	t.Helper()
	c, err := store.ParseCondition(typ, query)
	if err != nil {
		t.Fatalf("ParseCondition(%s, %q) = %v", typ, query, err)
	}
	return c
}

// TestParseConditionKey: a condition on any of the type's parameters parses; spellings the
// parser reads alike (order, a bare reference id, the zone of a date, the case and accents
// of a string, repeated values) have one key, so their writers share one lock; different
// conditions have different keys; a single identifier=system|value keeps the identifier
// form and its key.
func TestParseConditionKey(t *testing.T) {
	const want = "Observation?code=http://loinc.org|718-7&date=eq2026-01-02T10:00:00Z/2026-01-02T10:00:01Z&patient=Patient/123"
	for _, q := range []string{
		"patient=Patient/123&code=http://loinc.org|718-7&date=2026-01-02T10:00:00Z",
		"date=eq2026-01-02T11:00:00%2B01:00&code=http://loinc.org|718-7&patient=123",
		"?code=http://loinc.org|718-7,http://loinc.org|718-7&patient=Patient/123&date=2026-01-02T11:00:00+01:00&patient=123",
	} {
		if got := mustCondition(t, "Observation", q).Key(); got != want {
			t.Errorf("Key(%q) = %q; want %q", q, got, want)
		}
	}
	if a, b := mustCondition(t, "Patient", "name=JOSÉ"), mustCondition(t, "Patient", "name=jose"); a.Key() != b.Key() {
		t.Errorf("name keys %q and %q differ", a.Key(), b.Key())
	}
	var distinct []store.Condition
	for _, q := range []string{"status=final", "status=amended", "status=final,amended", "code=a|1&status=final", "code=a|1",
		"code=1", "code=|1", "subject=123", "subject=Patient/123", "date=2026-01-02", "date=ge2026-01-02", "code=a\\,b", "code=a,b"} {
		distinct = append(distinct, mustCondition(t, "Observation", q))
	}
	keys := map[string]bool{}
	for _, c := range distinct {
		if keys[c.Key()] {
			t.Errorf("key %q of two different conditions", c.Key())
		}
		keys[c.Key()] = true
	}

	// The identifier form, as callers build it and as Match answers it fast.
	for _, q := range []string{"identifier=urn:x|1", "identifier=urn:x|1&identifier=urn:x|1", "identifier=urn:x|1,urn:x|1"} {
		c := mustCondition(t, "Organization", q)
		if c.System != "urn:x" || c.Value != "1" || c.Key() != (store.Condition{Type: "Organization", System: "urn:x", Value: "1"}).Key() ||
			c.Key() != "Organization?identifier=urn:x|1" {
			t.Errorf("ParseCondition(%q) = %+v, key %q; want the identifier form", q, c, c.Key())
		}
	}
	for _, q := range []string{"identifier=urn:x|1&active=true", "identifier=1", "identifier=urn:x|", "identifier=urn:x|1,urn:x|2"} {
		if c := mustCondition(t, "Organization", q); c.System != "" || c.Value != "" || !strings.HasPrefix(c.Key(), "Organization?") {
			t.Errorf("ParseCondition(%q) = %+v; want the general form", q, c)
		}
	}
}

// TestParseConditionRefusals: what a condition must not contain is errs.Invalid whose
// message names the parameter.
func TestParseConditionRefusals(t *testing.T) {
	for _, tt := range []struct{ typ, query, names string }{
		{"Observation", "", "at least one"},
		{"Observation", "?", "at least one"},
		{"Observation", "%zz", "malformed"},
		{"Nothing", "code=1", "resource type"},
		{"Observation", "code=a|1&_count=1", "_count"},
		{"Observation", "code=a|1&_sort=date", "_sort"},
		{"Observation", "code=a|1&_include=Observation:patient", "_include"},
		{"Observation", "code=a|1&_include:iterate=Observation:patient", "_include"},
		{"Observation", "code=a|1&_revinclude=DiagnosticReport:result", "_revinclude"},
		{"Observation", "code=a|1&_summary=count", "_summary"},
		{"Observation", "code=a|1&_elements=status", "_elements"},
		{"Observation", "code=a|1&_total=none", "_total"},
		{"Observation", "code=a|1&_format=json", "_format"},
		{"Observation", "code=a|1&_offset=10", "_offset"},
		{"Observation", "code=a|1&_cursor=abc", "_cursor"},
		{"Observation", "code=a|1&color=red", "color"},
		{"Observation", "identifier=a|1", "identifier"}, // not declared for Observation
		{"Observation", "code=a|1&status=", "status"},
		{"Observation", "code=a|1,,b|2", "code"},
		{"Observation", "code=a|1&date=yesterday", "date"},
		{"Observation", "patient.identifier=urn:x|1", "patient.identifier"},
		{"Observation", "status:not=final", "status"},
		{"Observation", "status:missing=true", "status"},
		{"Patient", "name:exact=Ada", "name"},
		{"Patient", "name:contains=Ada", "name"},
		{"Patient", "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|1", "identifier"},
		{"Observation", "code:text=x", "code"},
		{"Observation", "value-quantity=5.4", "value-quantity"},
		{"Observation", "=x", "no name"},
	} {
		_, err := store.ParseCondition(tt.typ, tt.query)
		if errs.CodeOf(err) != errs.Invalid || !strings.Contains(errs.MessageOf(err), tt.names) {
			t.Errorf("ParseCondition(%s, %q) = %v; want invalid naming %q", tt.typ, tt.query, err, tt.names)
		}
	}
	for _, tt := range []struct {
		typ    string
		params []string
		want   bool
	}{
		{"Observation", nil, true},
		{"Observation", []string{"patient", "code", "date"}, true},
		{"Observation", []string{"identifier"}, false},
		{"Claim", []string{"_id"}, true},
		{"Organization", []string{"identifier"}, true},
		{"Nothing", nil, false},
	} {
		if got := store.Matchable(tt.typ, tt.params...); got != tt.want {
			t.Errorf("Matchable(%s, %v) = %v; want %v", tt.typ, tt.params, got, tt.want)
		}
	}
}

// TestMatchCondition: a condition on several parameters matches, with the search API's
// semantics, only the member's own current resources: another member's resource with the
// same values and the member's deleted one never match.
func TestMatchCondition(t *testing.T) {
	pool := testkit.DB(t)
	ctx := context.Background()
	for _, m := range []string{"a", "b"} {
		if _, err := pool.Exec(ctx, `INSERT INTO directory_members(id, name, system) VALUES ($1, $1, 'urn:oid:1.2.' || length($1) || $1)`, m); err != nil {
			t.Fatal(err)
		}
	}
	s := store.New(pool)
	obs := func(code, date, status string) *fhir.Resource {
		return fhir.MustParse([]byte(`{"resourceType":"Observation","status":"` + status + `","code":{"coding":[{"system":"http://loinc.org","code":"` + code +
			`"}]},"subject":{"reference":"Patient/p1"},"effectiveDateTime":"` + date + `"}`))
	}
	put := func(member string, r *fhir.Resource) string {
		t.Helper()
		var st store.Stored
		err := db.InTx(ctx, pool, func(tx db.Querier) error {
			var err error
			st, err = s.Put(ctx, tx, store.Write{Resource: r, MemberID: member, PatientID: "p1", At: time.Now()})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return st.ID
	}
	hgb := put("a", obs("718-7", "2026-01-02T10:00:00Z", "final"))
	put("a", obs("718-7", "2026-01-03T10:00:00Z", "final"))
	glu := put("a", obs("2345-7", "2026-01-02T10:00:00Z", "preliminary"))
	foreign := put("b", obs("4548-4", "2026-01-02T10:00:00Z", "final"))
	gone := put("a", obs("4548-4", "2026-01-02T10:00:00Z", "final"))
	if err := db.InTx(ctx, pool, func(tx db.Querier) error {
		_, err := s.Delete(ctx, tx, "Observation", gone, "a", time.Now())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		member, query string
		want          []string // nil: two matches (any two), checked by count
		many          bool
	}{
		{"a", "patient=Patient/p1&code=http://loinc.org|718-7&date=2026-01-02T10:00:00Z", []string{hgb}, false},
		{"a", "patient=p1&code=http://loinc.org|718-7&date=2026-01-02T11:00:00+01:00", []string{hgb}, false},
		{"a", "patient=p1&code=http://loinc.org|718-7&date=2026-01-02", []string{hgb}, false},
		{"a", "patient=p1&code=http://loinc.org|718-7&date=2026-01-04", []string{}, false},
		{"a", "patient=p1&code=http://loinc.org|718-7", nil, true},
		{"a", "patient=p1&status=preliminary", []string{glu}, false},
		{"a", "patient=p2&status=preliminary", []string{}, false},
		{"a", "code=2345-7,http://loinc.org|999&status=preliminary,amended", []string{glu}, false},
		{"a", "_id=" + hgb + "&status=final", []string{hgb}, false},
		{"a", "code=http://loinc.org|4548-4", []string{}, false}, // B's and A's deleted one
		{"b", "code=http://loinc.org|4548-4", []string{foreign}, false},
		{"b", "code=http://loinc.org|718-7", []string{}, false},
	} {
		c := mustCondition(t, "Observation", tt.query)
		got, err := s.Match(ctx, pool, tt.member, c)
		if err != nil {
			t.Errorf("Match(%s, %q) = %v", tt.member, tt.query, err)
			continue
		}
		if tt.many && len(got) != 2 || !tt.many && !slices.Equal(got, tt.want) {
			t.Errorf("Match(%s, %q) = %v; want %v (many %v)", tt.member, tt.query, got, tt.want, tt.many)
		}
		// MatchLocked answers the same.
		err = db.InTx(ctx, pool, func(tx db.Querier) error {
			locked, err := s.MatchLocked(ctx, tx, tt.member, c)
			if err == nil && !slices.Equal(locked, got) && len(got) < 2 {
				t.Errorf("MatchLocked(%s, %q) = %v; Match %v", tt.member, tt.query, locked, got)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
