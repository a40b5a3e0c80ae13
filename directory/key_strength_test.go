package directory

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"math/big"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/concord-hie/concord/internal/errs"
)

// Client keys must be strong enough for what they sign: RSA of at least 2048 bits for
// RS384, P-384 for ES384; and an RSA key must be one that a signature can verify with.
func TestClientKeyStrength(t *testing.T) {
	t.Parallel()
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	rsa2040, err := rsa.GenerateKey(rand.Reader, 2040)
	if err != nil {
		t.Fatal(err)
	}
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		jwks  []byte
		wants string // "" accepted; else a fragment of the refusal
	}{
		{"RSA 1024", jwksJSON(t, pubJWK(&rsa1024.PublicKey, "r")), "at least 2048 bits"},
		{"RSA 2040", jwksJSON(t, pubJWK(&rsa2040.PublicKey, "r")), "at least 2048 bits"},
		{"RSA 1024 after a good key", jwksJSON(t, pubJWK(&keys.ec.PublicKey, "e"), pubJWK(&rsa1024.PublicKey, "r")), "at least 2048 bits"},
		{"EC P-256", jwksJSON(t, pubJWK(&p256.PublicKey, "e")), "P-384"},
		{"EC P-521", jwksJSON(t, pubJWK(&p521.PublicKey, "e")), "P-384"},
		// Keys that no signature can verify with: RSA needs an odd modulus (a product of two
		// odd primes) and an odd exponent of at least 3 (crypto/rsa takes up to 2³¹-1).
		{"RSA 2048 with e=1", jwksJSON(t, pubJWK(&rsa.PublicKey{N: keys.rsa.N, E: 1}, "r")), "odd public exponent"},
		{"RSA 2048 with e=2", jwksJSON(t, pubJWK(&rsa.PublicKey{N: keys.rsa.N, E: 2}, "r")), "odd public exponent"},
		{"RSA 2048 with e=65536", jwksJSON(t, pubJWK(&rsa.PublicKey{N: keys.rsa.N, E: 65536}, "r")), "odd public exponent"},
		{"RSA 2048 with e=2³²+1", jwksJSON(t, pubJWK(&rsa.PublicKey{N: keys.rsa.N, E: 1<<32 + 1}, "r")), "odd public exponent"},
		{"RSA 2048 with an even modulus", jwksJSON(t, pubJWK(&rsa.PublicKey{N: new(big.Int).Add(keys.rsa.N, big.NewInt(1)), E: 65537}, "r")), "even modulus"},
		{"RSA e=2 after a good key", jwksJSON(t, pubJWK(&keys.rsa.PublicKey, "g"), pubJWK(&rsa.PublicKey{N: keys.rsa.N, E: 2}, "r")), "odd public exponent"},
		{"control: RSA 2048", jwksJSON(t, pubJWK(&keys.rsa.PublicKey, "r")), ""},
		{"control: RSA 2048 with e=3", jwksJSON(t, pubJWK(&rsa.PublicKey{N: keys.rsa.N, E: 3}, "r")), ""},
		{"control: EC P-384", jwksJSON(t, pubJWK(&keys.ec.PublicKey, "e")), ""},
	}
	f := newTokenFixture(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseJWKS(tt.jwks)
			_, addErr := f.store.AddClient(context.Background(), f.a.ID, tt.jwks, nil, nil)
			if tt.wants == "" {
				if err != nil || addErr != nil {
					t.Fatalf("ParseJWKS: %v; AddClient: %v; want both accepted", err, addErr)
				}
				return
			}
			for _, e := range []error{err, addErr} {
				if errs.CodeOf(e) != errs.Invalid || !strings.Contains(errs.MessageOf(e), tt.wants) {
					t.Fatalf("got %v, want errs.Invalid mentioning %q", e, tt.wants)
				}
			}
		})
	}

	// A weak key registered before the check (here: by SQL) signs no assertion either.
	t.Run("RSA 1024 registered before", func(t *testing.T) {
		ctx := context.Background()
		if _, err := f.store.db.Exec(ctx, `INSERT INTO directory_clients(client_id, member_id, jwks, scopes, purposes) VALUES ('weak', $1, $2, '{system/*.rs}', '{TREAT}')`,
			f.a.ID, jwksJSON(t, pubJWK(&rsa1024.PublicKey, "w"))); err != nil {
			t.Fatal(err)
		}
		weak, err := f.store.Client(ctx, "weak")
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.exchange(t, tokenForm(f.valid(weak, jose.RS384, rsa1024, "w").sign(t), "system/*.rs"))
		wantOAuth(t, err, "invalid_client", "too weak")
	})
	t.Run("RSA e=2 registered before", func(t *testing.T) {
		ctx := context.Background()
		if _, err := f.store.db.Exec(ctx, `INSERT INTO directory_clients(client_id, member_id, jwks, scopes, purposes) VALUES ('even-e', $1, $2, '{system/*.rs}', '{TREAT}')`,
			f.a.ID, jwksJSON(t, pubJWK(&rsa.PublicKey{N: keys.rsa.N, E: 2}, "w"))); err != nil {
			t.Fatal(err)
		}
		broken, err := f.store.Client(ctx, "even-e")
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.exchange(t, tokenForm(f.valid(broken, jose.RS384, keys.rsa, "w").sign(t), "system/*.rs"))
		wantOAuth(t, err, "invalid_client", "too weak")
	})
}
