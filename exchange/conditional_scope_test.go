package exchange

import (
	"bytes"
	"net/http"
	"testing"
	"time"

	"github.com/concord-hie/concord/consent"
)

// TestConditionalCreateNeedsReadScope: a conditional create whose If-None-Exist matches
// answers with the stored resource, so it is a read. A token that may create Observations
// but not read them (system/Observation.c) is refused (403) before anything is matched,
// through the REST interaction and a Bundle entry alike; with the read scope too, the match
// answers 200 as before. Without this, the create scope read what GET refuses.
func TestConditionalCreateNeedsReadScope(t *testing.T) {
	env := newIdentityEnv(t)
	all := env.tok(t, env.a, consent.PurposeTreatment)
	pid := env.create(t, env.a, "M1", demoPatient(env.a.System, "M1", "Ana", "Lopez", "female", "1980-02-03", "555-0100"))
	const secret = "SECRET-VALUE-42"
	obs := func(value string) []byte {
		return []byte(`{"resourceType":"Observation","identifier":[{"system":"urn:lab","value":"acc-1"}],"status":"final","code":{"coding":[{"system":"http://loinc.org","code":"2345-7"}]},"subject":{"reference":"Patient/` + pid + `"},"valueString":"` + value + `"}`)
	}
	if st, body, _ := do(t, "POST", env.base+"/Observation", all, obs(secret)); st != http.StatusCreated {
		t.Fatalf("create Observation: %d %s", st, body)
	}
	cond := "patient=" + pid + "&code=http://loinc.org|2345-7"

	createOnly := mintToken(t, env.key, env.issuer, "client-"+env.a.ID, env.a.ID, "system/Observation.c", consent.PurposeTreatment, 5*time.Minute)
	st, body, _ := do(t, "POST", env.base+"/Observation", createOnly, obs("probe"), "If-None-Exist", cond)
	if st != http.StatusForbidden || bytes.Contains(body, []byte(secret)) {
		t.Fatalf("conditional create with a create-only token: %d %s; want 403 and nothing stored shown", st, body)
	}
	bundle := []byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:0b7c0f5e-7a43-4c1e-9d8b-2f7d7c1a0001","resource":` +
		string(obs("probe")) + `,"request":{"method":"POST","url":"Observation","ifNoneExist":"` + cond + `"}}]}`)
	st, body, _ = do(t, "POST", env.base, createOnly, bundle)
	if st != http.StatusForbidden || bytes.Contains(body, []byte(secret)) {
		t.Fatalf("Bundle ifNoneExist with a create-only token: %d %s; want 403", st, body)
	}

	createRead := mintToken(t, env.key, env.issuer, "client-"+env.a.ID, env.a.ID, "system/Observation.cr", consent.PurposeTreatment, 5*time.Minute)
	st, body, _ = do(t, "POST", env.base+"/Observation", createRead, obs("probe"), "If-None-Exist", cond)
	if st != http.StatusOK || !bytes.Contains(body, []byte(secret)) {
		t.Fatalf("conditional create with create and read scopes: %d %s; want 200 with the match", st, body)
	}
}
