package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/concord-hie/concord/directory"
	"github.com/concord-hie/concord/internal/testkit"
)

// TestDemoDirectory: every demo member has a valid NPI, found through Organization search,
// and publishes a FHIR base and an MLLP receiver, listed as its Endpoints.
func TestDemoDirectory(t *testing.T) {
	region := demoRegion(0)
	for _, dm := range region.members {
		if !directory.ValidNPI(dm.NPI) {
			t.Fatalf("demo member %s NPI %q is not valid", dm.ID, dm.NPI)
		}
	}
	m := demoEnv(t)
	region = demoRegion(m.cfg.DemoSeed)
	base := m.cfg.BaseURL + "/fhir"
	tok := tokenFor(t, m, region.members[1].ID, "system/Organization.rs system/Endpoint.rs")
	for _, dm := range region.members {
		status, body, _ := fhirDo(t, "GET", base+"/Organization?identifier="+url.QueryEscape(directory.SystemNPI+"|"+dm.NPI), tok, nil)
		var orgs struct {
			Entry []struct {
				Resource struct {
					ID       string
					Endpoint []struct{ Reference string }
				}
			}
		}
		if status != http.StatusOK || json.Unmarshal(body, &orgs) != nil || len(orgs.Entry) != 1 ||
			orgs.Entry[0].Resource.ID != directory.OrganizationID(dm.ID) || len(orgs.Entry[0].Resource.Endpoint) != 2 {
			t.Fatalf("%s by NPI: %d %s", dm.ID, status, body)
		}
		status, body, _ = fhirDo(t, "GET", base+"/Endpoint?organization="+directory.OrganizationID(dm.ID), tok, nil)
		var eps struct {
			Entry []struct {
				Resource struct {
					Address        string
					ConnectionType struct{ Code string }
				}
			}
		}
		if status != http.StatusOK || json.Unmarshal(body, &eps) != nil || len(eps.Entry) != 2 ||
			eps.Entry[0].Resource.Address != "https://fhir."+dm.ID+".example/r4" || eps.Entry[0].Resource.ConnectionType.Code != directory.ConnectionFHIRRest ||
			eps.Entry[1].Resource.Address != "mllp://hl7."+dm.ID+".example:2575" || eps.Entry[1].Resource.ConnectionType.Code != directory.ConnectionMLLP {
			t.Fatalf("%s endpoints: %d %s", dm.ID, status, body)
		}
	}
}

// TestDemoDirectoryKeepsOperatorEndpoints: the demo seeds a member's endpoints only where
// none was registered, so a restart keeps what the operator changed: a status and payload
// set, an endpoint removed.
func TestDemoDirectoryKeepsOperatorEndpoints(t *testing.T) {
	ctx := context.Background()
	m := &Main{directory: directory.NewStore(testkit.DB(t))}
	region := demoRegion(0)
	for _, dm := range region.members {
		if got, err := m.directory.AddMember(ctx, dm.Name, dm.OID); err != nil || got.ID != dm.ID {
			t.Fatalf("member %s: %+v %v", dm.ID, got, err)
		}
	}
	if err := region.seedDirectory(ctx, m); err != nil {
		t.Fatal(err)
	}
	first := region.members[0].ID
	fhirBase, mllp := "https://fhir."+first+".example/r4", "mllp://hl7."+first+".example:2575"
	if _, err := m.directory.SetEndpoint(ctx, first, directory.PublishedEndpoint{ConnectionType: directory.ConnectionFHIRRest, Address: fhirBase,
		Status: "suspended", PayloadTypes: []directory.PayloadType{{System: "urn:x:y", Code: "z"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.directory.RemoveEndpoint(ctx, first, "mllp", mllp); err != nil {
		t.Fatal(err)
	}
	if err := region.seedDirectory(ctx, m); err != nil { // the next start
		t.Fatal(err)
	}
	ls, err := m.directory.Listings(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		var got []string
		for _, e := range l.Endpoints {
			got = append(got, e.Address+" "+e.Status+" "+e.PayloadTypes[0].String())
		}
		want := []string{"https://fhir." + l.Member.ID + ".example/r4 active " + directory.SystemPayloadType + "|any",
			"mllp://hl7." + l.Member.ID + ".example:2575 active http://terminology.hl7.org/CodeSystem/v2-0076|" + map[bool]string{true: "OML", false: "ADT"}[strings.HasSuffix(l.Member.ID, "-laboratory")]}
		if l.Member.ID == first {
			want = []string{fhirBase + " suspended urn:x:y|z"}
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s after a restart:\n%s\nwant\n%s", l.Member.ID, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}
