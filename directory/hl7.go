package directory

import (
	"context"
	"net/netip"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

// This file is the HL7 v2 part of the directory: which MSH-3/MSH-4 values a member's feeds
// send, which source addresses and client-certificate names identify its MLLP connections,
// and which v2 assigning-authority namespace IDs stand for one of its identifier systems.

// AddHL7Sender registers facility (MSH-4: an HD namespace ID such as "GENFAC", a universal
// ID such as "2.16.840.1.113883.3.9999", or the raw field) and optionally app (MSH-3; ""
// for any application) as member's feed. It returns errs.Conflict when the pair is
// registered already and errs.Invalid for an unknown member or an empty facility.
func (s *Store) AddHL7Sender(ctx context.Context, memberID, app, facility string) error {
	const op = "directory.Store.AddHL7Sender"
	app, facility = strings.TrimSpace(app), strings.TrimSpace(facility)
	if facility == "" || len(facility) > 200 || len(app) > 200 {
		return errs.E(op, errs.Invalid, "an HL7 sender needs an MSH-4 facility of at most 200 characters")
	}
	_, err := s.db.Exec(ctx, `INSERT INTO directory_hl7_senders(member_id, msh3, msh4) VALUES ($1, $2, $3)`, memberID, app, facility)
	if err != nil {
		return errs.E(op, "unknown member, or the sender is registered already", db.Map(op, err))
	}
	return nil
}

// HL7SenderMember returns the member that registered a message's sender: apps and
// facilities are the forms of MSH-3 and MSH-4 to try (raw, namespace ID, universal ID). A
// row with an empty MSH-3 matches any application. It returns errs.NotFound when no member
// registered the sender and errs.Conflict when registrations of two members match.
func (s *Store) HL7SenderMember(ctx context.Context, q db.Querier, apps, facilities []string) (string, error) {
	const op = "directory.Store.HL7SenderMember"
	if q == nil {
		q = s.db
	}
	rows, err := q.Query(ctx, `SELECT DISTINCT member_id FROM directory_hl7_senders
		WHERE msh4 = ANY($1) AND (msh3 = '' OR msh3 = ANY($2)) ORDER BY member_id LIMIT 2`, facilities, apps)
	return soleMember(op, rows, err, "sender not registered", "sender registered to more than one member")
}

// soleMember reads the result of a query selecting DISTINCT member_id ... LIMIT 2 (qerr
// is the query's error): one row is the answer, none is errs.NotFound with notFound, two
// are errs.Conflict with conflict. Errors are reported under op.
func soleMember(op string, rows pgx.Rows, qerr error, notFound, conflict string) (string, error) {
	if qerr != nil {
		return "", db.Map(op, qerr)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", db.Map(op, err)
	}
	switch len(ids) {
	case 0:
		return "", errs.E(op, errs.NotFound, notFound)
	case 1:
		return ids[0], nil
	}
	return "", errs.E(op, errs.Conflict, conflict)
}

// AddHL7Address allows MLLP connections from prefix (CIDR, e.g. "10.1.2.0/24" or
// "127.0.0.0/8"; a bare address means that host) for member. It returns errs.Invalid for a
// malformed prefix or an unknown member and errs.Conflict when it is registered already.
func (s *Store) AddHL7Address(ctx context.Context, memberID, prefix string) error {
	const op = "directory.Store.AddHL7Address"
	p, err := parsePrefix(prefix)
	if err != nil {
		return err
	}
	if _, err := s.db.Exec(ctx, `INSERT INTO directory_hl7_addresses(member_id, cidr) VALUES ($1, $2)`, memberID, p.String()); err != nil {
		return errs.E(op, "unknown member, or the address is registered already", db.Map(op, err))
	}
	return nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, errs.E("directory.parsePrefix", errs.Invalid, "want an address or a CIDR prefix such as 10.1.2.0/24")
		}
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, errs.E("directory.parsePrefix", errs.Invalid, "want an address or a CIDR prefix such as 10.1.2.0/24")
	}
	return p.Masked(), nil
}

