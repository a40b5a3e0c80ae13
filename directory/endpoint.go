package directory

import (
	"context"
	"errors"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

// PublishedEndpoint is an endpoint a member publishes in the directory (standards.md §8):
// where others reach it, registered by the operator with concord member endpoint --type.
// The exchange lists it as a FHIR Endpoint and never dials it.
type PublishedEndpoint struct {
	ConnectionType string        // ConnectionFHIRRest, ConnectionMLLP or ConnectionDirect
	Address        string        // https://host[:port]/path, mllp://host:port or mailto:local@domain
	PayloadTypes   []PayloadType // at least one; endpoint-payload-type "any" unless the operator named others
	Status         string        // endpoint-status: active, suspended, error, off or test
}

// PayloadType is an Endpoint.payloadType coding.
type PayloadType struct{ System, Code string }

// EndpointStatuses are the endpoint-status codes a published endpoint may have
// (entered-in-error is not one: a mistaken registration is set off).
var EndpointStatuses = []string{"active", "suspended", "error", "off", "test"}

// ConnectionTypes are the connection types of published endpoints, by the short names
// concord member endpoint --type takes.
var ConnectionTypes = map[string]string{"fhir": ConnectionFHIRRest, "mllp": ConnectionMLLP, "direct": ConnectionDirect}

const maxPayloadTypes = 10

var (
	hostLabel   = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	mailLocal   = regexp.MustCompile(`^[A-Za-z0-9!#$&'*+/=^_{}~-]+(\.[A-Za-z0-9!#$&'*+/=^_{}~-]+)*$`)
	urnPattern  = regexp.MustCompile(`^urn:[a-z0-9][a-z0-9-]{0,31}:[!-~]+$`)
	codePattern = regexp.MustCompile(`^[!-~]{1,200}$`)
)

// ParseEndpoint validates and normalizes a published endpoint: connectionType is a
// Connection... constant or a short name of ConnectionTypes; address must suit it (an
// https URL without credentials, query or fragment for hl7-fhir-rest; mllp://host:port
// for hl7v2-mllp; one mailto: address, or a bare local@domain, for direct-project), hosts
// lower-cased, a trailing slash and an explicit :443 dropped; each payload is "any",
// "none" or system|code with system an http(s) URL or a URN (none given: "any"); status
// is one of EndpointStatuses ("" is active). It returns errs.Invalid naming what is wrong.
func ParseEndpoint(connectionType, address string, payloads []string, status string) (PublishedEndpoint, error) {
	const op = "directory.ParseEndpoint"
	bad := func(msg string) (PublishedEndpoint, error) { return PublishedEndpoint{}, errs.E(op, errs.Invalid, msg) }
	e := PublishedEndpoint{ConnectionType: connectionType, Status: status}
	if ct, ok := ConnectionTypes[connectionType]; ok {
		e.ConnectionType = ct
	}
	if e.Status == "" {
		e.Status = "active"
	}
	if !slices.Contains(EndpointStatuses, e.Status) {
		return bad("status must be one of " + strings.Join(EndpointStatuses, ", "))
	}
	address = strings.TrimSpace(address)
	if address == "" || len(address) > 1024 || strings.IndexFunc(address, func(r rune) bool { return r <= ' ' || r >= 0x7f }) >= 0 {
		return bad("an endpoint address is 1 to 1024 printable ASCII characters without spaces")
	}
	var err error
	switch e.ConnectionType {
	case ConnectionFHIRRest:
		e.Address, err = fhirAddress(address)
	case ConnectionMLLP:
		e.Address, err = mllpAddress(address)
	case ConnectionDirect:
		e.Address, err = directAddress(address)
	default:
		return bad("the connection type must be fhir (hl7-fhir-rest), mllp (hl7v2-mllp) or direct (direct-project)")
	}
	if err != nil {
		return bad(err.Error())
	}
	if len(payloads) == 0 {
		payloads = []string{"any"}
	}
	if len(payloads) > maxPayloadTypes {
		return bad("at most 10 payload types")
	}
	for _, p := range payloads {
		pt, ok := parsePayloadType(strings.TrimSpace(p))
		if !ok {
			return bad("a payload type is any, none or system|code, the system an http(s) URL or a URN")
		}
		if !slices.Contains(e.PayloadTypes, pt) {
			e.PayloadTypes = append(e.PayloadTypes, pt)
		}
	}
	return e, nil
}

// addrError is a validation message for ParseEndpoint.
type addrError string

func (e addrError) Error() string { return string(e) }

// fhirAddress normalizes a FHIR base: https, a host, no credentials, query or fragment.
func fhirAddress(s string) (string, error) {
	const want = addrError("a FHIR base is an https URL (https://host[:port]/path) without credentials, query or fragment")
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Opaque != "" || u.User != nil || u.RawQuery != "" || u.ForceQuery ||
		strings.Contains(s, "#") || !strings.HasPrefix(strings.ToLower(s), "https://") {
		return "", want
	}
	host, err := hostPort(u, false)
	if err != nil {
		return "", err
	}
	path := strings.TrimRight(u.EscapedPath(), "/")
	for _, seg := range strings.Split(path, "/") {
		if seg == "." || seg == ".." {
			return "", want
		}
	}
	return "https://" + strings.TrimSuffix(host, ":443") + path, nil
}

// mllpAddress normalizes an MLLP address: mllp://host:port and nothing else.
func mllpAddress(s string) (string, error) {
	const want = addrError("an MLLP address is mllp://host:port")
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "mllp" || u.Opaque != "" || u.User != nil || u.RawQuery != "" || u.ForceQuery ||
		strings.Contains(s, "#") || (u.Path != "" && u.Path != "/") || !strings.HasPrefix(strings.ToLower(s), "mllp://") {
		return "", want
	}
	host, err := hostPort(u, true)
	if err != nil {
		return "", err
	}
	return "mllp://" + host, nil
}

// directAddress normalizes a Direct address to mailto:local@domain: one address, no
// header fields (?subject=), a dot-atom local part and a DNS domain (lower-cased).
func directAddress(s string) (string, error) {
	const want = addrError("a Direct address is mailto:local@domain (one address, no ?headers), the domain a DNS name")
	if len(s) >= 7 && strings.EqualFold(s[:7], "mailto:") {
		s = s[7:]
	}
	local, domain, ok := strings.Cut(s, "@")
	if !ok || strings.ContainsAny(s, "?,;%") || len(local) > 64 || !mailLocal.MatchString(local) {
		return "", want
	}
	domain = strings.ToLower(domain)
	if !validHostname(domain) || !strings.Contains(domain, ".") {
		return "", want
	}
	return "mailto:" + local + "@" + domain, nil
}

// hostPort returns u's host (a DNS name, lower-cased, or an IP address) and port (1 to
// 65535; required when needPort), as host[:port] with IPv6 in brackets.
func hostPort(u *url.URL, needPort bool) (string, error) {
	h, p := strings.ToLower(u.Hostname()), u.Port()
	if strings.HasSuffix(u.Host, ":") {
		return "", addrError("an empty port")
	}
	ip, err := netip.ParseAddr(h)
	switch {
	case err == nil && ip.Zone() != "":
		return "", addrError("an IPv6 zone is not an address others can reach")
	case err == nil && ip.Is6() && !ip.Is4In6():
		h = "[" + ip.String() + "]"
	case err == nil:
		h = ip.Unmap().String()
	case strings.HasPrefix(u.Host, "[") || !validHostname(h):
		return "", addrError("the host must be a DNS name or an IP address")
	}
	if p == "" {
		if needPort {
			return "", addrError("a port is required (host:port)")
		}
		return h, nil
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 || p[0] == '0' {
		return "", addrError("the port must be 1 to 65535")
	}
	return h + ":" + p, nil
}

// validHostname reports whether h is a DNS name: dot-separated labels of letters, digits
// and inner hyphens, 253 characters at most, the last label not all digits.
func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	labels := strings.Split(h, ".")
	for _, l := range labels {
		if !hostLabel.MatchString(l) {
			return false
		}
	}
	last := labels[len(labels)-1]
	return strings.IndexFunc(last, func(r rune) bool { return r < '0' || r > '9' }) >= 0
}

// parsePayloadType parses "any", "none" (endpoint-payload-type) or system|code.
func parsePayloadType(p string) (PayloadType, bool) {
	if p == "any" || p == "none" {
		return PayloadType{SystemPayloadType, p}, true
	}
	sys, code, ok := strings.Cut(p, "|")
	if !ok || !codePattern.MatchString(code) || strings.ContainsAny(code, "|,") || strings.ContainsAny(sys, "|,") {
		return PayloadType{}, false
	}
	switch {
	case urnPattern.MatchString(sys):
	case strings.HasPrefix(sys, "https://") || strings.HasPrefix(sys, "http://"):
		if u, err := url.Parse(sys); err != nil || u.Host == "" || u.User != nil || strings.IndexFunc(sys, func(r rune) bool { return r <= ' ' || r >= 0x7f }) >= 0 || len(sys) > 255 {
			return PayloadType{}, false
		}
	default:
		return PayloadType{}, false
	}
	return PayloadType{sys, code}, true
}

// String is "system|code", as stored.
func (p PayloadType) String() string { return p.System + "|" + p.Code }

func payloadStrings(ps []PayloadType) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}

