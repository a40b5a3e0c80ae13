package directory

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/internal/errs"
)

// This file is the directory as FHIR (standards.md §8): each member as an Organization
// and each endpoint the directory knows as an Endpoint, with the exchange itself as one
// more Organization owning its own FHIR base. It is pure: the exchange loads Listings and
// serves what these functions build.
//
// Ids never take the form of a stored resource's server-assigned id (32 lower-case hex
// digits, store.NewID; PUT cannot create an id), so a directory resource and a member-sent
// one can never share an id: members are "member-" + the member ID, the exchange is
// "concord", rest-hook endpoints are "hook-" + a digest of their member and origin,
// published endpoints (FHIR base, MLLP, Direct) "ep-" + a digest of their member,
// connection type and address, and the exchange's FHIR base is "concord-fhir".

// FHIR code systems and identifier systems of directory resources.
const (
	SystemConnectionType = "http://terminology.hl7.org/CodeSystem/endpoint-connection-type"
	SystemPayloadType    = "http://terminology.hl7.org/CodeSystem/endpoint-payload-type"
	SystemEndpointStatus = "http://hl7.org/fhir/endpoint-status"
	SystemURI            = "urn:ietf:rfc:3986" // Identifier.system of an identifier that is itself a URI (an OID's urn:oid: form)
	SystemNPI            = "http://hl7.org/fhir/sid/us-npi"
)

// Connection types (endpoint-connection-type) the directory lists.
const (
	ConnectionFHIRRest = "hl7-fhir-rest"
	ConnectionMLLP     = "hl7v2-mllp"
	ConnectionDirect   = "direct-project"
)

// ExchangeOrganizationID is the id of the exchange's own Organization, the managing
// organization of the exchange's own endpoints.
const ExchangeOrganizationID = "concord"

const (
	memberOrgPrefix    = "member-"
	hookPrefix         = "hook-"
	publishedPrefix    = "ep-"
	exchangeEndpointID = "concord-fhir"
)

// OrganizationID returns the FHIR id of member's directory Organization.
func OrganizationID(memberID string) string { return memberOrgPrefix + memberID }

// IsDirectoryID reports whether id has the form of a directory resource's id (Organization
// or Endpoint), which no stored resource can have. It says nothing of whether one exists.
func IsDirectoryID(id string) bool {
	return strings.HasPrefix(id, memberOrgPrefix) || strings.HasPrefix(id, hookPrefix) ||
		strings.HasPrefix(id, publishedPrefix) || id == ExchangeOrganizationID || id == exchangeEndpointID
}

// Listing is what the directory knows of one member, as its FHIR view needs it.
type Listing struct {
	Member Member
	// Systems are the identifier systems the member registered (directory_authorities);
	// Member.System among them.
	Systems []string
	// NPI is the member's organizational NPI (concord member add --npi, concord member
	// set --npi); "" when the directory holds none.
	NPI string
	// HookOrigins are the rest-hook origins (scheme://host:port) registered with concord
	// member endpoint, where the member receives notifications.
	HookOrigins []string
	// Endpoints are the endpoints the member publishes (concord member endpoint --type):
	// its FHIR base, MLLP receiver, Direct address.
	Endpoints []PublishedEndpoint
}

// Exchange is the exchange itself as the directory lists it.
type Exchange struct {
	Name     string // "Concord" when empty
	FHIRBase string // [base]; "" lists no endpoint
}

// Organization is a directory Organization.
type Organization struct {
	ID          string
	Name        string
	Active      bool
	Identifiers []Identifier
	Endpoints   []string // Endpoint ids
}

// Identifier is an Organization or Endpoint identifier.
type Identifier struct {
	Use, System, Value string
}

// Endpoint is a directory Endpoint.
type Endpoint struct {
	ID             string
	OrgID          string // managing Organization id
	OrgName        string
	Status         string // endpoint-status: "active", or what the operator set on a published endpoint
	ConnectionType string // a Connection... constant
	Name           string
	Address        string
	PayloadTypes   []PayloadType // none: endpoint-payload-type "any"
	PayloadText    string        // what travels over it, in words: the text of an "any" payload type
	MimeTypes      []string
	Identifiers    []Identifier // none today; searched like any identifier
}

