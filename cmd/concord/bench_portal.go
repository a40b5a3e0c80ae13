package main

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/concord-hie/concord/internal/bench"
	"github.com/concord-hie/concord/portal"
)

// s8Names are S8's scenarios: a signed-in patient's portal home page.
var s8Names = []string{"s8-portal-labs"}

// portalConns is S8's concurrency (benchmarks.md: p95 at 32 connections).
const portalConns = 32

// portalPage is S8: GET /labs, the page a patient lands on after sign-in, for the demo
// patient with a login whom the most members know. Each request loads the session from
// Redis, reads the person's regional record of Observations through consent and audit,
// keeps the laboratory results and renders them grouped by test, each row naming its
// source. Measured in req/s against the HTTP hello-world anchor. The session is made
// directly in the portal's session store, as a sign-in through the OIDC provider would
// leave it. Every page must hold one row per laboratory Observation stored for the
// person's Patients (counted with SQL over the stored rows; the patient's own access is
// permitted for every label).
func (e *benchEnv) portalPage() ([]bench.Scenario, error) {
	pi := -1
	for i, p := range e.region.persons {
		if p.Login != "" && (pi < 0 || len(p.Members) > len(e.region.persons[pi].Members)) {
			pi = i
		}
	}
	if pi < 0 {
		return nil, fmt.Errorf("the region has no patient with a login")
	}
	p := e.region.persons[pi]
	mi := p.Members[0]
	src, err := e.m.mpi.SourceByIdentifier(e.ctx, nil, e.region.members[mi].OID, e.region.mrn(mi, pi))
	if err != nil {
		return nil, err
	}
	var want int
	err = e.m.pool.QueryRow(e.ctx, `SELECT count(*) FROM fhir_resources r
		JOIN mpi_source_records s ON s.patient_id = r.patient_id
		WHERE s.person_id = $1 AND r.type = 'Observation' AND NOT r.deleted
			AND convert_from(r.body, 'UTF8')::jsonb->'category' @> '[{"coding":[{"code":"laboratory"}]}]'`,
		string(src.PersonID)).Scan(&want)
	if err == nil && want == 0 {
		err = fmt.Errorf("the person has no lab results")
	}
	if err != nil {
		return nil, err
	}
	// The login the region enrolled (region.seed, with the embedded OIDC provider): the portal
	// reads it again on every request and signs out a session whose login is not enrolled
	// to its person.
	if e.m.devOIDC == nil {
		return nil, fmt.Errorf("the portal scenario needs the embedded OIDC provider's demo logins")
	}
	id, err := e.m.portal.Sessions().Create(e.ctx, portal.Session{Role: portal.RolePatient, PersonID: string(src.PersonID),
		Name: p.Given + " " + p.Family, Issuer: e.m.devOIDC.Issuer(), Subject: "demo-" + p.Login})
	if err != nil {
		return nil, err
	}
	cookie := (&http.Cookie{Name: e.m.portal.SessionCookie(), Value: id}).String()
	header := func() http.Header { return http.Header{"Cookie": {cookie}} }
	check := func(status int, body []byte) error {
		if got := strings.Count(string(body), `<td data-label="Date">`); got != want {
			return fmt.Errorf("the page shows %d lab results, want %d", got, want)
		}
		return nil
	}
	return []bench.Scenario{bench.HTTPScenario{Name: s8Names[0], URL: e.m.cfg.BaseURL + "/labs", Header: header,
		Check: sampled(8, check), Anchor: bench.AnchorHello, Conns: portalConns}}, nil
}
