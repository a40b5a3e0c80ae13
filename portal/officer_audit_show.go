package portal

import (
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/consent"
)

type officerAuditPage struct {
	Page
	Form     auditSearchForm
	Error    string
	Members  []memberOption
	Rows     []auditRow
	Next     string // URL of the next page, "" on the last
	Searched bool
}

type memberOption struct{ ID, Name string }

// memberOptions lists the members for a select, by name.
func memberOptions(names map[string]string) []memberOption {
	out := make([]memberOption, 0, len(names))
	for id, n := range names {
		out = append(out, memberOption{ID: id, Name: n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// auditSearchForm is the officer's audit search, from the query string.
type auditSearchForm struct {
	Patient string
	From    string // YYYY-MM-DD
	To      string
	Org     string
	Outcome string // "", permit, deny, failure
	Cursor  string
}

// Validate checks the form and returns the audit filter it asks for, or a sentence for
// the officer.
func (f auditSearchForm) Validate(loc *time.Location) (audit.Filter, string) {
	from, to, ok := parseDateRange(f.From, f.To, loc)
	if !ok {
		return audit.Filter{}, "Enter dates as year-month-day, the first not after the second."
	}
	switch audit.Outcome(f.Outcome) {
	case "", audit.Permit, audit.Deny, audit.Failure:
	default:
		return audit.Filter{}, "Choose an outcome from the list."
	}
	if len(f.Patient) > 64 || len(f.Org) > 64 {
		return audit.Filter{}, "The person ID or organization is too long."
	}
	return audit.Filter{Patient: f.Patient, From: from, To: to, Org: f.Org, Outcome: audit.Outcome(f.Outcome),
		Count: 50, Cursor: f.Cursor}, ""
}

// auditRow is one audit event as the officer reads it.
type auditRow struct {
	Time      time.Time
	Action    string
	Outcome   string
	Deny      bool
	Org       string
	Role      string
	Purpose   string
	Patient   string
	Actor     string // the login's subject, or the event's OAuth client for a system
	ActorFrom string // the login's issuer, shown on hover
	Reason    string // the event's reason code, shown as it is for searching
	// ReasonWords says what Reason means; "" for a code without words.
	ReasonWords string
	Data        string // what was disclosed, in the words of the patient's access log
	DataTypes   string // the FHIR resource types behind Data, shown on hover; "" when Data says no more
	BreakGlass  bool
	ShareLink   bool
	RequestID   string
}

// splitActor splits a login actor "issuer|subject" into the issuer (shown on hover) and
// the subject (shown). Other actors ("hl7v2|member", a system) come back whole, from "".
func splitActor(a string) (from, actor string) {
	from, actor, found := strings.Cut(a, "|")
	if !found || !strings.Contains(from, "://") {
		return "", a
	}
	return from, actor
}

// officerWords is a code in words for an officer, the code after it ("Treatment (TREAT)")
// so it can be searched for; the code alone when there are no words for it.
func officerWords(words, code string) string {
	words = thirdPerson(words)
	if code == "" || strings.EqualFold(words, code) {
		return words
	}
	return words + " (" + code + ")"
}

// officerData says what an audit event's resources were, for an officer: words are the
// patient's access log words for their types (classWords, in the third person, as the
// accounting page has them) and types the distinct FHIR resource types, sorted, for the
// officer who searches by them. types is "" when it would repeat words (a type without
// words); both are "" for an event without resources.
func officerData(res []audit.Resource) (words, types string) {
	var ts []string
	for _, r := range res {
		if !slices.Contains(ts, r.Type) {
			ts = append(ts, r.Type)
		}
	}
	slices.Sort(ts)
	words, types = thirdPerson(classWords(ts)), strings.Join(ts, ", ")
	if types == words {
		types = ""
	}
	return words, types
}

// auditReasonWords says what an audit event's reason code means to a privacy officer; ""
// for an unknown code. The codes are those the event writers use (TestAuditReasonWords
// lists them): consent decisions (consent.Reason), break-the-glass reasons (worded as the
// reviews page words them, btgReasonWords), record access outside a consent decision,
// failures (an errs code), portal actions and patient matching.
func auditReasonWords(code string) string {
	if consent.KnownBreakGlassReason(code) {
		return btgReasonWords(code)
	}
	switch code {
	// Consent decisions (consent/reason.go).
	case "no-directive":
		return "No consent or policy permits it"
	case "permitted":
		return "Permitted by a directive"
	case "break-glass":
		return "Emergency access"
	case "denied":
		return "The patient's choice denies it"
	case "denied-by-policy":
		return "A regional policy denies it"
	case "label-not-permitted":
		return "Sensitive information without specific consent"
	case "part2-consent-required":
		return "Part 2 record without written consent"
	case "expired":
		return "The consent has expired"
	case "inactive":
		return "The consent was withdrawn"
	case "break-glass-invalid":
		return "No valid emergency access declaration"
	case "invalid-request":
		return "Invalid request"
	case "consent-unavailable":
		return "Consent could not be read"
	case "item-unreadable":
		return "The record's labels could not be read"

	// Record access decided without a consent directive (records, exchange, documents).
	case "own-record":
		return "The organization's own record"
	case "not-owner":
		return "Another organization's record: not changed or shown"
	case "not-found":
		return "No such record"
	case "deleted":
		return "The record had been deleted"
	case "patient-upload":
		return "A document the patient uploaded"
	case "integrity-sha256-mismatch":
		return "The document failed its integrity check and was not shown"
	case "reference-data":
		return "Directory data, not a patient's record"
	case "no-compartment":
		return "Belongs to no patient's record"
	case "viewer-filtered":
		return "Permitted, but withheld from this viewer by the portal"
	case "own-patient":
		return "The organization's own patient"
	case "not-member-patient":
		return "Not a patient of this organization"
	case "unknown-or-foreign-patient":
		return "Unknown patient, or not this organization's"
	case "unknown-source-identifier":
		return "Unknown patient identifier"
	case "consent-saved":
		return "An organization filed a consent through the exchange"
	case "consent-preview":
		return "An organization previewed what the patient's consent allows"
	case "not-filed-or-named":
		return "A consent the organization neither filed nor is named in"

	// Failures (the errs code of what went wrong).
	case "internal":
		return "Failed: internal error"
	case "not_found":
		return "Failed: not found"
	case "invalid":
		return "Failed: invalid request"
	case "conflict":
		return "Failed: conflicting change"
	case "unauthenticated":
		return "Failed: not signed in"
	case "forbidden":
		return "Failed: not permitted"
	case "unavailable":
		return "Failed: a service was unavailable"
	case "too_large":
		return "Failed: too large"
	case "unsupported":
		return "Failed: not supported"
	case "rate_limited":
		return "Failed: too many requests"

	// Portal actions.
	case "choice-on":
		return "The patient turned a sharing choice on"
	case "choice-off":
		return "The patient turned a sharing choice off"
	case "paper-form-on":
		return "An officer recorded a signed consent form"
	case "paper-form-off":
		return "An officer recorded the withdrawal of a signed consent form"
	case "proxy-invited":
		return "The patient invited a caregiver"
	case "proxy-registered":
		return "An officer registered a parent or guardian"
	case "proxy-accepted":
		return "A caregiver accepted an invitation"
	case "proxy-revoked":
		return "The patient ended a caregiver's access"
	case "proxy-sensitive-on":
		return "The patient let a caregiver see sensitive information"
	case "proxy-sensitive-off":
		return "The patient stopped a caregiver seeing sensitive information"
	case "portal-message":
		return "A secure message thread was read"
	case "officer-simulation":
		return "An officer simulated a consent decision"
	case "officer-consent-review":
		return "An officer read the patient's consent history"
	case "review-closed":
		return "An officer closed an emergency access review"
	case "share-link-created":
		return "The patient made a share link"
	case "share-link-revoked":
		return "The patient revoked a share link"
	case "access-disputed":
		return "The patient reported an access as wrong"
	case "dispute-closed":
		return "An officer closed the patient's report"

	// Patient matching (mpi, exchange).
	case "match":
		return "Patient match look-up"
	case "pix":
		return "Cross-reference look-up of the patient's other identifiers"
	case "pix-source":
		return "Cross-reference look-up of the asking organization's own record"
	case "review-link":
		return "An officer linked records after review"
	case "review-keep-apart":
		return "An officer kept records apart after review"
	case "manual-link":
		return "A data steward linked a record to the person"
	case "manual-unlink":
		return "A data steward unlinked a record from the person"
	case "manual-merge":
		return "A data steward merged two persons"
	case "manual-unmerge":
		return "A data steward undid a merge"
	case "source-retired":
		return "The organization merged two of its own records"
	}
	return ""
}

// showOfficerAudit is the officer's audit search over audit.Search, 50 events a page,
// newest first. Every search that runs is itself audited by Privacy.SearchAudit (one
// audit.AuditQuery event, actor the officer) before its results are shown: who watched whom
// is part of the record a patient and the next officer can trust. A form that does not
// validate runs no search.
func (s *Server) showOfficerAudit(c echo.Context) error {
	q := c.QueryParams()
	form := auditSearchForm{Patient: strings.TrimSpace(q.Get("patient")), From: strings.TrimSpace(q.Get("from")),
		To: strings.TrimSpace(q.Get("to")), Org: strings.TrimSpace(q.Get("org")), Outcome: q.Get("outcome"), Cursor: q.Get("cursor")}
	p := officerAuditPage{Page: s.page(c, "Audit search"), Form: form}
	ctx := c.Request().Context()
	names, err := s.privacy.MemberNames(ctx)
	if err != nil {
		return err
	}
	p.Members = memberOptions(names)
	f, msg := form.Validate(s.cfg.Location)
	if msg != "" {
		p.Error = msg
		return s.render(c, http.StatusBadRequest, "officer_audit", p)
	}
	p.Searched = true
	v := staffViewer(c)
	evs, next, err := s.privacy.SearchAudit(ctx, v, f)
	if err != nil {
		return err
	}
	for _, ev := range evs {
		org := names[ev.Org]
		if org == "" {
			org = ev.Org
		}
		data, types := officerData(ev.Resources)
		actorFrom, actor := splitActor(ev.Actor)
		role := ""
		if ev.Role != "" {
			role = thirdPerson(roleWords(ev.Role))
		}
		if actor == "" && ev.Client != "" {
			actor = "system " + ev.Client
		}
		p.Rows = append(p.Rows, auditRow{Time: ev.Time.In(s.cfg.Location), Action: string(ev.Action), Outcome: string(ev.Outcome),
			Deny: ev.Outcome != audit.Permit, Org: org, Role: role,
			Purpose: officerWords(purposeWords(ev.Purpose), ev.Purpose), Patient: ev.Patient,
			Actor: actor, ActorFrom: actorFrom, Reason: ev.Reason, ReasonWords: auditReasonWords(ev.Reason), Data: data, DataTypes: types, BreakGlass: ev.BreakGlass,
			ShareLink: ev.ShareLink, RequestID: ev.RequestID})
	}
	if next != "" {
		v := url.Values{}
		for k, val := range map[string]string{"patient": form.Patient, "from": form.From, "to": form.To, "org": form.Org, "outcome": form.Outcome, "cursor": next} {
			if val != "" {
				v.Set(k, val)
			}
		}
		p.Next = "/officer?" + v.Encode()
	}
	return s.render(c, http.StatusOK, "officer_audit", p)
}
