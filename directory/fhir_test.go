package directory

import (
	"encoding/json"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/concord-hie/concord/fhir"
)

var riverside = Listing{
	Member:      Member{ID: "riverside", Name: "Riverside Clinic", System: "urn:oid:2.16.840.1.113883.3.1"},
	Systems:     []string{"urn:oid:2.16.840.1.113883.3.1", "urn:oid:2.16.840.1.113883.3.1.2", "https://riverside.example/mrn"},
	HookOrigins: []string{"https://hooks.riverside.example:443", "https://ehr.riverside.example:8443"},
}

func TestMemberOrganization(t *testing.T) {
	o := MemberOrganization(riverside)
	want := []Identifier{
		{Use: "official", System: SystemURI, Value: "urn:oid:2.16.840.1.113883.3.1"},
		{Use: "secondary", System: SystemURI, Value: "urn:oid:2.16.840.1.113883.3.1.2"},
	}
	if o.ID != "member-riverside" || o.Name != "Riverside Clinic" || !o.Active || !reflect.DeepEqual(o.Identifiers, want) {
		t.Fatalf("organization: %+v", o)
	}
	if len(o.Endpoints) != 2 {
		t.Fatalf("endpoints: %v", o.Endpoints)
	}
	withNPI := riverside
	withNPI.NPI = "1234567893"
	if got := MemberOrganization(withNPI).Identifiers; got[len(got)-1] != (Identifier{System: SystemNPI, Value: "1234567893"}) {
		t.Fatalf("npi: %+v", got)
	}
	httpOnly := Listing{Member: Member{ID: "x", Name: "X", System: "https://x.example/mrn"}}
	if got := MemberOrganization(httpOnly).Identifiers; got != nil {
		t.Fatalf("an http system is no organization identifier: %+v", got)
	}

	var r struct {
		ResourceType string
		ID           string
		Meta         struct{ Source string }
		Identifier   []struct{ Use, System, Value string }
		Active       bool
		Name         string
		Endpoint     []struct{ Reference string }
	}
	body := o.FHIR("https://concord.test/directory")
	if _, err := fhir.Parse(body); err != nil {
		t.Fatalf("not valid R4: %v: %s", err, body)
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	if r.ResourceType != "Organization" || r.Meta.Source != "https://concord.test/directory" || len(r.Identifier) != 2 ||
		!strings.HasPrefix(r.Endpoint[0].Reference, "Endpoint/hook-") {
		t.Fatalf("FHIR: %s", body)
	}
}

func TestMemberEndpoints(t *testing.T) {
	eps := MemberEndpoints(riverside)
	if len(eps) != 2 || eps[0].Address != "https://ehr.riverside.example:8443" || eps[1].Address != "https://hooks.riverside.example:443" {
		t.Fatalf("endpoints by address: %+v", eps)
	}
	for _, e := range eps {
		if e.OrgID != "member-riverside" || e.ConnectionType != ConnectionFHIRRest || e.Status != "active" ||
			!IsDirectoryID(e.ID) || len(e.ID) > 64 {
			t.Fatalf("endpoint: %+v", e)
		}
	}
	if again := MemberEndpoints(riverside); again[0].ID != eps[0].ID {
		t.Fatal("endpoint ids must be stable")
	}
	other := riverside
	other.Member.ID = "other"
	if MemberEndpoints(other)[0].ID == eps[0].ID {
		t.Fatal("the same origin registered by two members must give two ids")
	}
	if got := MemberEndpoints(Listing{Member: riverside.Member}); len(got) != 0 {
		t.Fatalf("no registered origin, no endpoint: %+v", got)
	}

	body := eps[0].FHIR("https://concord.test/directory")
	if _, err := fhir.Parse(body); err != nil {
		t.Fatalf("not valid R4: %v: %s", err, body)
	}
	for _, want := range []string{`"connectionType":{"system":"` + SystemConnectionType + `","code":"hl7-fhir-rest"}`,
		`"managingOrganization":{"reference":"Organization/member-riverside","display":"Riverside Clinic"}`,
		`"address":"https://ehr.riverside.example:8443"`, `"payloadType":[{"coding":[{"system":"` + SystemPayloadType + `","code":"any"}]`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("missing %s in %s", want, body)
		}
	}
}

