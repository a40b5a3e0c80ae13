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
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/concord-hie/concord/internal/testkit"
)

// TestMemberPart2 registers a Part 2 program and an ordinary member through the CLI and
// reads the flag back from member list.
func TestMemberPart2(t *testing.T) {
	t.Parallel()
	dbURL := testkit.DatabaseURL(t)
	path := writeTestJWKS(t)
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

// TestMemberNPI registers a member with --npi, changes and removes it with member set, and
// reads it back from member list; a bad check digit or another member's NPI is refused, and
// a refused add registers nothing.
func TestMemberNPI(t *testing.T) {
	t.Parallel()
	dbURL := testkit.DatabaseURL(t)
	path := writeTestJWKS(t)
	run := func(args ...string) (string, error) {
		var out, errb bytes.Buffer
		err := runMember(context.Background(), append(args, "--database-url", dbURL), &out, &errb)
		return out.String() + errb.String(), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := run(args...)
		if err != nil {
			t.Fatalf("member %v: %v\n%s", args, err, out)
		}
		return out
	}
	npis := func() map[string]string {
		t.Helper()
		var list []struct {
			Organization string `json:"organization"`
			NPI          string `json:"npi"`
		}
		if err := json.Unmarshal([]byte(must("list")), &list); err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, m := range list {
			got[m.Organization] = m.NPI
		}
		return got
	}
	var added struct {
		Organization string `json:"organization"`
		NPI          string `json:"npi"`
	}
	if err := json.Unmarshal([]byte(must("add", "--name", "Cedar Clinic", "--system", "2.16.840.1.113883.3.5151", "--jwks", path, "--npi", "123-456-7893")), &added); err != nil {
		t.Fatal(err)
	}
	if added.Organization != "cedar-clinic" || added.NPI != "1234567893" {
		t.Fatalf("member add --npi = %+v", added)
	}
	if out, err := run("add", "--name", "Cedar Lab", "--system", "2.16.840.1.113883.3.5152", "--jwks", path, "--npi", "1234567890"); err == nil || !strings.Contains(err.Error(), "Luhn") {
		t.Fatalf("bad check digit: %v %s", err, out)
	}
	if out, err := run("add", "--name", "Cedar Lab", "--system", "2.16.840.1.113883.3.5152", "--jwks", path, "--npi", "1234567893"); err == nil || !strings.Contains(err.Error(), "another member") {
		t.Fatalf("taken NPI: %v %s", err, out)
	}
	if got := npis(); len(got) != 1 || got["cedar-clinic"] != "1234567893" {
		t.Fatalf("after refused adds: %v", got)
	}
	must("add", "--name", "Cedar Lab", "--system", "2.16.840.1.113883.3.5152", "--jwks", path)
	if out := must("set", "--member", "cedar-lab", "--npi", "1245319599"); !strings.Contains(out, "Organization/member-cedar-lab") {
		t.Fatalf("member set: %s", out)
	}
	for _, args := range [][]string{
		{"set", "--member", "cedar-lab", "--npi", "1245319590"},
		{"set", "--member", "cedar-lab", "--npi", "1234567893"},
		{"set", "--member", "nobody", "--npi", "1122334455"},
		{"set", "--member", "cedar-lab"},
	} {
		if out, err := run(args...); err == nil {
			t.Fatalf("member %v succeeded: %s", args, out)
		}
	}
	must("set", "--member", "cedar-clinic", "--npi", "")
	if got := npis(); got["cedar-clinic"] != "" || got["cedar-lab"] != "1245319599" {
		t.Fatalf("after set: %v", got)
	}
}

func writeTestJWKS(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader) // ES384: directory.ParseJWKS refuses other curves
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES384", Use: "sig"}}})
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, jwks, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
