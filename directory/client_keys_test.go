package directory

import (
	"context"
	"testing"
)

// TestSetClientKeysSameSetEndsTokens: `concord member client keys` says "tokens issued
// before are refused from their next request", and so they are even when the operator
// passes the key set the client already has (re-running the command to be sure, or the
// wrong file): an UPDATE that changed nothing kept the token generation (session review).
func TestSetClientKeysSameSetEndsTokens(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t)
	c, tok := f.issue(t, f.a.ID, nil, nil, "system/Patient.r", "")
	if err := f.store.SetClientKeys(context.Background(), c.ID, jwksJSON(t, pubJWK(&keys.ec.PublicKey, "k"))); err != nil {
		t.Fatal(err)
	}
	f.wantRefused(t, tok, "after SetClientKeys with the same key set")
}
