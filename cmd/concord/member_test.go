package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/concord-hie/concord/internal/testkit"
)

// TestMemberPart2 registers a Part 2 program and an ordinary member through the CLI and
// reads the flag back from member list.
func TestMemberPart2(t *testing.T) {
	t.Parallel()
	dbURL := testkit.DatabaseURL(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES384", Use: "sig"}}})
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, jwks, 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) []byte {
		t.Helper()
		var out, errb bytes.Buffer
		if err := runMember(context.Background(), append(args, "--database-url", dbURL), &out, &errb); err != nil {
			t.Fatalf("member %v: %v\n%s", args, err, errb.String())
		}
		return out.Bytes()
	}
	var added struct {
		Organization string `json:"organization"`
		Part2        bool   `json:"part2_program"`
	}
	if err := json.Unmarshal(run("add", "--name", "Harbor Recovery", "--system", "2.16.840.1.113883.3.4242", "--jwks", path, "--part2"), &added); err != nil {
		t.Fatal(err)
	}
	if added.Organization != "harbor-recovery" || !added.Part2 {
		t.Errorf("member add --part2 = %+v", added)
	}
	run("add", "--name", "Harbor Clinic", "--system", "2.16.840.1.113883.3.4243", "--jwks", path)
	var list []struct {
		Organization string `json:"organization"`
		Part2        bool   `json:"part2_program"`
	}
	if err := json.Unmarshal(run("list"), &list); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, m := range list {
		got[m.Organization] = m.Part2
	}
	if len(got) != 2 || !got["harbor-recovery"] || got["harbor-clinic"] {
		t.Errorf("member list part2_program = %v, want harbor-recovery only", got)
	}
}