// MemberOrganization returns the member's directory Organization: its name, active (the
// directory has no way to deactivate a member), its OIDs as urn:ietf:rfc:3986 identifiers
// (the primary system official, other registered OIDs secondary; an http(s) system is a
// namespace, not an identifier of the organization, and is left out), its NPI when held,
// and its endpoints.
func MemberOrganization(l Listing) Organization {
	o := Organization{ID: OrganizationID(l.Member.ID), Name: l.Member.Name, Active: true}
	if strings.HasPrefix(l.Member.System, "urn:oid:") {
		o.Identifiers = append(o.Identifiers, Identifier{Use: "official", System: SystemURI, Value: l.Member.System})
	}
	others := slices.Clone(l.Systems)
	slices.Sort(others)
	for _, s := range slices.Compact(others) {
		if s != l.Member.System && strings.HasPrefix(s, "urn:oid:") {
			o.Identifiers = append(o.Identifiers, Identifier{Use: "secondary", System: SystemURI, Value: s})
		}
	}
	if l.NPI != "" {
		o.Identifiers = append(o.Identifiers, Identifier{System: SystemNPI, Value: l.NPI})
	}
	for _, e := range MemberEndpoints(l) {
		o.Endpoints = append(o.Endpoints, e.ID)
	}
	return o
}

// MemberEndpoints returns the endpoints the directory knows for the member: the rest-hook
// origins it registered, by origin, then the endpoints it publishes (FHIR base, MLLP
// receiver, Direct address) by connection type and address, with the status the operator
// gave them. (The HL7 addresses the directory keeps are where the member's feeds connect
// from, not where it listens, and are not listed.)
func MemberEndpoints(l Listing) []Endpoint {
	origins := slices.Clone(l.HookOrigins)
	slices.Sort(origins)
	out := make([]Endpoint, 0, len(origins)+len(l.Endpoints))
	for _, o := range slices.Compact(origins) {
		out = append(out, Endpoint{ID: hookID(l.Member.ID, o), OrgID: OrganizationID(l.Member.ID), OrgName: l.Member.Name,
			Status: "active", ConnectionType: ConnectionFHIRRest, Name: "Notification receiver (Subscriptions Backport rest-hook)",
			Address:     o,
			PayloadText: "Subscription notification Bundles (Subscriptions R5 Backport rest-hook); a Subscription may name any URL at this origin",
			MimeTypes:   []string{"application/fhir+json"}})
	}
	pub := slices.Clone(l.Endpoints)
	slices.SortFunc(pub, func(a, b PublishedEndpoint) int {
		return cmp.Or(strings.Compare(a.ConnectionType, b.ConnectionType), strings.Compare(a.Address, b.Address))
	})
	for _, p := range slices.CompactFunc(pub, func(a, b PublishedEndpoint) bool {
		return a.ConnectionType == b.ConnectionType && a.Address == b.Address
	}) {
		out = append(out, publishedEndpoint(l.Member, p))
	}
	return out
}

// publishedEndpoint is the directory Endpoint of m's published endpoint p.
func publishedEndpoint(m Member, p PublishedEndpoint) Endpoint {
	e := Endpoint{ID: publishedID(m.ID, p.ConnectionType, p.Address), OrgID: OrganizationID(m.ID), OrgName: m.Name,
		Status: p.Status, ConnectionType: p.ConnectionType, Address: p.Address, PayloadTypes: slices.Clone(p.PayloadTypes)}
	switch p.ConnectionType {
	case ConnectionFHIRRest:
		e.Name, e.PayloadText, e.MimeTypes = m.Name+" FHIR API", "FHIR resources", []string{"application/fhir+json"}
	case ConnectionMLLP:
		e.Name, e.PayloadText, e.MimeTypes = m.Name+" HL7 v2 receiver (MLLP)", "HL7 v2 messages", []string{"x-application/hl7-v2+er7"}
	case ConnectionDirect:
		e.Name, e.PayloadText = m.Name+" Direct address", "Direct secure messages"
	}
	return e
}

// publishedID is the id of member's published endpoint of connection type ct at address:
// stable while the registration lasts (a status change keeps it), and no stored id's form.
func publishedID(member, ct, address string) string {
	h := sha256.Sum256([]byte(member + "\x00" + ct + "\x00" + address))
	return publishedPrefix + hex.EncodeToString(h[:16])
}

