package exchange

import (
	"bytes"
	"encoding/json"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/directory"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/records"
)

// ScopeBreakGlass is the scope a member system must be registered with, and ask for by
// name, to declare break-the-glass: system/BreakGlass.c. A wildcard (system/*.cruds)
// does not grant it. Reading under a declaration then needs a token with purpose BTG.
const ScopeBreakGlass = "system/BreakGlass.c"

// mayBreakGlass reports whether the token names the BreakGlass scope explicitly.
func mayBreakGlass(c echo.Context) bool { return hasNamedScope(c, directory.BreakGlassResource, 'c') }

// hasNamedScope reports whether the token holds a system scope that names resource (a
// wildcard does not count) with interaction op: the scopes Grant gives only explicitly.
func hasNamedScope(c echo.Context, resource string, op byte) bool {
	for _, s := range principal(c).Scopes {
		if s.Resource == resource && s.Context == "system" && bytes.IndexByte([]byte(s.Ops), op) >= 0 {
			return true
		}
	}
	return false
}

// breakGlassParams is the body of $break-glass, a FHIR Parameters resource:
//
//	patient     valueReference  the member's own Patient ("Patient/{id}")
//	reasonCode  valueCode       one of consent.BreakGlassReasons()
//	reason      valueString     the clinician's free text (1 to 1000 bytes)
//	minutes     valueInteger    optional, shorter than the configured maximum
type breakGlassParams struct {
	ResourceType string `json:"resourceType"`
	Parameter    []struct {
		Name           string `json:"name"`
		ValueReference *struct {
			Reference string `json:"reference"`
		} `json:"valueReference,omitempty"`
		ValueCode    *string `json:"valueCode,omitempty"`
		ValueString  *string `json:"valueString,omitempty"`
		ValueInteger *int    `json:"valueInteger,omitempty"`
	} `json:"parameter"`
}

type bgParam struct {
	Name         string  `json:"name"`
	ValueString  *string `json:"valueString,omitempty"`
	ValueCode    *string `json:"valueCode,omitempty"`
	ValueInstant *string `json:"valueInstant,omitempty"`
}

type bgResult struct {
	ResourceType string    `json:"resourceType"`
	Parameter    []bgParam `json:"parameter"`
}

// declareBreakGlass handles POST [base]/$break-glass. The caller needs ScopeBreakGlass
// (403 otherwise, whatever the body). The declaration, its officer review task, its
// patient notification and its audit event (action break-glass, purpose BTG) commit
// together; it then lets this client read this person's record with purpose BTG until it
// expires (records.BreakGlassStore.ForPerson). The free text is stored, never logged.
func (a *ConsentAPI) declareBreakGlass(c echo.Context) error {
	const op = "exchange.declareBreakGlass"
	allowed := mayBreakGlass(c)
	if !allowed {
		return errs.E(op, errs.Forbidden, "this client may not declare break-the-glass")
	}
	body, err := a.s.readBody(c)
	if err != nil {
		return err
	}
	// The strict parser first: duplicate or case-variant keys, which encoding/json takes
	// silently (the last one, or a case-insensitive match), are a 400 naming the element.
	if _, err := fhir.Parse(body); err != nil {
		return err
	}
	var in breakGlassParams
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil || in.ResourceType != "Parameters" || dec.More() {
		return errs.E(op, errs.Invalid, "send a Parameters resource with patient, reasonCode and reason")
	}
	var patient, code, text string
	minutes := 0
	seen := map[string]bool{}
	for _, p := range in.Parameter {
		if seen[p.Name] {
			return errs.E(op, errs.Invalid, "parameter "+p.Name+" given twice")
		}
		seen[p.Name] = true
		switch {
		case p.Name == "patient" && p.ValueReference != nil:
			patient = p.ValueReference.Reference
		case p.Name == "reasonCode" && p.ValueCode != nil:
			code = *p.ValueCode
		case p.Name == "reason" && p.ValueString != nil:
			text = *p.ValueString
		case p.Name == "minutes" && p.ValueInteger != nil && *p.ValueInteger > 0:
			minutes = *p.ValueInteger
		default:
			return errs.E(op, errs.Invalid, "unknown or mistyped parameter (patient, reasonCode, reason, minutes)")
		}
	}
	if patient == "" {
		return errs.E(op, errs.Invalid, "parameter patient is required")
	}
	now := a.s.Now()
	glass, err := a.Policy.Declare(allowed, code, text, now, time.Duration(minutes)*time.Minute)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	v := viewer(c)
	var decl records.Declaration
	err = db.InTx(ctx, a.s.Pool, func(tx db.Querier) error {
		person, err := a.s.memberPerson(ctx, tx, v.Org, patient)
		if err != nil {
			return err
		}
		decl, err = a.BreakGlass.Declare(ctx, tx, records.Declaration{PersonID: person, MemberID: v.Org, ClientID: v.Client,
			Actor: v.Actor, Glass: glass, RequestID: v.RequestID})
		if err != nil {
			return err
		}
		ev := consentEvent(c, audit.BreakGlass, person)
		ev.Time, ev.Purpose, ev.BreakGlass, ev.Reason = now, consent.PurposeBreakGlass, true, glass.ReasonCode
		return a.Audit.AppendTx(ctx, tx, ev)
	})
	if err != nil {
		return err
	}
	expires := glass.Expires.UTC().Format(time.RFC3339)
	res := bgResult{ResourceType: "Parameters", Parameter: []bgParam{
		{Name: "declaration", ValueString: &decl.ID},
		{Name: "reasonCode", ValueCode: &glass.ReasonCode},
		{Name: "expires", ValueInstant: &expires},
	}}
	b, err := json.Marshal(res)
	if err != nil {
		return errs.E(op, errs.Internal, err)
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.Blob(http.StatusCreated, mimeFHIR, b)
}
