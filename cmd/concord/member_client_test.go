package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/concord-hie/concord/directory"
	"github.com/concord-hie/concord/internal/errs"
)

// TestMemberClient drives `concord member client` on a real database and checks each
// change against real tokens: a disabled client's token is refused at its next request and
// it gets no new one; enabling it lets it ask again but never revives the old token; new
// keys end the old tokens and refuse the old key; end-tokens ends tokens and nothing else.
func TestMemberClient(t *testing.T) {
	ctx := context.Background()
	pool, _, run := harborMember(t, "client")

	// A token endpoint on the real directory, for tokenSource to sign assertions against.
	var tokens *directory.Tokens
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		tr, err := tokens.Exchange(r.Context(), r.PostForm)
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_client", "error_description": errs.MessageOf(err)})
			return
		}
		_ = json.NewEncoder(w).Encode(tr)
	}))
	t.Cleanup(srv.Close)
	store := directory.NewStore(pool)
	var err error
	tokens, err = directory.NewTokens(store, bytes.Repeat([]byte("k"), 32), srv.URL, srv.URL+"/token", time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}

	// newKey writes a fresh client key as tokenSource reads it (DATA_DIR/demo-clients) and
	// returns the path of its public JWKS.
	dataDir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dataDir, "demo-clients"), 0o700); err != nil {
		t.Fatal(err)
	}
	newKey := func(clientID, kid string) string {
		priv, pub, err := newClientKey(kid)
		if err != nil {
			t.Fatal(err)
		}
		creds, _ := json.Marshal(map[string]any{"client_id": clientID, "private_jwk": json.RawMessage(priv)})
		if err := os.WriteFile(filepath.Join(dataDir, "demo-clients", "harbor.json"), creds, 0o600); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), kid+".jwks.json")
		if err := os.WriteFile(path, pub, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	token := func() (string, error) {
		ts, err := newTokenSource(dataDir, "harbor", srv.URL+"/token", "system/Patient.rs")
		if err != nil {
			t.Fatal(err)
		}
		err = ts.refresh()
		return ts.token, err
	}
	works := func(tok string) bool {
		_, err := tokens.Verify(ctx, tok)
		if err != nil && errs.CodeOf(err) != errs.Unauthenticated {
			t.Fatalf("Verify: %v", err)
		}
		return err == nil
	}

	// add: the key file is written first with a placeholder id, then with the real one.
	jwks := newKey("pending", "harbor-a")
	out, err := run("add", "--member", "harbor", "--jwks", jwks, "--scope", "system/Patient.rs")
	if err != nil {
		t.Fatalf("add: %v %s", err, out)
	}
	var added struct {
		ClientID string `json:"client_id"`
	}
	if err := json.Unmarshal([]byte(out), &added); err != nil || added.ClientID == "" {
		t.Fatalf("add printed %q", out)
	}
	id := added.ClientID
	privA, _ := os.ReadFile(filepath.Join(dataDir, "demo-clients", "harbor.json"))
	_ = os.WriteFile(filepath.Join(dataDir, "demo-clients", "harbor.json"), bytes.Replace(privA, []byte(`"pending"`), []byte(`"`+id+`"`), 1), 0o600)
	if _, err := run("add", "--member", "nobody", "--jwks", jwks); err == nil {
		t.Fatal("a client was added to an unknown member")
	}

	tok1, err := token()
	if err != nil || !works(tok1) {
		t.Fatalf("first token: %v", err)
	}
	if out, err := run("disable", "--client", id); err != nil || !strings.Contains(out, "disabled client "+id) {
		t.Fatalf("disable: %v %s", err, out)
	}
	if works(tok1) {
		t.Fatal("a disabled client's token still verifies")
	}
	if tok, err := token(); err == nil {
		t.Fatalf("a disabled client got a token %q", tok)
	}
	if out, err := run("disable", "--client", id); err != nil || !strings.Contains(out, "already disabled") {
		t.Fatalf("disable twice: %v %s", err, out)
	}
	if out, err := run("enable", "--client", id); err != nil || !strings.Contains(out, "enabled client "+id) {
		t.Fatalf("enable: %v %s", err, out)
	}
	if works(tok1) {
		t.Fatal("enabling a client revived the token it held before it was disabled")
	}
	tok2, err := token()
	if err != nil || !works(tok2) {
		t.Fatalf("token after enable: %v", err)
	}

	// end-tokens: the token stops, a new one is issued at once with the same key.
	if out, err := run("end-tokens", "--client", id); err != nil || !strings.Contains(out, "ended the access tokens") {
		t.Fatalf("end-tokens: %v %s", err, out)
	}
	if works(tok2) {
		t.Fatal("a token verifies after end-tokens")
	}
	tok3, err := token()
	if err != nil || !works(tok3) {
		t.Fatalf("token after end-tokens: %v", err)
	}

	// keys: the old token stops and the old key signs nothing any more.
	oldCreds, _ := os.ReadFile(filepath.Join(dataDir, "demo-clients", "harbor.json"))
	jwksB := newKey(id, "harbor-b")
	newCreds, _ := os.ReadFile(filepath.Join(dataDir, "demo-clients", "harbor.json"))
	if out, err := run("keys", "--client", id, "--jwks", jwksB); err != nil || !strings.Contains(out, "harbor-b-1") {
		t.Fatalf("keys: %v %s", err, out)
	}
	if works(tok3) {
		t.Fatal("a token issued under the old keys verifies after the rotation")
	}
	_ = os.WriteFile(filepath.Join(dataDir, "demo-clients", "harbor.json"), oldCreds, 0o600)
	if tok, err := token(); err == nil {
		t.Fatalf("the old key got a token after the rotation: %q", tok)
	}
	_ = os.WriteFile(filepath.Join(dataDir, "demo-clients", "harbor.json"), newCreds, 0o600)
	if tok, err := token(); err != nil || !works(tok) {
		t.Fatalf("token with the new key: %v", err)
	}

	// Refusals name the client and change nothing.
	weak := filepath.Join(t.TempDir(), "weak.json")
	_ = os.WriteFile(weak, []byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"s"}]}`), 0o600)
	if out, err := run("keys", "--client", id, "--jwks", weak); err == nil {
		t.Fatalf("a symmetric key was accepted: %s", out)
	}
	for _, verb := range []string{"disable", "enable", "end-tokens"} {
		if _, err := run(verb, "--client", "no-such-client"); err == nil || !strings.Contains(err.Error(), "no-such-client") {
			t.Fatalf("%s of an unknown client: %v", verb, err)
		}
	}
	if _, err := run("keys", "--client", "no-such-client", "--jwks", jwksB); err == nil {
		t.Fatal("keys of an unknown client succeeded")
	}
	if _, err := run("frobnicate"); err == nil {
		t.Fatal("an unknown verb succeeded")
	}
}