// SetEndpoint publishes e (see ParseEndpoint) for member memberID, or updates the payload
// types and status of the endpoint already published at the same connection type and
// address; one removed there (RemoveEndpoint) is published again. It returns errs.Invalid
// for an endpoint ParseEndpoint refuses and errs.NotFound for an unknown member.
func (s *Store) SetEndpoint(ctx context.Context, memberID string, e PublishedEndpoint) (PublishedEndpoint, error) {
	const op = "directory.Store.SetEndpoint"
	e, err := ParseEndpoint(e.ConnectionType, e.Address, payloadStrings(e.PayloadTypes), e.Status)
	if err != nil {
		return PublishedEndpoint{}, err
	}
	tag, err := s.db.Exec(ctx, `INSERT INTO directory_endpoints(member_id, connection_type, address, payload_types, status)
		SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM directory_members WHERE id = $1)
		ON CONFLICT (member_id, connection_type, address) DO UPDATE
			SET payload_types = EXCLUDED.payload_types, status = EXCLUDED.status, updated_at = now(), removed_at = NULL`,
		memberID, e.ConnectionType, e.Address, payloadStrings(e.PayloadTypes), e.Status)
	if err != nil {
		return PublishedEndpoint{}, db.Map(op, err)
	}
	if tag.RowsAffected() == 0 {
		return PublishedEndpoint{}, errs.E(op, errs.NotFound, "member not found")
	}
	return e, nil
}