// HL7AddressMembers returns the members allowed to connect from ip, those of the longest
// matching prefix first (IPv4-mapped IPv6 addresses match IPv4 prefixes). It returns an
// empty list, not an error, when no prefix matches.
func (s *Store) HL7AddressMembers(ctx context.Context, q db.Querier, ip netip.Addr) ([]AddressMember, error) {
	const op = "directory.Store.HL7AddressMembers"
	if q == nil {
		q = s.db
	}
	rows, err := q.Query(ctx, `SELECT member_id, masklen(cidr) FROM directory_hl7_addresses
		WHERE cidr >>= $1::inet ORDER BY masklen(cidr) DESC, member_id`, ip.Unmap().String())
	if err != nil {
		return nil, db.Map(op, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (AddressMember, error) {
		var a AddressMember
		return a, r.Scan(&a.MemberID, &a.Bits)
	})
	return out, db.Map(op, err)
}

// AddressMember is one member whose registered prefix contains an address.
type AddressMember struct {
	MemberID string
	Bits     int // the prefix length that matched
}

// AddHL7CertName lets an MLLP client certificate whose subject CN or a DNS SAN equals
// name identify member. It returns errs.Conflict when the name is taken.
func (s *Store) AddHL7CertName(ctx context.Context, memberID, name string) error {
	const op = "directory.Store.AddHL7CertName"
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 255 {
		return errs.E(op, errs.Invalid, "a certificate name must be 1 to 255 characters")
	}
	if _, err := s.db.Exec(ctx, `INSERT INTO directory_hl7_cert_names(name, member_id) VALUES ($1, $2)`, name, memberID); err != nil {
		return errs.E(op, "unknown member, or the name is registered already", db.Map(op, err))
	}
	return nil
}

// HL7CertMember returns the member that registered one of names (a certificate's CN and
// DNS SANs). It returns errs.NotFound when none is registered and errs.Conflict when the
// names belong to two members.
func (s *Store) HL7CertMember(ctx context.Context, names []string) (string, error) {
	const op = "directory.Store.HL7CertMember"
	rows, err := s.db.Query(ctx, `SELECT DISTINCT member_id FROM directory_hl7_cert_names WHERE name = ANY($1) ORDER BY member_id LIMIT 2`, names)
	return soleMember(op, rows, err, "certificate not registered", "certificate names belong to more than one member")
}

// AddHL7Namespace declares that the v2 assigning-authority namespace ID namespace (CX-4.1
// sent without a universal ID, e.g. "SIMULATOR MRN") stands for system, one of member's
// identifier systems; system "" means the member's own MRN system. It returns errs.Invalid
// when system is not the member's and errs.Conflict when the namespace is taken.
func (s *Store) AddHL7Namespace(ctx context.Context, memberID, namespace, system string) error {
	const op = "directory.Store.AddHL7Namespace"
	namespace = strings.TrimSpace(namespace)
	if namespace == "" || len(namespace) > 200 {
		return errs.E(op, errs.Invalid, "a namespace ID must be 1 to 200 characters")
	}
	if system == "" {
		m, err := s.Member(ctx, memberID)
		if err != nil {
			return err
		}
		system = m.System
	}
	tag, err := s.db.Exec(ctx, `INSERT INTO directory_hl7_namespaces(namespace, member_id, system)
		SELECT $1, $2, system FROM directory_authorities WHERE system = $3 AND member_id = $2`, namespace, memberID, system)
	if err != nil {
		return errs.E(op, "the namespace is registered already", db.Map(op, err))
	}
	if tag.RowsAffected() == 0 {
		return errs.E(op, errs.Invalid, "the system is not one of the member's assigning authorities")
	}
	return nil
}

// Authority is the owner of one identifier system, as the directory knows it.
type Authority struct {
	System   string // the FHIR Identifier.system
	MemberID string
}

// ResolveAuthorities looks up, in q, the owners of identifier systems and v2 namespace
// IDs. The result maps each key found (a system, or a namespace ID when it was registered
// with AddHL7Namespace) to its Authority; keys nobody registered are absent.
func (s *Store) ResolveAuthorities(ctx context.Context, q db.Querier, keys []string) (map[string]Authority, error) {
	const op = "directory.Store.ResolveAuthorities"
	if q == nil {
		q = s.db
	}
	out := map[string]Authority{}
	if len(keys) == 0 {
		return out, nil
	}
	rows, err := q.Query(ctx, `SELECT system, system, member_id, 0 AS rank FROM directory_authorities WHERE system = ANY($1)
		UNION ALL SELECT namespace, system, member_id, 1 FROM directory_hl7_namespaces WHERE namespace = ANY($1)
		ORDER BY rank`, keys)
	if err != nil {
		return nil, db.Map(op, err)
	}
	defer rows.Close()
	for rows.Next() {
		var k string
		var a Authority
		var rank int
		if err := rows.Scan(&k, &a.System, &a.MemberID, &rank); err != nil {
			return nil, db.Map(op, err)
		}
		if _, ok := out[k]; !ok { // a registered system beats a namespace of the same text
			out[k] = a
		}
	}
	return out, db.Map(op, rows.Err())
}
