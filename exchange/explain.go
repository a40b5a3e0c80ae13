package exchange

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/internal/errs"
)

// previewPart is one data class's answer in the $consent-preview Parameters.
type previewPart struct {
	Name        string  `json:"name"`
	ValueString *string `json:"valueString,omitempty"`
	ValueCode   *string `json:"valueCode,omitempty"`
}

type previewParam struct {
	Name string        `json:"name"`
	Part []previewPart `json:"part"`
}

type previewResult struct {
	ResourceType string         `json:"resourceType"`
	Parameter    []previewParam `json:"parameter"`
}

// previewConsent handles GET [base]/Patient/{id}/$consent-preview?actor-org=&purpose=
// [&actor-role=][&at=]: what organization actor-org, acting in actor-role (default
// clinician), would see of the member's own patient for purpose, now (the current
// directives) or as of at (an RFC 3339 instant: the directive versions stored at that
// transaction time, consent.Store.LoadAt, decided at that time). The answer is a
// Parameters resource with one "class" parameter per consent.StandardClasses entry: its
// name and title, decision (permit or deny), reason code, the information-blocking
// exception a deny relies on, the deciding directive, and the plain-language explanation
// the patient and the officer both see. Nothing is disclosed but consent outcomes; the
// preview is audited as a consent decision. It decides with the regional policies and
// the patient's directives the calling member is served (filed by it or naming it, as
// on a read); the others count as absent, so the preview is what the member can know,
// which may permit more than the portal's or an officer's directives will.
func (a *ConsentAPI) previewConsent(c echo.Context) error {
	const op = "exchange.previewConsent"
	if err := require(c, "Consent", 'r'); err != nil {
		return err
	}
	q := c.QueryParams()
	org, purpose, role := q.Get("actor-org"), q.Get("purpose"), q.Get("actor-role")
	if org == "" || !consent.KnownPurpose(purpose) {
		return errs.E(op, errs.Invalid, "actor-org and a known purpose are required")
	}
	if role == "" {
		role = consent.RoleClinician
	}
	switch role {
	case consent.RoleClinician, consent.RoleSystem, consent.RolePatient, consent.RoleProxy, consent.RoleOfficer:
	default:
		return errs.E(op, errs.Invalid, "unknown actor-role")
	}
	now := a.s.Now()
	at := now
	if s := q.Get("at"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			e := errs.E(op, errs.Invalid, "at must be an RFC 3339 instant")
			e.Path = "at"
			return e
		}
		at = t
	}
	ctx := c.Request().Context()
	person, err := a.s.memberPerson(ctx, nil, principal(c).MemberID, c.Param("id"))
	if err != nil {
		return err
	}
	var dirs []consent.Directive
	if q.Get("at") != "" { // an as-of question: the versions stored at that instant
		dirs, err = a.Directives.AsOf(ctx, person, at)
	} else {
		dirs, _, err = a.Cache.Current(ctx, person)
	}
	if err != nil {
		return err
	}
	// Only the patient's directives the member may be served take part: one it may not
	// see is absent here too, so no decision, deciding directive or explanation can
	// tell it that such a directive exists.
	if dirs, err = a.visibleDirectives(ctx, principal(c).MemberID, dirs); err != nil {
		return err
	}
	req := consent.Request{ActorRole: role, Org: org, Purpose: purpose, PersonID: person, At: at}
	if purpose == consent.PurposeBreakGlass {
		// A preview of BTG shows what a valid declaration would release.
		req.BreakGlass = &consent.BreakGlass{ReasonCode: consent.BTGUnresponsive, Text: "preview", Start: at, Expires: at.Add(time.Minute)}
	}
	out := previewResult{ResourceType: "Parameters"}
	ev := consentEvent(c, audit.ConsentDecision, person)
	ev.Reason = "consent-preview"
	for _, cd := range consent.Preview(dirs, req, consent.StandardClasses()) {
		str := func(s string) *string { return &s }
		decision := "deny"
		if cd.Decision.Allow {
			decision = "permit"
		}
		parts := []previewPart{
			{Name: "name", ValueCode: str(cd.Class.Name)},
			{Name: "title", ValueString: str(cd.Class.Title)},
			{Name: "decision", ValueCode: str(decision)},
			{Name: "reason", ValueCode: str(cd.Decision.Reason.String())},
			{Name: "explanation", ValueString: str(cd.Decision.Explanation)},
		}
		if cd.Decision.Exception != "" {
			parts = append(parts, previewPart{Name: "exception", ValueCode: str(cd.Decision.Exception)})
		}
		if cd.Decision.By != "" {
			parts = append(parts, previewPart{Name: "directive", ValueString: str(string(cd.Decision.By))})
		}
		out.Parameter = append(out.Parameter, previewParam{Name: "class", Part: parts})
	}
	if err := a.Audit.Append(ctx, ev); err != nil {
		return errs.E(op, errs.Unavailable, "audit log unavailable", err)
	}
	b, err := json.Marshal(out)
	if err != nil {
		return errs.E(op, errs.Internal, err)
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.Blob(http.StatusOK, mimeFHIR, b)
}