// SeedEndpoint publishes e (see ParseEndpoint) for member memberID unless an endpoint of
// its connection type and address was ever registered for the member, published, changed
// or removed: it leaves alone what an operator did (the demo's seeding, at every start).
// It reports whether it published e. It returns errs.Invalid for an endpoint
// ParseEndpoint refuses and errs.NotFound for an unknown member.
func (s *Store) SeedEndpoint(ctx context.Context, memberID string, e PublishedEndpoint) (bool, error) {
	const op = "directory.Store.SeedEndpoint"
	e, err := ParseEndpoint(e.ConnectionType, e.Address, payloadStrings(e.PayloadTypes), e.Status)
	if err != nil {
		return false, err
	}
	var member, added bool
	err = s.db.QueryRow(ctx, `WITH m AS (SELECT id FROM directory_members WHERE id = $1),
		ins AS (INSERT INTO directory_endpoints(member_id, connection_type, address, payload_types, status)
			SELECT id, $2, $3, $4, $5 FROM m
			ON CONFLICT (member_id, connection_type, address) DO NOTHING RETURNING 1)
		SELECT EXISTS (SELECT 1 FROM m), EXISTS (SELECT 1 FROM ins)`,
		memberID, e.ConnectionType, e.Address, payloadStrings(e.PayloadTypes), e.Status).Scan(&member, &added)
	if err != nil {
		return false, db.Map(op, err)
	}
	if !member {
		return false, errs.E(op, errs.NotFound, "member not found")
	}
	return added, nil
}

