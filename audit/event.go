// Package audit is Concord's tamper-evident audit log: typed events shaped after IHE BALP,
// appended to PostgreSQL with group commit, hash-chained (hash_i = SHA-256(hash_{i-1} ||
// seq_i || encoding_i)), checkpointed with signed RFC 6962 Merkle tree heads, verified end to
// end, and read back as FHIR AuditEvent, the patient's access log and the accounting of
// disclosures.
//
// Events hold IDs, codes and keyed hashes only: never names, birth dates, identifier values or
// clinical payloads. Search terms that are PHI are replaced by HMACs (see Hasher.HashQuery)
// before they reach an Event.
package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"log/slog"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/concord-hie/concord/internal/errs"
)

// Action is what happened, as a stable code stored in the log.
type Action string

// Actions. Read, Query, Create, Update and Delete are BALP's RESTful patient events;
// Disclosure is BALP PrivacyDisclosure; ConsentDecision is BALP AuthZconsent (one per consent
// decision). AuditQuery is a person reading the audit log itself: an officer's search or a
// patient's own access log.
const (
	Read            Action = "read"
	Query           Action = "query"
	Create          Action = "create"
	Update          Action = "update"
	Delete          Action = "delete"
	Disclosure      Action = "disclosure"
	ConsentDecision Action = "authz-consent"
	Login           Action = "login"
	Logout          Action = "logout"
	BreakGlass      Action = "break-glass"
	Merge           Action = "merge"
	Unmerge         Action = "unmerge"
	Link            Action = "link"
	Unlink          Action = "unlink"
	Export          Action = "export"
	ConsentChange   Action = "consent-change"
	AuditQuery      Action = "audit-query"
)

var knownActions = map[Action]bool{
	Read: true, Query: true, Create: true, Update: true, Delete: true, Disclosure: true,
	ConsentDecision: true, Login: true, Logout: true, BreakGlass: true, Merge: true,
	Unmerge: true, Link: true, Unlink: true, Export: true, ConsentChange: true, AuditQuery: true,
}

// Outcome is how the request ended.
type Outcome string

// Outcomes, rendered as AuditEvent.outcome 0, 4 and 8.
const (
	Permit  Outcome = "permit"  // allowed and done (FHIR outcome 0)
	Deny    Outcome = "deny"    // refused by policy or consent (FHIR outcome 4)
	Failure Outcome = "failure" // failed for another reason (FHIR outcome 8)
)

// Resource names one FHIR resource touched by the event.
type Resource struct {
	Type string // FHIR resource type, e.g. "Observation"
	ID   string // logical id
}

// String renders "Type/id".
func (r Resource) String() string { return r.Type + "/" + r.ID }

// Event is one audit record. Every field is an ID, a code or a keyed hash; see the package
// comment. Seq and the chain hashes are assigned by the Log.
type Event struct {
	Seq            int64     // assigned on append; zero on input
	Time           time.Time // when it happened; zero means "now" at append. Stored in UTC, microseconds
	Action         Action
	Outcome        Outcome
	Reason         string // machine reason code (consent reason, error class)
	Actor          string // user as "iss|sub"; empty for a system action
	Client         string // OAuth client_id of the calling system or app
	Org            string // directory member id of the actor's organization
	Role           string // actor's role code
	Purpose        string // v3-ActReason purpose of use, e.g. TREAT, HPAYMT, BTG
	Patient        string // person ID the event is about; one event per patient
	Resources      []Resource
	Consent        string // consent directive that decided
	ConsentVersion int64  // its version
	TokenID        string // access token jti
	RequestID      string // X-Request-Id
	SourceIP       string // caller's network address
	Query          string // query string with PHI values replaced by HMACs (Hasher.HashQuery)
	BreakGlass     bool   // access under a break-the-glass declaration
	ShareLink      bool   // access through a patient's share link
}

// Field size limits, so one event cannot bloat the log or a batch.
const (
	maxField     = 1024
	maxQuery     = 8192
	maxResources = 1000
)