func TestExchangeOrganization(t *testing.T) {
	x := Exchange{FHIRBase: "https://concord.test/fhir"}
	o, eps := ExchangeOrganization(x), ExchangeEndpoints(x)
	if o.ID != ExchangeOrganizationID || o.Name != "Concord" || o.Identifiers[0].Value != x.FHIRBase ||
		len(eps) != 1 || eps[0].Address != x.FHIRBase || eps[0].OrgID != o.ID || o.Endpoints[0] != eps[0].ID {
		t.Fatalf("exchange: %+v %+v", o, eps)
	}
	if ExchangeEndpoints(Exchange{}) != nil {
		t.Fatal("no base, no endpoint")
	}
}

func TestIsDirectoryID(t *testing.T) {
	for id, want := range map[string]bool{
		"member-riverside": true, "concord": true, "concord-fhir": true, "hook-0123": true, "ep-0123": true,
		"0123456789abcdef0123456789abcdef": false, "riverside": false, "": false,
	} {
		if got := IsDirectoryID(id); got != want {
			t.Errorf("IsDirectoryID(%q) = %v", id, got)
		}
	}
}

func TestOrganizationMatches(t *testing.T) {
	o := MemberOrganization(riverside)
	tests := []struct {
		name, query string
		want        bool
	}{
		{"no clause", "", true},
		{"identifier system|value", "identifier=urn:ietf:rfc:3986|urn:oid:2.16.840.1.113883.3.1", true},
		{"identifier value only", "identifier=urn:oid:2.16.840.1.113883.3.1", true},
		{"secondary oid", "identifier=urn:oid:2.16.840.1.113883.3.1.2", true},
		{"identifier system only", "identifier=urn:ietf:rfc:3986|", true},
		{"identifier no system", "identifier=|urn:oid:2.16.840.1.113883.3.1", false},
		{"identifier other", "identifier=urn:oid:9.9", false},
		{"identifier or", "identifier=urn:oid:9.9,urn:oid:2.16.840.1.113883.3.1", true},
		{"identifier not", "identifier:not=urn:oid:9.9", true},
		{"the MRN namespace is no identifier of the organization", "identifier=urn:oid:2.16.840.1.113883.3.1|x", false},
		{"name prefix, folded", "name=river", true},
		{"name contains", "name:contains=clin", true},
		{"name exact", "name:exact=Riverside Clinic", true},
		{"name exact case", "name:exact=riverside clinic", false},
		{"name other", "name=lake", false},
		{"active", "active=true", true},
		{"inactive", "active=false", false},
		{"_id", "_id=member-riverside", true},
		{"_id other", "_id=member-lake", false},
		{"and", "name=river&identifier=urn:oid:9.9", false},
		{"lastUpdated never matches", "_lastUpdated=ge2020-01-01", false},
		{"lastUpdated missing", "_lastUpdated:missing=true", true},
		{"identifier missing", "identifier:missing=true", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, _ := url.ParseQuery(tt.query)
			s, err := fhir.ParseSearch("Organization", q)
			if err != nil {
				t.Fatal(err)
			}
			if got := o.Matches(s); got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseEndpointSearch(t *testing.T) {
	const base = "https://concord.test/fhir"
	eps := append(ExchangeEndpoints(Exchange{FHIRBase: base}), MemberEndpoints(riverside)...)
	tests := []struct {
		name, query string
		want        int // matches
		err         bool
	}{
		{"all", "", 3, false},
		{"organization id", "organization=member-riverside", 2, false},
		{"organization reference", "organization=Organization/member-riverside", 2, false},
		{"organization absolute", "organization=" + base + "/Organization/member-riverside", 2, false},
		{"organization typed", "organization:Organization=member-riverside", 2, false},
		{"organization or", "organization=concord,member-riverside", 3, false},
		{"organization unknown", "organization=member-nobody", 0, false},
		{"connection type", "connection-type=hl7-fhir-rest", 3, false},
		{"connection type with system", "connection-type=" + SystemConnectionType + "|hl7-fhir-rest", 3, false},
		{"connection type mllp", "connection-type=hl7v2-mllp", 0, false},
		{"connection type not", "connection-type:not=hl7v2-mllp", 3, false},
		{"status", "status=active", 3, false},
		{"status off", "status=off", 0, false},
		{"identifier", "identifier=x", 0, false},
		{"_id", "_id=concord-fhir", 1, false},
		{"and", "organization=concord&connection-type=hl7-fhir-rest", 1, false},
		{"unknown parameter", "address=x", 0, true},
		{"unknown modifier", "organization:missing=true", 0, true},
		{"empty value", "status=", 0, true},
		{"bad count", "_count=-1", 0, true},
		{"bad organization", "organization=Practitioner/x/y", 0, true},
		{"include organization", "_include=Endpoint:organization&status=active", 3, false},
		{"include organization typed", "_include=Endpoint:organization:Organization", 3, false},
		{"include other", "_include=Endpoint:managingOrganization", 0, true},
		{"include another type", "_include=Organization:endpoint", 0, true},
		{"include iterate", "_include:iterate=Endpoint:organization", 0, true},
		{"revinclude", "_revinclude=Organization:endpoint", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, _ := url.ParseQuery(tt.query)
			s, err := ParseEndpointSearch(q, base, 20, 100)
			if (err != nil) != tt.err {
				t.Fatalf("err %v, want error %v", err, tt.err)
			}
			if err != nil {
				return
			}
			n := 0
			for _, e := range eps {
				if s.Matches(e) {
					n++
				}
			}
			if n != tt.want {
				t.Fatalf("%d matches, want %d", n, tt.want)
			}
			if got, want := s.IncludeOrganization, strings.Contains(tt.query, "_include="); got != want {
				t.Fatalf("IncludeOrganization %v, want %v", got, want)
			}
		})
	}
}

func TestEndpointSearchPage(t *testing.T) {
	eps := MemberEndpoints(riverside)
	eps = append(eps, eps[0], eps[1]) // four
	page := func(query string) (int, int) {
		q, _ := url.ParseQuery(query)
		s, err := ParseEndpointSearch(q, "", 20, 3)
		if err != nil {
			t.Fatal(err)
		}
		got, next := s.Page(eps)
		return len(got), next
	}
	for _, tt := range []struct {
		query      string
		n, nextOff int
	}{
		{"", 4, -1}, {"_count=3", 3, 3}, {"_count=50", 3, 3}, {"_count=3&_offset=3", 1, -1},
		{"_offset=4", 0, -1}, {"_offset=9", 0, -1}, {"_count=0", 0, -1},
	} {
		if n, next := page(tt.query); n != tt.n || next != tt.nextOff {
			t.Errorf("%q: %d entries, next %d; want %d, %d", tt.query, n, next, tt.n, tt.nextOff)
		}
	}
}

// published is riverside with an NPI and the endpoints it publishes besides its hooks.
func published() Listing {
	l := riverside
	l.NPI = "1234567893"
	l.Endpoints = []PublishedEndpoint{
		{ConnectionMLLP, "mllp://hl7.riverside.example:2575", []PayloadType{{"http://terminology.hl7.org/CodeSystem/v2-0076", "ORU"}, {"http://terminology.hl7.org/CodeSystem/v2-0076", "ADT"}}, "active"},
		{ConnectionFHIRRest, "https://fhir.riverside.example/r4", []PayloadType{{SystemPayloadType, "any"}}, "active"},
		{ConnectionDirect, "mailto:records@direct.riverside.example", []PayloadType{{SystemPayloadType, "any"}}, "off"},
	}
	return l
}

func TestPublishedEndpoints(t *testing.T) {
	l := published()
	eps := MemberEndpoints(l)
	if len(eps) != 5 {
		t.Fatalf("endpoints: %+v", eps)
	}
	// Hooks first (by origin), then the published ones by connection type and address.
	var got []string
	for _, e := range eps {
		got = append(got, e.ConnectionType+" "+e.Address+" "+e.Status)
		if e.OrgID != "member-riverside" || !IsDirectoryID(e.ID) || len(e.ID) > 64 || storedIDForm(e.ID) {
			t.Errorf("endpoint id/org: %+v", e)
		}
	}
	want := []string{
		"hl7-fhir-rest https://ehr.riverside.example:8443 active",
		"hl7-fhir-rest https://hooks.riverside.example:443 active",
		"direct-project mailto:records@direct.riverside.example off",
		"hl7-fhir-rest https://fhir.riverside.example/r4 active",
		"hl7v2-mllp mllp://hl7.riverside.example:2575 active",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("endpoints:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	ids := map[string]bool{}
	for _, e := range eps {
		ids[e.ID] = true
	}
	if len(ids) != 5 || !strings.HasPrefix(eps[2].ID, "ep-") {
		t.Fatalf("ids: %v", ids)
	}
	// Stable: a status change or another order keeps every id; another member gets others.
	l2 := published()
	l2.Endpoints[2].Status = "active"
	l2.Endpoints[0], l2.Endpoints[1] = l2.Endpoints[1], l2.Endpoints[0]
	for i, e := range MemberEndpoints(l2) {
		if e.ID != eps[i].ID {
			t.Fatalf("id %d changed: %s, was %s", i, e.ID, eps[i].ID)
		}
	}
	other := published()
	other.Member.ID = "other"
	if MemberEndpoints(other)[4].ID == eps[4].ID {
		t.Fatal("the same MLLP address published by two members must give two ids")
	}
	// The same address under another connection type is another endpoint.
	if publishedID("riverside", ConnectionFHIRRest, "x") == publishedID("riverside", ConnectionMLLP, "x") {
		t.Fatal("connection type not in the id")
	}

	o := MemberOrganization(l)
	if len(o.Endpoints) != 5 || o.Endpoints[4] != eps[4].ID {
		t.Fatalf("organization endpoints: %v", o.Endpoints)
	}
	if got := o.Identifiers[len(o.Identifiers)-1]; got != (Identifier{System: SystemNPI, Value: "1234567893"}) {
		t.Fatalf("npi identifier: %+v", got)
	}

	body := eps[4].FHIR("https://concord.test/directory")
	if _, err := fhir.Parse(body); err != nil {
		t.Fatalf("not valid R4: %v: %s", err, body)
	}
	for _, want := range []string{`"status":"active"`, `"connectionType":{"system":"` + SystemConnectionType + `","code":"hl7v2-mllp"}`,
		`"name":"Riverside Clinic HL7 v2 receiver (MLLP)"`, `"address":"mllp://hl7.riverside.example:2575"`,
		`"payloadType":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0076","code":"ORU"}]},{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0076","code":"ADT"}]}]`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("missing %s in %s", want, body)
		}
	}
	body = eps[2].FHIR("https://concord.test/directory")
	if _, err := fhir.Parse(body); err != nil || !strings.Contains(string(body), `"status":"off"`) ||
		!strings.Contains(string(body), `"payloadType":[{"coding":[{"system":"`+SystemPayloadType+`","code":"any"}],"text":"Direct secure messages"}]`) ||
		strings.Contains(string(body), "payloadMimeType") {
		t.Fatalf("direct: %v %s", err, body)
	}
}

// storedIDForm reports whether id has a stored resource's form: 32 lower-case hex digits.
func storedIDForm(id string) bool {
	if len(id) != 32 {
		return false
	}
	return strings.Trim(id, "0123456789abcdef") == ""
}

func TestPublishedSearch(t *testing.T) {
	o := MemberOrganization(published())
	for _, tt := range []struct {
		query string
		want  bool
	}{
		{"identifier=" + SystemNPI + "|1234567893", true},
		{"identifier=1234567893", true},
		{"identifier=" + SystemNPI + "|", true},
		{"identifier=" + SystemNPI + "|1245319599", false},
		{"identifier=" + SystemURI + "|1234567893", false},
	} {
		q, _ := url.ParseQuery(tt.query)
		s, err := fhir.ParseSearch("Organization", q)
		if err != nil {
			t.Fatal(err)
		}
		if got := o.Matches(s); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.query, got, tt.want)
		}
	}
	eps := MemberEndpoints(published())
	for _, tt := range []struct {
		query string
		want  int
	}{
		{"connection-type=hl7v2-mllp", 1},
		{"connection-type=direct-project", 1},
		{"connection-type=hl7-fhir-rest", 3},
		{"connection-type=hl7v2-mllp,direct-project&status=active", 1},
		{"status:not=active", 1},
		{"organization=member-riverside", 5},
	} {
		q, _ := url.ParseQuery(tt.query)
		s, err := ParseEndpointSearch(q, "", 20, 100)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range eps {
			if s.Matches(e) {
				n++
			}
		}
		if n != tt.want {
			t.Errorf("%s: %d matches, want %d", tt.query, n, tt.want)
		}
	}
}
