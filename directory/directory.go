// Package directory owns member organizations, the identifier namespaces (assigning
// authorities) each may assert, and the client systems each registers for SMART Backend
// Services, with their public keys, scopes and allowed purposes of use.
package directory

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/jackc/pgx/v5"

	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

// Member is a member organization of the exchange.
type Member struct {
	ID     string // short stable ID, e.g. "riverside-clinic"
	Name   string
	System string // the assigning authority of its MRNs, e.g. urn:oid:2.16.840.1.113883.3.1
	// Part2 says the member is a 42 CFR Part 2 program: every record it sends is labelled
	// with consent.Part2ProgramLabels at ingest, whatever its codes.
	Part2 bool
}

// Client is a member's registered system.
type Client struct {
	ID       string
	MemberID string
	JWKS     jose.JSONWebKeySet // public keys only
	Scopes   []string           // SMART v2 system scopes it may be granted
	Purposes []string           // v3-ActReason codes it may assert
	Disabled bool
	// TokenGeneration is a random UUID (lower-case text) that the database assigns when the
	// client is inserted and again whenever its row changes, never a value supplied
	// (migrations 0101, 0103): an access token names the generation it was issued at and
	// stops verifying when it moves, and no value ever comes back.
	TokenGeneration string
}

// Store reads and writes the directory in PostgreSQL.
type Store struct{ db db.Querier }

// NewStore returns a Store on q (usually the pool).
func NewStore(q db.Querier) *Store { return &Store{db: q} }

var (
	oidPattern  = regexp.MustCompile(`^urn:oid:[0-2](\.(0|[1-9][0-9]*))+$`)
	slugPattern = regexp.MustCompile(`[^a-z0-9]+`)
)

// NormalizeSystem accepts an OID ("2.16.840.1") or an identifier-system URI and returns the
// FHIR Identifier.system form (urn:oid:... or the URI). It returns errs.Invalid otherwise.
func NormalizeSystem(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s != "" && s[0] >= '0' && s[0] <= '2' {
		s = "urn:oid:" + s
	}
	if oidPattern.MatchString(s) {
		return s, nil
	}
	if (strings.HasPrefix(s, "https://") || strings.HasPrefix(s, "http://")) && len(s) < 256 && !strings.ContainsAny(s, " |") {
		// url.Parse refuses control characters; a system also needs a host.
		if u, err := url.Parse(s); err == nil && u.Host != "" {
			return s, nil
		}
	}
	return "", errs.E("directory.NormalizeSystem", errs.Invalid, "want an OID such as 2.16.840.1.113883.3.1, or an http(s) identifier system")
}

