package exchange

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The security review's finding over HTTP: after the client is disabled and its scopes cut,
// the token it already holds is refused on the next FHIR request, as any invalid token is
// (401, WWW-Authenticate, OperationOutcome), and stays refused.
func TestDisabledClientTokenRefusedAtOnce(t *testing.T) {
	env := newDirEnv(t)
	sc := newSMARTClient(t, env, []string{"system/*.rs", "system/Observation.c"})
	other := newSMARTClient(t, env, []string{"system/*.rs"})
	tok, otherTok := sc.token(t, "system/*.rs system/Observation.c"), other.token(t, "system/*.rs")
	for range 2 { // the second call is answered from Verify's memory of the token
		if st, body := env.do(t, tok, "GET", "/fhir/Endpoint", ""); st != http.StatusOK {
			t.Fatalf("before: %d %s", st, body)
		}
	}
	if _, err := env.pool.Exec(context.Background(), `UPDATE directory_clients SET scopes = ARRAY['system/Observation.r'], disabled_at = now() WHERE client_id = $1`, sc.id); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		req := httptest.NewRequest("GET", "/fhir/Endpoint", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		w := httptest.NewRecorder()
		env.e.ServeHTTP(w, req)
		if w.Code != http.StatusUnauthorized {
			t.Fatalf("after disabling, request %d: %d %s; want 401", i+1, w.Code, w.Body)
		}
		if h := w.Header().Get("WWW-Authenticate"); h != `Bearer realm="concord", error="invalid_token"` {
			t.Errorf("WWW-Authenticate %q", h)
		}
		if !strings.Contains(w.Body.String(), `"resourceType":"OperationOutcome"`) || strings.Contains(w.Body.String(), `"Bundle"`) {
			t.Errorf("body %s; want an OperationOutcome", w.Body)
		}
	}
	w := sc.post(t, "/token", "application/x-www-form-urlencoded", sc.form(t, "system/Observation.r").Encode())
	if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), `"invalid_client"`) {
		t.Errorf("new token for the disabled client: %d %s; want 401 invalid_client", w.Code, w.Body)
	}
	if st, body := env.do(t, otherTok, "GET", "/fhir/Endpoint", ""); st != http.StatusOK {
		t.Fatalf("another client of the same member: %d %s; want 200", st, body)
	}
}