// hookID is the id of member's rest-hook endpoint at origin: stable while the
// registration lasts, and no stored id's form.
func hookID(member, origin string) string {
	h := sha256.Sum256([]byte(member + "\x00" + origin))
	return hookPrefix + hex.EncodeToString(h[:16])
}

// ExchangeOrganization returns the exchange's own Organization: identified by its FHIR
// base as a URI (as the audit log names it), owning the exchange's endpoints.
func ExchangeOrganization(x Exchange) Organization {
	o := Organization{ID: ExchangeOrganizationID, Name: x.name(), Active: true}
	if x.FHIRBase != "" {
		o.Identifiers = []Identifier{{System: SystemURI, Value: x.FHIRBase}}
	}
	for _, e := range ExchangeEndpoints(x) {
		o.Endpoints = append(o.Endpoints, e.ID)
	}
	return o
}

// ExchangeEndpoints returns the exchange's own endpoints: its FHIR base. Its MLLP listener
// is configured as a bind address (CONCORD_MLLP_ADDR), not an address members dial, so it
// is not listed.
func ExchangeEndpoints(x Exchange) []Endpoint {
	if x.FHIRBase == "" {
		return nil
	}
	return []Endpoint{{ID: exchangeEndpointID, OrgID: ExchangeOrganizationID, OrgName: x.name(), Status: "active",
		ConnectionType: ConnectionFHIRRest, Name: x.name() + " FHIR R4 API", Address: x.FHIRBase,
		PayloadText: "FHIR R4 resources (SMART Backend Services)", MimeTypes: []string{"application/fhir+json"}}}
}

func (x Exchange) name() string {
	if x.Name == "" {
		return "Concord"
	}
	return x.Name
}

type fhirCoding struct {
	System string `json:"system,omitempty"`
	Code   string `json:"code"`
}

type fhirIdentifier struct {
	Use    string `json:"use,omitempty"`
	System string `json:"system,omitempty"`
	Value  string `json:"value"`
}

type fhirReference struct {
	Reference string `json:"reference"`
	Display   string `json:"display,omitempty"`
}

type fhirMeta struct {
	Source string `json:"source,omitempty"`
}

func identifiersJSON(ids []Identifier) []fhirIdentifier {
	var out []fhirIdentifier
	for _, i := range ids {
		out = append(out, fhirIdentifier(i))
	}
	return out
}

// FHIR returns o as an R4 Organization. source is meta.source: the exchange labels
// directory resources [BaseURL]/directory, as it labels a member's records
// [BaseURL]/members/{id}; they carry no source-member tag, since no member sent them.
func (o Organization) FHIR(source string) []byte {
	var eps []fhirReference
	for _, id := range o.Endpoints {
		eps = append(eps, fhirReference{Reference: "Endpoint/" + id})
	}
	b, _ := json.Marshal(struct { // plain strings and slices always encode
		ResourceType string           `json:"resourceType"`
		ID           string           `json:"id"`
		Meta         fhirMeta         `json:"meta"`
		Identifier   []fhirIdentifier `json:"identifier,omitempty"`
		Active       bool             `json:"active"`
		Name         string           `json:"name"`
		Endpoint     []fhirReference  `json:"endpoint,omitempty"`
	}{"Organization", o.ID, fhirMeta{source}, identifiersJSON(o.Identifiers), o.Active, o.Name, eps})
	return b
}

// FHIR returns e as an R4 Endpoint (meta.source as for Organization.FHIR).
func (e Endpoint) FHIR(source string) []byte {
	type concept struct {
		Coding []fhirCoding `json:"coding"`
		Text   string       `json:"text,omitempty"`
	}
	pts := e.PayloadTypes
	if len(pts) == 0 {
		pts = []PayloadType{{SystemPayloadType, "any"}}
	}
	var payload []concept
	for _, p := range pts {
		c := concept{Coding: []fhirCoding{{p.System, p.Code}}}
		if p == (PayloadType{SystemPayloadType, "any"}) {
			c.Text = e.PayloadText
		}
		payload = append(payload, c)
	}
	b, _ := json.Marshal(struct {
		ResourceType         string           `json:"resourceType"`
		ID                   string           `json:"id"`
		Meta                 fhirMeta         `json:"meta"`
		Identifier           []fhirIdentifier `json:"identifier,omitempty"`
		Status               string           `json:"status"`
		ConnectionType       fhirCoding       `json:"connectionType"`
		Name                 string           `json:"name,omitempty"`
		ManagingOrganization fhirReference    `json:"managingOrganization"`
		PayloadType          []concept        `json:"payloadType"`
		PayloadMimeType      []string         `json:"payloadMimeType,omitempty"`
		Address              string           `json:"address"`
	}{"Endpoint", e.ID, fhirMeta{source}, identifiersJSON(e.Identifiers), e.Status,
		fhirCoding{SystemConnectionType, e.ConnectionType}, e.Name,
		fhirReference{"Organization/" + e.OrgID, e.OrgName},
		payload, e.MimeTypes, e.Address})
	return b
}

