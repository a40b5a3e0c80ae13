package directory

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/concord-hie/concord/internal/errs"
)

func TestParseEndpoint(t *testing.T) {
	anyPayload := []PayloadType{{SystemPayloadType, "any"}}
	good := []struct {
		name, typ, address string
		payloads           []string
		status             string
		want               PublishedEndpoint
	}{
		{"fhir base", "fhir", "https://fhir.riverside.example/r4", nil, "",
			PublishedEndpoint{ConnectionFHIRRest, "https://fhir.riverside.example/r4", anyPayload, "active"}},
		{"fhir host lower-cased, :443 and trailing slash dropped", ConnectionFHIRRest, "https://FHIR.Riverside.example:443/R4/", nil, "test",
			PublishedEndpoint{ConnectionFHIRRest, "https://fhir.riverside.example/R4", anyPayload, "test"}},
		{"fhir with port, no path", "fhir", "https://10.1.2.3:8443", nil, "",
			PublishedEndpoint{ConnectionFHIRRest, "https://10.1.2.3:8443", anyPayload, "active"}},
		{"mllp", "mllp", "mllp://HL7.Riverside.example:2575", nil, "",
			PublishedEndpoint{ConnectionMLLP, "mllp://hl7.riverside.example:2575", anyPayload, "active"}},
		{"mllp ipv6", "mllp", "mllp://[2001:DB8::1]:2575/", nil, "off",
			PublishedEndpoint{ConnectionMLLP, "mllp://[2001:db8::1]:2575", anyPayload, "off"}},
		{"direct", "direct", "mailto:records@direct.Riverside.example", nil, "",
			PublishedEndpoint{ConnectionDirect, "mailto:records@direct.riverside.example", anyPayload, "active"}},
		{"direct bare", ConnectionDirect, "Records.Desk@direct.riverside.example", nil, "",
			PublishedEndpoint{ConnectionDirect, "mailto:Records.Desk@direct.riverside.example", anyPayload, "active"}},
		{"payload types", "direct", "mailto:a@b.example",
			[]string{"urn:ihe:formatcode|urn:hl7-org:sdwg:ccda-structuredBody:2.1", "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode|urn:ihe:iti:xds-sd:pdf:2008", "none", "none"}, "",
			PublishedEndpoint{ConnectionDirect, "mailto:a@b.example", []PayloadType{{"urn:ihe:formatcode", "urn:hl7-org:sdwg:ccda-structuredBody:2.1"},
				{"http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode", "urn:ihe:iti:xds-sd:pdf:2008"}, {SystemPayloadType, "none"}}, "active"}},
	}
	for _, tt := range good {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseEndpoint(tt.typ, tt.address, tt.payloads, tt.status)
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
	bad := []struct {
		name, typ, address string
		payloads           []string
		status             string
	}{
		{"unknown type", "rest-hook", "https://a.example", nil, ""},
		{"fhir over http", "fhir", "http://fhir.a.example/r4", nil, ""},
		{"fhir with credentials", "fhir", "https://u:p@fhir.a.example/r4", nil, ""},
		{"fhir with query", "fhir", "https://fhir.a.example/r4?x=1", nil, ""},
		{"fhir with empty query", "fhir", "https://fhir.a.example/r4?", nil, ""},
		{"fhir with fragment", "fhir", "https://fhir.a.example/r4#x", nil, ""},
		{"fhir with dot segment", "fhir", "https://fhir.a.example/r4/../admin", nil, ""},
		{"fhir opaque", "fhir", "https:fhir.a.example", nil, ""},
		{"fhir no host", "fhir", "https:///r4", nil, ""},
		{"fhir bad host", "fhir", "https://fhir_a.example/r4", nil, ""},
		{"fhir numeric host", "fhir", "https://1.2.3.999/r4", nil, ""},
		{"fhir bad port", "fhir", "https://fhir.a.example:70000/r4", nil, ""},
		{"fhir empty port", "fhir", "https://fhir.a.example:/r4", nil, ""},
		{"fhir space", "fhir", "https://fhir.a.example/r 4", nil, ""},
		{"fhir too long", "fhir", "https://fhir.a.example/" + strings.Repeat("a", 1024), nil, ""},
		{"mllp without port", "mllp", "mllp://hl7.a.example", nil, ""},
		{"mllp with path", "mllp", "mllp://hl7.a.example:2575/x", nil, ""},
		{"mllp as host:port", "mllp", "hl7.a.example:2575", nil, ""},
		{"mllp tcp scheme", "mllp", "tcp://hl7.a.example:2575", nil, ""},
		{"mllp port 0", "mllp", "mllp://hl7.a.example:0", nil, ""},
		{"mllp ipv6 zone", "mllp", "mllp://[fe80::1%25eth0]:2575", nil, ""},
		{"direct https", "direct", "https://a.example", nil, ""},
		{"direct two addresses", "direct", "mailto:a@b.example,c@d.example", nil, ""},
		{"direct headers", "direct", "mailto:a@b.example?subject=x", nil, ""},
		{"direct no domain dot", "direct", "mailto:a@localhost", nil, ""},
		{"direct ip domain", "direct", "mailto:a@10.0.0.1", nil, ""},
		{"direct two at", "direct", "mailto:a@b@c.example", nil, ""},
		{"direct bad local", "direct", "mailto:a..b@c.example", nil, ""},
		{"empty address", "fhir", "", nil, ""},
		{"bad status", "fhir", "https://a.example", nil, "entered-in-error"},
		{"payload without system", "fhir", "https://a.example", []string{"ccda"}, ""},
		{"payload bad system", "fhir", "https://a.example", []string{"ftp://x|y"}, ""},
		{"payload empty code", "fhir", "https://a.example", []string{"urn:x:y|"}, ""},
		{"payload two bars", "fhir", "https://a.example", []string{"urn:x:y|a|b"}, ""},
		{"too many payloads", "fhir", "https://a.example", strings.Split(strings.Repeat("urn:x:y|c,", 11)[:10*11-1], ","), ""},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := ParseEndpoint(tt.typ, tt.address, tt.payloads, tt.status); errs.CodeOf(err) != errs.Invalid {
				t.Fatalf("got %+v, %v; want Invalid", got, err)
			}
		})
	}
}

