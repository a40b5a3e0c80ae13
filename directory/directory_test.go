package directory

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/internal/testkit"
)

// Keys are generated once per test binary: RSA generation is slow on a shared machine.
type testKeys struct {
	ec, ec2   *ecdsa.PrivateKey // P-384
	rsa, rsa2 *rsa.PrivateKey   // 2048 bits
}

var keys = func() testKeys {
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	var k testKeys
	var err error
	k.ec, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	must(err)
	k.ec2, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	must(err)
	k.rsa, err = rsa.GenerateKey(rand.Reader, 2048)
	must(err)
	k.rsa2, err = rsa.GenerateKey(rand.Reader, 2048)
	must(err)
	return k
}()

// jwksJSON marshals a key set from the given JWKs (public or private, as given).
func jwksJSON(tb testing.TB, ks ...jose.JSONWebKey) []byte {
	tb.Helper()
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: ks})
	if err != nil {
		tb.Fatalf("marshal JWKS: %v", err)
	}
	return b
}

func pubJWK(key any, kid string) jose.JSONWebKey {
	return jose.JSONWebKey{Key: key, KeyID: kid, Use: "sig"}
}

func TestNormalizeSystem(t *testing.T) {
	tests := []struct {
		in, want string // want "" means errs.Invalid
	}{
		{"2.16.840.1.113883.3.1", "urn:oid:2.16.840.1.113883.3.1"},
		{"  2.16.840.1.113883.3.1 ", "urn:oid:2.16.840.1.113883.3.1"},
		{"urn:oid:2.16.840.1.113883.3.1", "urn:oid:2.16.840.1.113883.3.1"},
		{"1.2", "urn:oid:1.2"},
		{"0.0", "urn:oid:0.0"},
		{"https://riverside.example.org/mrn", "https://riverside.example.org/mrn"},
		{"http://hospital.example.org/fhir/sid/mrn", "http://hospital.example.org/fhir/sid/mrn"},
		{"", ""},
		{"   ", ""},
		{"3.1.2", ""},                   // first arc is 0, 1 or 2
		{"2", ""},                       // one arc is not an OID
		{"2.16.840.01", ""},             // no leading zeros
		{"2.16..840", ""},               // empty arc
		{"2.16.840.", ""},               // trailing dot
		{"2.16.840.1a", ""},             // letters
		{"urn:oid:", ""},                // nothing after the prefix
		{"urn:oid:3.1", ""},             // bad first arc with the prefix
		{"URN:OID:2.16.840.1", ""},      // prefix is case-sensitive
		{"urn:uuid:1c5a5c62-2b1b", ""},  // not an OID or URL
		{"riverside-mrn", ""},           // bare word
		{"ftp://example.org/mrn", ""},   // scheme
		{"https://example.org/a b", ""}, // space inside
		{"https://example.org/a|b", ""}, // FHIR token separator
		{"https://example.org/" + strings.Repeat("a", 256), ""},
		{"https://", ""},                 // no host
		{"http:///mrn", ""},              // no host
		{"https://example.org/a\tb", ""}, // control characters inside
		{"https://example.org/a\nb", ""},
		{"https://example.org/a\x00b", ""},
		{"https://example.org/a\x7fb", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := NormalizeSystem(tt.in)
			if tt.want == "" {
				if c := errs.CodeOf(err); err == nil || c != errs.Invalid {
					t.Fatalf("NormalizeSystem(%q) = %q, %v; want errs.Invalid", tt.in, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("NormalizeSystem(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestParseJWKS(t *testing.T) {
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		jwks  []byte
		kids  []string // the kids of the parsed set; nil means errs.Invalid
		wants string   // when refused: a fragment of the caller-safe message
	}{
		{"one EC key", jwksJSON(t, pubJWK(&keys.ec.PublicKey, "ec-1")), []string{"ec-1"}, ""},
		{"one RSA key", jwksJSON(t, pubJWK(&keys.rsa.PublicKey, "rsa-1")), []string{"rsa-1"}, ""},
		{"EC and RSA", jwksJSON(t, pubJWK(&keys.ec.PublicKey, "a"), pubJWK(&keys.rsa.PublicKey, "b")), []string{"a", "b"}, ""},
		{"EC private key", jwksJSON(t, pubJWK(keys.ec, "ec-1")), nil, "public RSA or EC keys only"},
		{"RSA private key", jwksJSON(t, pubJWK(keys.rsa, "rsa-1")), nil, "public RSA or EC keys only"},
		{"private key after a public one", jwksJSON(t, pubJWK(&keys.ec.PublicKey, "a"), pubJWK(keys.ec2, "b")), nil, "public RSA or EC keys only"},
		{"symmetric oct key", jwksJSON(t, pubJWK([]byte("0123456789abcdef0123456789abcdef"), "hmac-1")), nil, "public RSA or EC keys only"},
		{"symmetric oct key, raw", []byte(`{"keys":[{"kty":"oct","kid":"k1","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"}]}`), nil, "public RSA or EC keys only"},
		{"Ed25519 key", jwksJSON(t, pubJWK(edPub, "ed-1")), nil, "public RSA or EC keys only"},
		{"missing kid", jwksJSON(t, pubJWK(&keys.ec.PublicKey, "")), nil, "kid"},
		{"missing kid on second key", jwksJSON(t, pubJWK(&keys.ec.PublicKey, "a"), pubJWK(&keys.rsa.PublicKey, "")), nil, "kid"},
		{"duplicate kid, different keys", jwksJSON(t, pubJWK(&keys.ec.PublicKey, "k"), pubJWK(&keys.ec2.PublicKey, "k")), nil, "unique"},
		{"duplicate kid, EC and RSA", jwksJSON(t, pubJWK(&keys.ec.PublicKey, "k"), pubJWK(&keys.rsa.PublicKey, "k")), nil, "unique"},
		{"empty set", []byte(`{"keys":[]}`), nil, "at least one key"},
		{"no keys member", []byte(`{}`), nil, "at least one key"},
		{"null", []byte(`null`), nil, "at least one key"},
		{"not JSON", []byte(`-----BEGIN PUBLIC KEY-----`), nil, "at least one key"},
		{"empty input", nil, nil, "at least one key"},
		{"a single JWK, not a set", mustJSON(t, pubJWK(&keys.ec.PublicKey, "ec-1")), nil, "at least one key"},
		{"unknown kty", []byte(`{"keys":[{"kty":"XYZ","kid":"x"}]}`), nil, "at least one key"},
		{"EC key off the curve", []byte(`{"keys":[{"kty":"EC","kid":"x","crv":"P-384","x":"AQ","y":"AQ"}]}`), nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, err := ParseJWKS(tt.jwks)
			if tt.kids == nil {
				if c := errs.CodeOf(err); err == nil || c != errs.Invalid {
					t.Fatalf("ParseJWKS = %d keys, %v; want errs.Invalid", len(set.Keys), err)
				}
				if !strings.Contains(errs.MessageOf(err), tt.wants) {
					t.Errorf("message %q does not mention %q", errs.MessageOf(err), tt.wants)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseJWKS: %v", err)
			}
			var kids []string
			for _, k := range set.Keys {
				kids = append(kids, k.KeyID)
				if !k.IsPublic() {
					t.Errorf("key %s is not public", k.KeyID)
				}
			}
			if !slices.Equal(kids, tt.kids) {
				t.Errorf("kids = %q, want %q", kids, tt.kids)
			}
		})
	}
}

func mustJSON(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestMembers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := NewStore(testkit.DB(t))

	river, err := s.AddMember(ctx, "  Riverside Clinic ", "2.16.840.1.113883.3.1")
	if err != nil {
		t.Fatalf("AddMember: %v", err)
	}
	if want := (Member{ID: "riverside-clinic", Name: "Riverside Clinic", System: "urn:oid:2.16.840.1.113883.3.1"}); river != want {
		t.Fatalf("AddMember = %+v, want %+v", river, want)
	}
	hill, err := s.AddMember(ctx, "St. Hill's Hospital & Care", "https://hill.example.org/mrn")
	if err != nil {
		t.Fatalf("AddMember: %v", err)
	}
	if hill.ID != "st-hill-s-hospital-care" || hill.System != "https://hill.example.org/mrn" {
		t.Fatalf("AddMember = %+v", hill)
	}
	long, err := s.AddMember(ctx, strings.Repeat("Regional ", 20), "urn:oid:2.16.840.1.113883.3.9")
	if err != nil {
		t.Fatalf("AddMember long name: %v", err)
	}
	if len(long.ID) > 48 {
		t.Errorf("ID %q longer than 48", long.ID)
	}

	t.Run("refused", func(t *testing.T) {
		tests := []struct {
			name, memberName, system string
			want                     errs.Code
		}{
			{"same system, other name", "Another Clinic", "urn:oid:2.16.840.1.113883.3.1", errs.Conflict},
			{"same system as a bare OID", "Third Clinic", "2.16.840.1.113883.3.1", errs.Conflict},
			{"same URL system", "Hill Annex", "https://hill.example.org/mrn", errs.Conflict},
			{"same name, so same ID", "riverside CLINIC", "urn:oid:2.16.840.1.113883.3.2", errs.Conflict},
			{"bad system", "Fourth Clinic", "riverside", errs.Invalid},
			{"empty name", "   ", "urn:oid:2.16.840.1.113883.3.3", errs.Invalid},
			{"name too long", strings.Repeat("x", 201), "urn:oid:2.16.840.1.113883.3.4", errs.Invalid},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				m, err := s.AddMember(ctx, tt.memberName, tt.system)
				if c := errs.CodeOf(err); err == nil || c != tt.want {
					t.Fatalf("AddMember(%q, %q) = %+v, %v; want %v", tt.memberName, tt.system, m, err, tt.want)
				}
			})
		}
	})

	got, err := s.Member(ctx, "riverside-clinic")
	if err != nil || got != river {
		t.Errorf("Member = %+v, %v; want %+v", got, err, river)
	}
	got, err = s.MemberForSystem(ctx, "https://hill.example.org/mrn")
	if err != nil || got != hill {
		t.Errorf("MemberForSystem = %+v, %v; want %+v", got, err, hill)
	}
	if _, err := s.Member(ctx, "nobody"); errs.CodeOf(err) != errs.NotFound {
		t.Errorf("Member(nobody) error = %v, want not_found", err)
	}
	if _, err := s.MemberForSystem(ctx, "urn:oid:2.16.840.1.113883.3.2"); errs.CodeOf(err) != errs.NotFound {
		t.Errorf("MemberForSystem(unregistered) error = %v, want not_found (the refused member left no authority row)", err)
	}
	all, err := s.Members(ctx)
	if err != nil {
		t.Fatalf("Members: %v", err)
	}
	var ids []string
	for _, m := range all {
		ids = append(ids, m.ID)
	}
	if want := []string{long.ID, "riverside-clinic", "st-hill-s-hospital-care"}; !slices.Equal(ids, want) {
		t.Errorf("Members = %q, want %q", ids, want)
	}
}

func TestClients(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := NewStore(testkit.DB(t))
	a, err := s.AddMember(ctx, "Member A", "urn:oid:2.16.840.1.113883.3.1")
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.AddMember(ctx, "Member B", "urn:oid:2.16.840.1.113883.3.2")
	if err != nil {
		t.Fatal(err)
	}
	jwks := jwksJSON(t, pubJWK(&keys.ec.PublicKey, "ec-1"), pubJWK(&keys.rsa.PublicKey, "rsa-1"))

	def, err := s.AddClient(ctx, a.ID, jwks, nil, nil)
	if err != nil {
		t.Fatalf("AddClient: %v", err)
	}
	if len(def.ID) != 24 || def.MemberID != a.ID {
		t.Errorf("AddClient = ID %q member %q", def.ID, def.MemberID)
	}
	if !slices.Equal(def.Scopes, DefaultScopes) || !slices.Equal(def.Purposes, []string{"TREAT"}) {
		t.Errorf("defaults: scopes %q purposes %q", def.Scopes, def.Purposes)
	}
	custom, err := s.AddClient(ctx, b.ID, jwksJSON(t, pubJWK(&keys.ec2.PublicKey, "b-1")), []string{"system/Observation.rs", "system/Patient.read"}, []string{"TREAT", "HPAYMT"})
	if err != nil {
		t.Fatalf("AddClient: %v", err)
	}
	if custom.ID == def.ID {
		t.Fatal("two clients got the same ID")
	}

	got, err := s.Client(ctx, def.ID)
	if err != nil {
		t.Fatalf("Client: %v", err)
	}
	if got.ID != def.ID || got.MemberID != a.ID || got.Disabled || !slices.Equal(got.Scopes, DefaultScopes) || !slices.Equal(got.Purposes, []string{"TREAT"}) {
		t.Errorf("Client = %+v", got)
	}
	if len(got.JWKS.Keys) != 2 {
		t.Fatalf("Client JWKS has %d keys, want 2", len(got.JWKS.Keys))
	}
	for _, k := range got.JWKS.Keys {
		if !k.IsPublic() {
			t.Errorf("stored key %s is not public", k.KeyID)
		}
	}
	if k := got.JWKS.Key("ec-1"); len(k) != 1 || !k[0].Key.(*ecdsa.PublicKey).Equal(&keys.ec.PublicKey) {
		t.Errorf("stored ec-1 does not round-trip")
	}
	if k := got.JWKS.Key("rsa-1"); len(k) != 1 || !k[0].Key.(*rsa.PublicKey).Equal(&keys.rsa.PublicKey) {
		t.Errorf("stored rsa-1 does not round-trip")
	}
	got, err = s.Client(ctx, custom.ID)
	if err != nil || !slices.Equal(got.Scopes, []string{"system/Observation.rs", "system/Patient.read"}) || !slices.Equal(got.Purposes, []string{"TREAT", "HPAYMT"}) {
		t.Errorf("Client = %+v, %v", got, err)
	}
	if _, err := s.Client(ctx, "no-such-client"); errs.CodeOf(err) != errs.NotFound {
		t.Errorf("Client(unknown) error = %v, want not_found", err)
	}

	t.Run("refused", func(t *testing.T) {
		tests := []struct {
			name     string
			member   string
			jwks     []byte
			scopes   []string
			purposes []string
		}{
			{"unknown member", "nobody", jwks, nil, nil},
			{"private key", a.ID, jwksJSON(t, pubJWK(keys.ec, "p")), nil, nil},
			{"symmetric key", a.ID, jwksJSON(t, pubJWK([]byte("0123456789abcdef0123456789abcdef"), "h")), nil, nil},
			{"duplicate kid", a.ID, jwksJSON(t, pubJWK(&keys.ec.PublicKey, "k"), pubJWK(&keys.ec2.PublicKey, "k")), nil, nil},
			{"empty JWKS", a.ID, []byte(`{"keys":[]}`), nil, nil},
			{"malformed scope", a.ID, jwks, []string{"system/*.sr"}, nil},
			{"granular scope", a.ID, jwks, []string{"system/Observation.rs?category=laboratory"}, nil},
			{"patient scope", a.ID, jwks, []string{"system/*.rs", "patient/*.rs"}, nil},
			{"user scope", a.ID, jwks, []string{"user/Observation.rs"}, nil},
			{"unknown purpose", a.ID, jwks, nil, []string{"MARKETING"}},
			{"lower-case purpose", a.ID, jwks, nil, []string{"treat"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c, err := s.AddClient(ctx, tt.member, tt.jwks, tt.scopes, tt.purposes)
				if code := errs.CodeOf(err); err == nil || code != errs.Invalid {
					t.Fatalf("AddClient = %+v, %v; want errs.Invalid", c, err)
				}
			})
		}
	})

	list, err := s.Clients(ctx, a.ID)
	if err != nil || len(list) != 1 || list[0].ID != def.ID || list[0].Disabled {
		t.Errorf("Clients(A) = %+v, %v; want only %s", list, err, def.ID)
	}
	if _, err := s.db.Exec(ctx, `UPDATE directory_clients SET disabled_at = now() WHERE client_id = $1`, custom.ID); err != nil {
		t.Fatal(err)
	}
	list, err = s.Clients(ctx, "")
	if err != nil || len(list) != 2 || list[0].ID != def.ID || list[1].ID != custom.ID || !list[1].Disabled || list[0].Disabled {
		t.Errorf("Clients(all) = %+v, %v", list, err)
	}
	if got, err := s.Client(ctx, custom.ID); err != nil || !got.Disabled {
		t.Errorf("Client(disabled) = %+v, %v; want Disabled", got, err)
	}
}

func TestUseJTI(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := NewStore(testkit.DB(t))
	exp := time.Now().Add(5 * time.Minute)
	if err := s.UseJTI(ctx, "client-a", "jti-1", exp); err != nil {
		t.Fatalf("first use: %v", err)
	}
	if err := s.UseJTI(ctx, "client-a", "jti-1", exp); errs.CodeOf(err) != errs.Conflict {
		t.Fatalf("replay error = %v, want conflict", err)
	}
	if err := s.UseJTI(ctx, "client-b", "jti-1", exp); err != nil {
		t.Fatalf("same jti, other client: %v", err)
	}
	if err := s.UseJTI(ctx, "client-a", "jti-2", exp); err != nil {
		t.Fatalf("other jti: %v", err)
	}
	// Long-expired rows are cleaned up; live ones are not.
	if err := s.UseJTI(ctx, "client-c", "old", time.Now().Add(-2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.UseJTI(ctx, "client-c", "new", exp); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.db.QueryRow(ctx, `SELECT count(*) FROM directory_assertion_jtis WHERE client_id = 'client-c' AND jti = 'old'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("expired jti rows = %d, %v; want cleaned up", n, err)
	}
	if err := s.UseJTI(ctx, "client-a", "jti-1", exp); errs.CodeOf(err) != errs.Conflict {
		t.Errorf("live jti lost by cleanup: %v", err)
	}
}

func TestSetPart2(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := NewStore(testkit.DB(t))
	prog, err := s.AddMember(ctx, "Harbor Recovery Program", "urn:oid:2.16.840.1.113883.3.42")
	if err != nil {
		t.Fatalf("AddMember: %v", err)
	}
	other, err := s.AddMember(ctx, "Harbor Clinic", "urn:oid:2.16.840.1.113883.3.43")
	if err != nil {
		t.Fatalf("AddMember: %v", err)
	}
	if prog.Part2 {
		t.Fatalf("a new member is a Part 2 program before SetPart2: %+v", prog)
	}
	if err := s.SetPart2(ctx, prog.ID, true); err != nil {
		t.Fatalf("SetPart2: %v", err)
	}
	if m, err := s.Member(ctx, prog.ID); err != nil || !m.Part2 {
		t.Errorf("Member after SetPart2(true) = %+v, %v; want Part2", m, err)
	}
	if m, err := s.MemberForSystem(ctx, prog.System); err != nil || !m.Part2 {
		t.Errorf("MemberForSystem after SetPart2(true) = %+v, %v; want Part2", m, err)
	}
	all, err := s.Members(ctx)
	if err != nil {
		t.Fatalf("Members: %v", err)
	}
	for _, m := range all {
		if m.Part2 != (m.ID == prog.ID) {
			t.Errorf("Members: %s Part2 = %v", m.ID, m.Part2)
		}
	}
	if err := s.SetPart2(ctx, prog.ID, false); err != nil {
		t.Fatalf("SetPart2(false): %v", err)
	}
	if m, _ := s.Member(ctx, prog.ID); m.Part2 {
		t.Errorf("Member after SetPart2(false) still Part2")
	}
	if m, _ := s.Member(ctx, other.ID); m.Part2 {
		t.Errorf("SetPart2 changed another member")
	}
	if err := s.SetPart2(ctx, "nobody", true); errs.CodeOf(err) != errs.NotFound {
		t.Errorf("SetPart2(nobody) = %v, want not_found", err)
	}
}