// RemoveEndpoint removes member memberID's published endpoint of connectionType (a
// Connection... constant or a short name of ConnectionTypes) at address (normalized as
// ParseEndpoint does; as given when it no longer parses) and returns it as it was: it is
// gone from the directory, its row kept with removed_at as the record of the removal. It
// returns errs.Invalid for an unknown connection type and errs.NotFound when the member
// publishes no such endpoint (an unknown member, or one already removed).
func (s *Store) RemoveEndpoint(ctx context.Context, memberID, connectionType, address string) (PublishedEndpoint, error) {
	const op = "directory.Store.RemoveEndpoint"
	e := PublishedEndpoint{ConnectionType: connectionType, Address: strings.TrimSpace(address)}
	if ct, ok := ConnectionTypes[connectionType]; ok {
		e.ConnectionType = ct
	}
	if !slices.Contains([]string{ConnectionFHIRRest, ConnectionMLLP, ConnectionDirect}, e.ConnectionType) {
		return PublishedEndpoint{}, errs.E(op, errs.Invalid, "the connection type must be fhir (hl7-fhir-rest), mllp (hl7v2-mllp) or direct (direct-project)")
	}
	if n, err := ParseEndpoint(e.ConnectionType, e.Address, nil, ""); err == nil {
		e.Address = n.Address
	}
	var ps []string
	err := s.db.QueryRow(ctx, `UPDATE directory_endpoints SET removed_at = now(), updated_at = now()
		WHERE member_id = $1 AND connection_type = $2 AND address = $3 AND removed_at IS NULL
		RETURNING payload_types, status`, memberID, e.ConnectionType, e.Address).Scan(&ps, &e.Status)
	if errors.Is(err, pgx.ErrNoRows) {
		return PublishedEndpoint{}, errs.E(op, errs.NotFound, "no such published endpoint")
	}
	if err != nil {
		return PublishedEndpoint{}, db.Map(op, err)
	}
	e.PayloadTypes = parsePayloadStrings(ps)
	return e, nil
}

// parsePayloadStrings parses payload types as stored ("system|code").
func parsePayloadStrings(ps []string) []PayloadType {
	var out []PayloadType
	for _, p := range ps {
		sys, code, _ := strings.Cut(p, "|")
		out = append(out, PayloadType{sys, code})
	}
	return out
}

// publishedEndpoints loads the endpoints published by each of memberIDs, by member ID,
// each member's by connection type and address; removed ones are left out.
func publishedEndpoints(ctx context.Context, q db.Querier, memberIDs []string) (map[string][]PublishedEndpoint, error) {
	rows, err := q.Query(ctx, `SELECT member_id, connection_type, address, payload_types, status FROM directory_endpoints
		WHERE member_id = ANY($1) AND removed_at IS NULL ORDER BY member_id, connection_type, address`, memberIDs)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string][]PublishedEndpoint{}
	for rows.Next() {
		var m string
		var e PublishedEndpoint
		var ps []string
		if err := rows.Scan(&m, &e.ConnectionType, &e.Address, &ps, &e.Status); err != nil {
			return nil, err
		}
		e.PayloadTypes = parsePayloadStrings(ps)
		out[m] = append(out[m], e)
	}
	return out, rows.Err()
}