func TestSetEndpoint(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, a, _ := alphaBeta(t)
	mllp := PublishedEndpoint{ConnectionType: ConnectionMLLP, Address: "mllp://HL7.alpha.example:2575"}
	got, err := s.SetEndpoint(ctx, a.ID, mllp)
	if err != nil || got.Address != "mllp://hl7.alpha.example:2575" || got.Status != "active" {
		t.Fatalf("mllp: %+v %v", got, err)
	}
	fhirBase := PublishedEndpoint{ConnectionType: ConnectionFHIRRest, Address: "https://fhir.alpha.example/r4"}
	if _, err := s.SetEndpoint(ctx, a.ID, fhirBase); err != nil {
		t.Fatal(err)
	}
	// The same address again updates status and payload types; it adds no row.
	mllp.Status, mllp.PayloadTypes = "suspended", []PayloadType{{"http://terminology.hl7.org/CodeSystem/v2-0076", "ORU"}}
	if _, err := s.SetEndpoint(ctx, a.ID, mllp); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetEndpoint(ctx, "nobody", fhirBase); errs.CodeOf(err) != errs.NotFound {
		t.Fatalf("unknown member: %v", err)
	}
	if _, err := s.SetEndpoint(ctx, a.ID, PublishedEndpoint{ConnectionType: ConnectionFHIRRest, Address: "http://fhir.alpha.example"}); errs.CodeOf(err) != errs.Invalid {
		t.Fatalf("http FHIR base: %v", err)
	}
	ls, err := s.Listings(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []PublishedEndpoint{
		{ConnectionFHIRRest, "https://fhir.alpha.example/r4", []PayloadType{{SystemPayloadType, "any"}}, "active"},
		{ConnectionMLLP, "mllp://hl7.alpha.example:2575", []PayloadType{{"http://terminology.hl7.org/CodeSystem/v2-0076", "ORU"}}, "suspended"},
	}
	if len(ls) != 2 || !reflect.DeepEqual(ls[0].Endpoints, want) || ls[1].Endpoints != nil {
		t.Fatalf("listings: %+v", ls)
	}
	// The directory Endpoints: ids stable across a status change, of no stored id's form.
	eps := MemberEndpoints(ls[0])
	if len(eps) != 2 || eps[1].Status != "suspended" || eps[1].ID != publishedID(a.ID, ConnectionMLLP, "mllp://hl7.alpha.example:2575") {
		t.Fatalf("endpoints: %+v", eps)
	}
}

// TestRemoveEndpoint: a removed endpoint is gone from the member's listing, its row kept
// with removed_at as the record of the removal; removing it again, or one never published,
// is NotFound; registering it again publishes it anew.
func TestRemoveEndpoint(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, a, b := alphaBeta(t)
	v2 := []PayloadType{{"http://terminology.hl7.org/CodeSystem/v2-0076", "ORU"}}
	for _, e := range []PublishedEndpoint{
		{ConnectionType: ConnectionFHIRRest, Address: "https://fhir.alpha.example/r4"},
		{ConnectionType: ConnectionMLLP, Address: "mllp://hl7.alpha.example:2575", PayloadTypes: v2, Status: "off"},
	} {
		if _, err := s.SetEndpoint(ctx, a.ID, e); err != nil {
			t.Fatal(err)
		}
	}
	// The short type name and an address as typed (upper case) name the stored endpoint.
	got, err := s.RemoveEndpoint(ctx, a.ID, "mllp", "mllp://HL7.alpha.example:2575")
	if want := (PublishedEndpoint{ConnectionMLLP, "mllp://hl7.alpha.example:2575", v2, "off"}); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("remove: %+v %v, want %+v", got, err, want)
	}
	ls, err := s.Listings(ctx, []string{a.ID})
	if err != nil || len(ls) != 1 || len(ls[0].Endpoints) != 1 || ls[0].Endpoints[0].ConnectionType != ConnectionFHIRRest {
		t.Fatalf("listing after removal: %+v %v", ls, err)
	}
	var removed bool
	if err := s.db.QueryRow(ctx, `SELECT removed_at IS NOT NULL AND updated_at >= removed_at FROM directory_endpoints
		WHERE member_id = $1 AND connection_type = $2`, a.ID, ConnectionMLLP).Scan(&removed); err != nil || !removed {
		t.Fatalf("removal recorded: %v %v", removed, err)
	}
	for _, tt := range []struct {
		name, member, typ, address string
		code                       errs.Code
	}{
		{"again", a.ID, "mllp", "mllp://hl7.alpha.example:2575", errs.NotFound},
		{"another member's", b.ID, "fhir", "https://fhir.alpha.example/r4", errs.NotFound},
		{"never published", a.ID, "direct", "mailto:x@alpha.example", errs.NotFound},
		{"unknown member", "nobody", "fhir", "https://fhir.alpha.example/r4", errs.NotFound},
		{"unknown type", a.ID, "ftp", "ftp://alpha.example", errs.Invalid},
	} {
		if _, err := s.RemoveEndpoint(ctx, tt.member, tt.typ, tt.address); errs.CodeOf(err) != tt.code {
			t.Errorf("%s: %v, want %s", tt.name, err, tt.code)
		}
	}
	if _, err := s.SetEndpoint(ctx, a.ID, PublishedEndpoint{ConnectionType: ConnectionMLLP, Address: "mllp://hl7.alpha.example:2575"}); err != nil {
		t.Fatal(err)
	}
	if ls, err := s.Listings(ctx, []string{a.ID}); err != nil || len(ls[0].Endpoints) != 2 || ls[0].Endpoints[1].Status != "active" {
		t.Fatalf("published again: %+v %v", ls, err)
	}
}