// AddMember registers a member and its assigning authority. The ID is derived from the
// name. It returns errs.Conflict when the system or the ID is taken.
func (s *Store) AddMember(ctx context.Context, name, system string) (Member, error) {
	const op = "directory.Store.AddMember"
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 200 {
		return Member{}, errs.E(op, errs.Invalid, "a member needs a name of at most 200 characters")
	}
	sys, err := NormalizeSystem(system)
	if err != nil {
		return Member{}, err
	}
	id := strings.Trim(slugPattern.ReplaceAllString(strings.ToLower(name), "-"), "-")
	if id == "" {
		id = "member"
	}
	if len(id) > 48 {
		id = id[:48]
	}
	m := Member{ID: id, Name: name, System: sys}
	insert := func(tx db.Querier) error {
		if _, err := tx.Exec(ctx, `INSERT INTO directory_members(id, name, system) VALUES ($1, $2, $3)`, m.ID, m.Name, m.System); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO directory_authorities(system, member_id) VALUES ($1, $2)`, m.System, m.ID)
		return err
	}
	if ts, ok := s.db.(db.TxStarter); ok {
		err = db.InTx(ctx, ts, insert)
	} else { // already inside the caller's transaction
		err = insert(s.db)
	}
	if err != nil {
		return Member{}, errs.E(op, fmt.Sprintf("member %s or system already registered", m.ID), db.Map(op, err))
	}
	return m, nil
}

// Member returns the member with the given ID, or errs.NotFound.
func (s *Store) Member(ctx context.Context, id string) (Member, error) {
	var m Member
	err := s.db.QueryRow(ctx, `SELECT id, name, system, part2_program FROM directory_members WHERE id = $1`, id).Scan(&m.ID, &m.Name, &m.System, &m.Part2)
	return m, db.Map("directory.Store.Member", err)
}

// MemberForSystem returns the member that owns identifier system sys, or errs.NotFound.
func (s *Store) MemberForSystem(ctx context.Context, sys string) (Member, error) {
	var m Member
	err := s.db.QueryRow(ctx, `SELECT m.id, m.name, m.system, m.part2_program FROM directory_authorities a JOIN directory_members m ON m.id = a.member_id WHERE a.system = $1`, sys).Scan(&m.ID, &m.Name, &m.System, &m.Part2)
	return m, db.Map("directory.Store.MemberForSystem", err)
}

// Members lists every member by ID.
func (s *Store) Members(ctx context.Context) ([]Member, error) {
	rows, err := s.db.Query(ctx, `SELECT id, name, system, part2_program FROM directory_members ORDER BY id`)
	if err != nil {
		return nil, db.Map("directory.Store.Members", err)
	}
	ms, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Member, error) {
		var m Member
		return m, r.Scan(&m.ID, &m.Name, &m.System, &m.Part2)
	})
	return ms, db.Map("directory.Store.Members", err)
}

// SetPart2 marks member id as a 42 CFR Part 2 program (on) or not. Records it sends from
// then on are labelled as Part 2 records at ingest; records already stored keep the labels
// they were stored with (a member that becomes a Part 2 program resends them). It returns
// errs.NotFound for an unknown member.
func (s *Store) SetPart2(ctx context.Context, id string, on bool) error {
	const op = "directory.Store.SetPart2"
	tag, err := s.db.Exec(ctx, `UPDATE directory_members SET part2_program = $2 WHERE id = $1`, id, on)
	if err != nil {
		return db.Map(op, err)
	}
	if tag.RowsAffected() == 0 {
		return errs.E(op, errs.NotFound, "member not found")
	}
	return nil
}

// MinRSABits is the smallest RSA modulus accepted for a client key (NIST SP 800-57: 1024-bit
// RSA is no longer acceptable for signatures).
const MinRSABits = 2048

// ParseJWKS parses a JSON Web Key Set of client public keys. It refuses private keys,
// symmetric keys, weak keys (RSA under MinRSABits bits, EC on a curve other than P-384: the
// assertions we accept are RS384 or ES384), RSA keys that no signature can verify with (an
// even modulus, or a public exponent that is even, below 3 or above 2³¹-1), keys without
// kid and duplicate kids with errs.Invalid.
func ParseJWKS(jwks []byte) (jose.JSONWebKeySet, error) {
	const op = "directory.ParseJWKS"
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwks, &set); err != nil || len(set.Keys) == 0 {
		return set, errs.E(op, errs.Invalid, "the JWKS must be a JSON Web Key Set with at least one key", err)
	}
	seen := map[string]bool{}
	for _, k := range set.Keys {
		switch k.Key.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey: // IsPublic also admits Ed25519, which we do not
		default:
			return set, errs.E(op, errs.Invalid, "the JWKS must hold public RSA or EC keys only")
		}
		if !k.Valid() {
			return set, errs.E(op, errs.Invalid, "the JWKS must hold public RSA or EC keys only")
		}
		if err := checkKeyStrength(k); err != nil {
			return set, err
		}
		if k.KeyID == "" || seen[k.KeyID] {
			return set, errs.E(op, errs.Invalid, "every key needs a kid, unique within the set")
		}
		seen[k.KeyID] = true
	}
	return set, nil
}

// checkKeyStrength returns errs.Invalid unless k is an RSA key of at least MinRSABits bits
// that a signature can verify with, or an EC key on P-384, the curve of ES384. An RSA
// modulus is a product of two odd primes, so it is odd; the public exponent must be odd (it
// is invertible modulo p-1 and q-1, which are even) and at least 3, and crypto/rsa takes
// none above 2³¹-1. Anything else is a broken or made-up key that verifies nothing.
func checkKeyStrength(k jose.JSONWebKey) error {
	const op = "directory.checkKeyStrength"
	switch pub := k.Key.(type) {
	case *rsa.PublicKey:
		if pub.N == nil || pub.N.BitLen() < MinRSABits {
			return errs.E(op, errs.Invalid, fmt.Sprintf("RSA keys need at least %d bits (key %q)", MinRSABits, k.KeyID))
		}
		if pub.N.Bit(0) == 0 {
			return errs.E(op, errs.Invalid, fmt.Sprintf("RSA key %q has an even modulus: it is not an RSA key", k.KeyID))
		}
		if pub.E < 3 || pub.E%2 == 0 || pub.E > 1<<31-1 {
			return errs.E(op, errs.Invalid, fmt.Sprintf("RSA keys need an odd public exponent from 3 to 2³¹-1, usually 65537 (key %q)", k.KeyID))
		}
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P384() {
			return errs.E(op, errs.Invalid, fmt.Sprintf("EC keys must be on P-384, for ES384 (key %q)", k.KeyID))
		}
	default:
		return errs.E(op, errs.Invalid, "the JWKS must hold public RSA or EC keys only")
	}
	return nil
}

// DefaultScopes are granted to a new client unless others are asked for.
var DefaultScopes = []string{"system/*.cruds"}

// AddClient registers a client system for member with the public keys in jwks (JSON). It
// refuses private keys, symmetric keys, keys without kid and duplicate kids. It returns the
// new client with a random ID.
func (s *Store) AddClient(ctx context.Context, memberID string, jwks []byte, scopes, purposes []string) (Client, error) {
	const op = "directory.Store.AddClient"
	set, err := ParseJWKS(jwks)
	if err != nil {
		return Client{}, err
	}
	if len(scopes) == 0 {
		scopes = DefaultScopes
	}
	for _, sc := range scopes {
		parsed, err := ParseScope(sc)
		if err != nil {
			return Client{}, err
		}
		// Backend clients act for no patient or user, and Scopes.Allows ignores the
		// context: a registered patient/ or user/ scope would act as a system-wide one.
		if parsed.Context != "system" {
			return Client{}, errs.E(op, errs.Invalid, "a client system may be registered for system/ scopes only")
		}
	}
	if len(purposes) == 0 {
		purposes = []string{"TREAT"}
	}
	for _, p := range purposes {
		if !KnownPurpose(p) {
			return Client{}, errs.E(op, errs.Invalid, "unknown purpose of use "+p)
		}
	}
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	c := Client{ID: hex.EncodeToString(b), MemberID: memberID, JWKS: set, Scopes: scopes, Purposes: purposes}
	pub, _ := json.Marshal(set)
	err = s.db.QueryRow(ctx, `INSERT INTO directory_clients(client_id, member_id, jwks, scopes, purposes) VALUES ($1, $2, $3, $4, $5) RETURNING token_generation::text`,
		c.ID, c.MemberID, pub, c.Scopes, c.Purposes).Scan(&c.TokenGeneration)
	if err != nil {
		return Client{}, errs.E(op, "unknown member", db.Map(op, err))
	}
	return c, nil
}

// Client returns a registered client, or errs.NotFound.
func (s *Store) Client(ctx context.Context, id string) (Client, error) {
	const op = "directory.Store.Client"
	var c Client
	var jwks []byte
	var disabled *time.Time
	err := s.db.QueryRow(ctx, `SELECT client_id, member_id, jwks, scopes, purposes, disabled_at, token_generation::text FROM directory_clients WHERE client_id = $1`, id).
		Scan(&c.ID, &c.MemberID, &jwks, &c.Scopes, &c.Purposes, &disabled, &c.TokenGeneration)
	if err != nil {
		return Client{}, db.Map(op, err)
	}
	if err := json.Unmarshal(jwks, &c.JWKS); err != nil {
		return Client{}, errs.E(op, errs.Internal, err)
	}
	c.Disabled = disabled != nil
	return c, nil
}

// SetClientDisabled disables client id (disabled true) or enables it again. A disabled
// client gets no token and its tokens are refused from the next request on (Tokens.Verify);
// enabling it moves its token generation, so the tokens it held before stay refused. It
// returns changed false when the client already was as asked (the row is left alone, and
// so is the time it was disabled), and errs.NotFound for an unknown client.
func (s *Store) SetClientDisabled(ctx context.Context, id string, disabled bool) (changed bool, err error) {
	const op = "directory.Store.SetClientDisabled"
	tag, err := s.db.Exec(ctx, `UPDATE directory_clients SET disabled_at = CASE WHEN $2 THEN now() END
		WHERE client_id = $1 AND (disabled_at IS NOT NULL) <> $2`, id, disabled)
	if err != nil {
		return false, db.Map(op, err)
	}
	if tag.RowsAffected() == 1 {
		return true, nil
	}
	if _, err := s.Client(ctx, id); err != nil {
		return false, errs.E(op, err)
	}
	return false, nil
}

// SetClientKeys replaces client id's public keys with jwks, checked as AddClient checks
// them. Tokens issued before are refused from the next request on (its token generation
// moves, also when jwks is the set already stored): a key rotation after a compromise ends
// the old key's tokens too.
// It returns errs.NotFound for an unknown client.
func (s *Store) SetClientKeys(ctx context.Context, id string, jwks []byte) error {
	const op = "directory.Store.SetClientKeys"
	set, err := ParseJWKS(jwks)
	if err != nil {
		return err
	}
	pub, _ := json.Marshal(set)
	// The generation moves even when the set is the one stored: a rotation after a leak,
	// run again or with the same file by mistake, must still end the tokens it says it ends.
	tag, err := s.db.Exec(ctx, `UPDATE directory_clients SET jwks = $2, token_generation = gen_random_uuid() WHERE client_id = $1`, id, pub)
	if err != nil {
		return db.Map(op, err)
	}
	if tag.RowsAffected() == 0 {
		return errs.E(op, errs.NotFound, "no such client")
	}
	return nil
}

// EndClientTokens ends every access token client id holds, from the next request on,
// changing nothing else: its token generation moves (migration 0103). The client can ask
// for new tokens at once, so this answers a leaked token, not a leaked key (SetClientKeys,
// SetClientDisabled). It returns errs.NotFound for an unknown client.
func (s *Store) EndClientTokens(ctx context.Context, id string) error {
	const op = "directory.Store.EndClientTokens"
	tag, err := s.db.Exec(ctx, `UPDATE directory_clients SET token_generation = gen_random_uuid() WHERE client_id = $1`, id)
	if err != nil {
		return db.Map(op, err)
	}
	if tag.RowsAffected() == 0 {
		return errs.E(op, errs.NotFound, "no such client")
	}
	return nil
}

// Clients lists the clients of a member (all members when memberID is empty).
func (s *Store) Clients(ctx context.Context, memberID string) ([]Client, error) {
	const op = "directory.Store.Clients"
	rows, err := s.db.Query(ctx, `SELECT client_id, member_id, scopes, purposes, disabled_at IS NOT NULL FROM directory_clients WHERE $1 = '' OR member_id = $1 ORDER BY member_id, client_id`, memberID)
	if err != nil {
		return nil, db.Map(op, err)
	}
	cs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Client, error) {
		var c Client
		return c, r.Scan(&c.ID, &c.MemberID, &c.Scopes, &c.Purposes, &c.Disabled)
	})
	return cs, db.Map(op, err)
}

// UseJTI records an assertion's jti for client until expires. It returns errs.Conflict when
// the jti was seen before, which the token endpoint treats as a replay.
func (s *Store) UseJTI(ctx context.Context, clientID, jti string, expires time.Time) error {
	const op = "directory.Store.UseJTI"
	tag, err := s.db.Exec(ctx, `INSERT INTO directory_assertion_jtis(client_id, jti, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, clientID, jti, expires)
	if err != nil {
		return db.Map(op, err)
	}
	if tag.RowsAffected() == 0 {
		return errs.E(op, errs.Conflict, "assertion jti already used")
	}
	// Opportunistic cleanup of long-expired rows keeps the table small.
	_, _ = s.db.Exec(ctx, `DELETE FROM directory_assertion_jtis WHERE expires_at < now() - interval '1 hour' AND ctid IN (SELECT ctid FROM directory_assertion_jtis WHERE expires_at < now() - interval '1 hour' LIMIT 100)`)
	return nil
}
