package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"github.com/concord-hie/concord/directory"
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