// TestSeedEndpoint: seeding publishes an endpoint only where the member never registered
// one at its type and address: not over a changed one, not over a removed one.
func TestSeedEndpoint(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, a, _ := alphaBeta(t)
	fhirBase := PublishedEndpoint{ConnectionType: ConnectionFHIRRest, Address: "https://fhir.alpha.example/r4"}
	mllp := PublishedEndpoint{ConnectionType: ConnectionMLLP, Address: "mllp://hl7.alpha.example:2575"}
	for _, e := range []PublishedEndpoint{fhirBase, mllp} {
		if added, err := s.SeedEndpoint(ctx, a.ID, e); err != nil || !added {
			t.Fatalf("first seed of %s: %v %v", e.Address, added, err)
		}
	}
	if _, err := s.SetEndpoint(ctx, a.ID, PublishedEndpoint{ConnectionType: ConnectionFHIRRest, Address: fhirBase.Address, Status: "off"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RemoveEndpoint(ctx, a.ID, ConnectionMLLP, mllp.Address); err != nil {
		t.Fatal(err)
	}
	for _, e := range []PublishedEndpoint{fhirBase, mllp} {
		if added, err := s.SeedEndpoint(ctx, a.ID, e); err != nil || added {
			t.Fatalf("second seed of %s: %v %v", e.Address, added, err)
		}
	}
	ls, err := s.Listings(ctx, []string{a.ID})
	if err != nil || len(ls[0].Endpoints) != 1 || ls[0].Endpoints[0].Status != "off" {
		t.Fatalf("after seeding again: %+v %v", ls, err)
	}
	if _, err := s.SeedEndpoint(ctx, "nobody", fhirBase); errs.CodeOf(err) != errs.NotFound {
		t.Fatalf("unknown member: %v", err)
	}
	if _, err := s.SeedEndpoint(ctx, a.ID, PublishedEndpoint{ConnectionType: ConnectionFHIRRest, Address: "http://x.example"}); errs.CodeOf(err) != errs.Invalid {
		t.Fatalf("invalid endpoint: %v", err)
	}
}