// Validate reports whether ev can be appended: a known action and outcome, fields within
// size limits, valid UTF-8 without NUL bytes. It returns errs.Invalid naming the field (never
// its value).
func (ev *Event) Validate() error {
	const op = "audit.Event.Validate"
	if !knownActions[ev.Action] {
		return errs.E(op, errs.Invalid, "unknown audit action")
	}
	switch ev.Outcome {
	case Permit, Deny, Failure:
	default:
		return errs.E(op, errs.Invalid, "unknown audit outcome")
	}
	if len(ev.Resources) > maxResources {
		return errs.E(op, errs.Invalid, "too many resources in one audit event")
	}
	bad := ""
	check := func(name, s string, max int) {
		if bad == "" && (len(s) > max || !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0) {
			bad = name
		}
	}
	check("reason", ev.Reason, maxField)
	check("actor", ev.Actor, maxField)
	check("client", ev.Client, maxField)
	check("org", ev.Org, maxField)
	check("role", ev.Role, maxField)
	check("purpose", ev.Purpose, maxField)
	check("patient", ev.Patient, maxField)
	check("consent", ev.Consent, maxField)
	check("token_id", ev.TokenID, maxField)
	check("request_id", ev.RequestID, maxField)
	check("source_ip", ev.SourceIP, maxField)
	check("query", ev.Query, maxQuery)
	for _, r := range ev.Resources {
		check("resource type", r.Type, maxField)
		check("resource id", r.ID, maxField)
		if bad == "" && (r.Type == "" || strings.Contains(r.Type, "/")) {
			bad = "resource type"
		}
	}
	if bad != "" {
		return errs.E(op, errs.Invalid, "audit event field "+bad+" is too long or not valid text")
	}
	return nil
}

// normalize puts ev in its stored form: UTC, microsecond precision, non-nil Resources.
func (ev *Event) normalize(now time.Time) {
	if ev.Time.IsZero() {
		ev.Time = now
	}
	ev.Time = time.UnixMicro(ev.Time.UnixMicro()).UTC()
}

// LogValue renders the event for slog. Events hold no PHI (see the package comment), so
// nothing needs redacting; the query is summarized by length because it is long, not secret.
func (ev Event) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Int64("seq", ev.Seq),
		slog.String("action", string(ev.Action)),
		slog.String("outcome", string(ev.Outcome)),
		slog.String("reason", ev.Reason),
		slog.String("actor", ev.Actor),
		slog.String("client", ev.Client),
		slog.String("org", ev.Org),
		slog.String("purpose", ev.Purpose),
		slog.String("patient", ev.Patient),
		slog.Int("resources", len(ev.Resources)),
		slog.String("request_id", ev.RequestID),
		slog.Bool("break_glass", ev.BreakGlass),
		slog.Bool("share_link", ev.ShareLink),
	)
}

// Hasher turns PHI search terms into keyed HMAC-SHA256 values, so the log can show that a
// search for a given name happened (an officer holding the key can test a candidate) without
// storing the name. Its zero value is unusable; use NewHasher.
type Hasher struct {
	key []byte
}

// NewHasher returns a Hasher with the given secret key, which must be at least 32 bytes. It
// returns errs.Invalid for a shorter key.
func NewHasher(key []byte) (*Hasher, error) {
	if len(key) < 32 {
		return nil, errs.E("audit.NewHasher", errs.Invalid, "audit HMAC key must be at least 32 bytes")
	}
	return &Hasher{key: append([]byte(nil), key...)}, nil
}

// Hash returns "hmac:" and the base64url HMAC-SHA256 of the parameter name and the value,
// the value trimmed and lower-cased so that case variants of a search hash alike.
func (h *Hasher) Hash(param, value string) string {
	m := hmac.New(sha256.New, h.key)
	m.Write([]byte(param))
	m.Write([]byte{0})
	m.Write([]byte(strings.ToLower(strings.TrimSpace(value))))
	return "hmac:" + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// PHIParams returns the FHIR search parameters whose values are PHI by default: names,
// birth dates, addresses, telecoms and identifier values.
func PHIParams() []string {
	return []string{"name", "family", "given", "phonetic", "birthdate", "address",
		"address-city", "address-postalcode", "address-state", "address-country", "address-use",
		"phone", "email", "telecom", "identifier", "death-date", "mothersMaidenName", "text", "_content", "_text"}
}

// HashQuery renders q as a canonical query string (keys sorted, values in order) with the
// value of every parameter named in phi replaced by its HMAC. A parameter matches when its
// name, or any part of a modified or chained name ("name:exact", "subject:Patient.name"),
// is in phi.
func (h *Hasher) HashQuery(q url.Values, phi []string) string {
	set := make(map[string]bool, len(phi))
	for _, p := range phi {
		set[p] = true
	}
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		sensitive := false
		for _, part := range strings.FieldsFunc(k, func(r rune) bool { return r == ':' || r == '.' }) {
			if set[part] {
				sensitive = true
			}
		}
		for _, v := range q[k] {
			if b.Len() > 0 {
				b.WriteByte('&')
			}
			b.WriteString(url.QueryEscape(k))
			b.WriteByte('=')
			if sensitive {
				b.WriteString(h.Hash(k, v))
			} else {
				b.WriteString(url.QueryEscape(v))
			}
		}
	}
	return b.String()
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
