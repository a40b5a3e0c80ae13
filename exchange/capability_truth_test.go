package exchange

import (
	"bytes"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/concord-hie/concord/fhir"
)

// TestCapabilityIncludesAgreeWithParse: for every type of the search table, ParseSearch
// accepts exactly the _include and _revinclude values fhir.Capabilities lists, out of
// every source:param pair the table has: a reference parameter is a _revinclude of a type
// only when it can point at that type (Observation:subject of Patient, Location and
// Group's... not of Practitioner).
func TestCapabilityIncludesAgreeWithParse(t *testing.T) {
	caps := fhir.Capabilities()
	var pairs []string // every source:param the table has
	for _, c := range caps {
		pairs = append(pairs, c.SearchInclude...)
	}
	for _, c := range caps {
		for _, pair := range pairs {
			for _, tt := range []struct {
				name   string
				listed []string
			}{{"_include", c.SearchInclude}, {"_revinclude", c.SearchRevInclude}} {
				_, err := fhir.ParseSearch(c.Type, url.Values{tt.name: {pair}})
				if listed := slices.Contains(tt.listed, pair); listed != (err == nil) {
					t.Errorf("%s?%s=%s: listed %v, parse error %v", c.Type, tt.name, pair, listed, err)
				}
			}
		}
	}
	for _, tt := range []struct{ typ, rev string }{
		{"PractitionerRole", "Observation:subject"},
		{"PractitionerRole", "Condition:subject"},
		{"Organization", "Encounter:subject"},
		{"Practitioner", "Observation:subject"},
		{"Patient", "PractitionerRole:organization"},
		{"Location", "Observation:subject"}, // reference data includes no clinical record
		{"Organization", "List:item"},
		{"Practitioner", "Encounter:practitioner"},
		{"Medication", "MedicationRequest:medication"},
	} {
		for _, c := range caps {
			if c.Type == tt.typ && slices.Contains(c.SearchRevInclude, tt.rev) {
				t.Errorf("%s lists _revinclude %s", tt.typ, tt.rev)
			}
		}
	}
}

// TestCapabilityIncludesServed: every searchInclude and searchRevInclude the
// CapabilityStatement lists for Patient, Organization, Practitioner and Encounter is
// answered (200) by a search of that type, and every other source:param pair the
// statement lists anywhere is refused there with 400 and an OperationOutcome, as is a
// _revinclude whose parameter cannot point at the type (PractitionerRole?_revinclude=
// Observation:subject).
func TestCapabilityIncludesServed(t *testing.T) {
	env := newDirEnv(t)
	pid := env.putPatient(t, "b", "caps-1")
	reader := token(t, "client-b", "b", "system/*.rs")
	include, revinclude := env.metadataIncludes(t)
	var pairs []string // every source:param the statement lists
	for _, list := range include {
		for _, p := range list {
			if !slices.Contains(pairs, p) {
				pairs = append(pairs, p)
			}
		}
	}
	slices.Sort(pairs)
	if len(pairs) < 10 {
		t.Fatalf("searchInclude pairs: %v", pairs)
	}
	for _, tt := range []struct{ typ, query string }{
		{"Patient", "_id=" + pid},
		{"Organization", "_id=member-b"},
		{"Practitioner", "name=nobody"},
		{"Encounter", "patient=" + pid},
	} {
		if len(revinclude[tt.typ]) == 0 {
			t.Errorf("%s: no searchRevInclude", tt.typ)
		}
		for _, param := range []string{"_include", "_revinclude"} {
			listed := include[tt.typ]
			if param == "_revinclude" {
				listed = revinclude[tt.typ]
			}
			for _, pair := range pairs {
				target := "/fhir/" + tt.typ + "?" + tt.query + "&" + param + "=" + pair
				code, body := env.do(t, reader, http.MethodGet, target, "")
				switch {
				case slices.Contains(listed, pair) && code != http.StatusOK:
					t.Errorf("listed %s: %d %s", target, code, body)
				case !slices.Contains(listed, pair) && (code != http.StatusBadRequest || !bytes.Contains(body, []byte("OperationOutcome"))):
					t.Errorf("not listed %s: %d %s", target, code, body)
				}
			}
		}
	}
	for _, target := range []string{
		"/fhir/PractitionerRole?specialty=x&_revinclude=Observation:subject",
		"/fhir/Organization?_revinclude=Condition:subject",
		"/fhir/Practitioner?_revinclude=Observation:subject:Patient",
		// A search of reference data includes no patient's records: refused, not empty.
		"/fhir/Organization?_revinclude=List:item",
		"/fhir/Practitioner?_revinclude=Encounter:practitioner",
		"/fhir/Location?_revinclude=Observation:subject",
	} {
		if code, body := env.do(t, reader, http.MethodGet, target, ""); code != http.StatusBadRequest || !strings.Contains(string(body), "_revinclude") {
			t.Errorf("%s: %d %s", target, code, body)
		}
	}
}