// Matches reports whether o matches every clause of s (a search parsed for Organization),
// with the semantics the store gives them (fhir.Search): identifier and active as tokens,
// name as a string (starts-with, :exact, :contains), _id; :missing and token :not. A clause
// it cannot decide here (_lastUpdated: directory resources have none, so only :missing
// true matches it; a chain) does not match.
func (o Organization) Matches(s fhir.Search) bool {
	for _, c := range s.Clauses {
		var tokens []Identifier
		var strs []string
		switch c.Param {
		case "identifier":
			tokens = o.Identifiers
		case "active":
			tokens = []Identifier{{Value: strconv.FormatBool(o.Active)}}
		case "_id":
			tokens = []Identifier{{Value: o.ID}}
		case "name":
			strs = []string{o.Name}
		}
		if !matchClause(c, tokens, strs) {
			return false
		}
	}
	return true
}

// matchClause decides clause c over a resource's token rows and string rows for c.Param
// (both empty: the resource has no row for it).
func matchClause(c fhir.Clause, tokens []Identifier, strs []string) bool {
	if c.Chain != nil {
		return false
	}
	if c.Modifier == fhir.ModMissing {
		return c.Values[0].Missing == (len(tokens) == 0 && len(strs) == 0)
	}
	hit := false
	for _, v := range c.Values {
		switch c.Type {
		case fhir.ParamToken:
			for _, t := range tokens {
				hit = hit || tokenMatch(v, t.System, t.Value)
			}
		case fhir.ParamString:
			for _, s := range strs {
				hit = hit || stringMatch(c.Modifier, v, s)
			}
		}
	}
	if c.Modifier == fhir.ModNot {
		return c.Type == fhir.ParamToken && !hit
	}
	return hit
}

func tokenMatch(v fhir.Value, system, code string) bool {
	switch v.SystemMode {
	case fhir.NoSystem:
		return system == "" && code == v.Code
	case fhir.ExactSystem:
		return system == v.System && (v.Code == "" || code == v.Code)
	}
	return code == v.Code
}

func stringMatch(m fhir.Modifier, v fhir.Value, s string) bool {
	switch m {
	case fhir.ModExact:
		return s == v.Raw
	case fhir.ModContains:
		return strings.Contains(fhir.NormalizeString(s), v.Norm)
	case fhir.ModNone:
		return strings.HasPrefix(fhir.NormalizeString(s), v.Norm)
	}
	return false
}

// EndpointSearch is a parsed Endpoint search on the directory.
type EndpointSearch struct {
	clauses []endpointClause
	Count   int // page size
	Offset  int // results skipped (the paging parameter _offset)
	NoTotal bool
	// IncludeOrganization is _include=Endpoint:organization: the page's managing
	// Organizations are wanted beside its Endpoints.
	IncludeOrganization bool
}

type endpointClause struct {
	param string
	not   bool
	vals  []fhir.Value // tokens; for organization, Code is the Organization id
}

// EndpointParams are the search parameters ParseEndpointSearch accepts besides _count,
// _offset, _total and _format.
var EndpointParams = []string{"_id", "connection-type", "identifier", "organization", "status"}

