package portal

import (
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/audit"
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
	Data        string
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

// auditReasonWords says what an audit event's reason code means; "" for an unknown code.
func auditReasonWords(code string) string {
	switch code {
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
		var classes []string
		seen := map[string]bool{}
		for _, r := range ev.Resources {
			if !seen[r.Type] {
				seen[r.Type] = true
				classes = append(classes, r.Type)
			}
		}
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
			Actor: actor, ActorFrom: actorFrom, Reason: ev.Reason, ReasonWords: auditReasonWords(ev.Reason), Data: strings.Join(classes, ", "), BreakGlass: ev.BreakGlass,
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
