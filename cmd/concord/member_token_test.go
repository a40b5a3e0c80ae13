package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// TestTokenSourceRefusesRedirect: the token request carries a signed client assertion, a
// credential, so a redirect from the token endpoint is an error and never followed: a 307
// or 308 would re-send the assertion to whatever host it names (security.md §4, redirects).
func TestTokenSourceRefusesRedirect(t *testing.T) {
	var stolen atomic.Int32
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		if r.PostForm.Get("client_assertion") != "" {
			stolen.Add(1)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"access_token":"x","expires_in":300}`))
	}))
	defer elsewhere.Close()
	for _, code := range []int{http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		tokenEP := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, elsewhere.URL+"/token", code)
		}))
		dir := t.TempDir()
		priv, _, err := newClientKey("m1")
		if err != nil {
			t.Fatal(err)
		}
		creds, _ := json.Marshal(map[string]any{"client_id": "c1", "private_jwk": json.RawMessage(priv)})
		if err := os.MkdirAll(filepath.Join(dir, "demo-clients"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "demo-clients", "m1.json"), creds, 0o600); err != nil {
			t.Fatal(err)
		}
		ts, err := newTokenSource(dir, "m1", tokenEP.URL+"/token", "system/*.rs")
		if err != nil {
			t.Fatal(err)
		}
		err = ts.refresh()
		tokenEP.Close()
		if err == nil || ts.token != "" {
			t.Errorf("%d from the token endpoint: token %q, err %v; want an error", code, ts.token, err)
		}
	}
	if n := stolen.Load(); n != 0 {
		t.Fatalf("the client assertion followed %d redirects to another host", n)
	}
}