// ParseEndpointSearch parses q as an Endpoint search on the directory: organization (an
// Organization id, Organization/id or base/Organization/id, also with :Organization),
// connection-type, identifier, status and _id (tokens; :not allowed), comma-separated
// values ORed and repeated parameters ANDed; _count (up to maxCount, default
// defaultCount), _offset for paging, _total, and _include=Endpoint:organization (also
// with the target type, Endpoint:organization:Organization). base is the exchange's FHIR
// base. Anything else (_revinclude, another _include, :iterate) is errs.Invalid.
func ParseEndpointSearch(q url.Values, base string, defaultCount, maxCount int) (EndpointSearch, error) {
	const op = "directory.ParseEndpointSearch"
	bad := func(msg string) (EndpointSearch, error) { return EndpointSearch{}, errs.E(op, errs.Invalid, msg) }
	s := EndpointSearch{Count: defaultCount}
	for name, vals := range q {
		param, mod, hasMod := strings.Cut(name, ":")
		switch param {
		case "_format":
			continue
		case "_count", "_offset":
			if len(vals) != 1 || hasMod {
				return bad(param + " takes one value")
			}
			n, err := strconv.Atoi(vals[0])
			if err != nil || n < 0 {
				return bad(param + " must be a non-negative integer")
			}
			if param == "_count" {
				s.Count = min(n, maxCount)
			} else {
				s.Offset = n
			}
			continue
		case "_total":
			if len(vals) != 1 || hasMod || !slices.Contains([]string{"none", "estimate", "accurate"}, vals[0]) {
				return bad("_total must be none, estimate or accurate")
			}
			s.NoTotal = vals[0] == "none"
			continue
		case "_include":
			for _, v := range vals {
				if hasMod || v != "Endpoint:organization" && v != "Endpoint:organization:Organization" {
					return bad("_include on Endpoint takes only Endpoint:organization")
				}
			}
			s.IncludeOrganization = true
			continue
		}
		if !slices.Contains(EndpointParams, param) {
			return bad("unknown search parameter for Endpoint; supported: " + strings.Join(EndpointParams, ", "))
		}
		c := endpointClause{param: param}
		switch {
		case !hasMod:
		case mod == "not" && param != "organization":
			c.not = true
		case mod == "Organization" && param == "organization":
		default:
			return bad("unsupported modifier")
		}
		for _, raw := range vals {
			for _, v := range strings.Split(raw, ",") {
				if v == "" {
					return bad("empty value in list")
				}
				var val fhir.Value
				if param == "organization" {
					id := strings.TrimPrefix(strings.TrimPrefix(v, base+"/"), "Organization/")
					if id == "" || strings.Contains(id, "/") {
						return bad("organization takes an Organization id")
					}
					val.Code = id
				} else if sys, code, ok := strings.Cut(v, "|"); ok {
					val.SystemMode, val.System, val.Code = fhir.ExactSystem, sys, code
					if sys == "" {
						val.SystemMode = fhir.NoSystem
					}
				} else {
					val.Code = v
				}
				c.vals = append(c.vals, val)
			}
		}
		s.clauses = append(s.clauses, c)
	}
	slices.SortFunc(s.clauses, func(a, b endpointClause) int { return strings.Compare(a.param, b.param) })
	return s, nil
}

// Organizations returns the Organization ids the search restricts to, and whether it does
// (one organization clause): a caller can load only those members' listings.
func (s EndpointSearch) Organizations() ([]string, bool) {
	for _, c := range s.clauses {
		if c.param == "organization" {
			var ids []string
			for _, v := range c.vals {
				ids = append(ids, v.Code)
			}
			return ids, true
		}
	}
	return nil, false
}

// Matches reports whether e matches every clause of s.
func (s EndpointSearch) Matches(e Endpoint) bool {
	for _, c := range s.clauses {
		var rows []Identifier
		switch c.param {
		case "_id":
			rows = []Identifier{{Value: e.ID}}
		case "connection-type":
			rows = []Identifier{{System: SystemConnectionType, Value: e.ConnectionType}}
		case "identifier":
			rows = e.Identifiers
		case "status":
			rows = []Identifier{{System: SystemEndpointStatus, Value: e.Status}}
		case "organization":
			rows = []Identifier{{Value: e.OrgID}}
		}
		hit := false
		for _, v := range c.vals {
			for _, r := range rows {
				hit = hit || tokenMatch(v, r.System, r.Value)
			}
		}
		if hit == c.not {
			return false
		}
	}
	return true
}

// Page returns the page of matches s asks for (Offset, Count) and the offset of the next
// page, or -1 when this is the last. _count=0 asks for the total alone: no entries, no
// next page.
func (s EndpointSearch) Page(matches []Endpoint) ([]Endpoint, int) {
	if s.Offset >= len(matches) || s.Count == 0 {
		return nil, -1
	}
	end := min(s.Offset+s.Count, len(matches))
	if end == len(matches) {
		return matches[s.Offset:end], -1
	}
	return matches[s.Offset:end], end
}
