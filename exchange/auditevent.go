package exchange

import (
	"net/http"
	"net/url"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/internal/errs"
)

// searchAuditEvents is RESTful ATNA (ITI-81): GET [base]/AuditEvent. Every caller here is
// a member system (officers search in the portal, patients read their access log there): it
// sees only events in which its own organization was the agent, and none of its refused
// requests (audit.Filter.Member), so its own log cannot tell it what a 404 or an empty
// search hid: that an id exists, whose it is, how many persons a search withheld.
// `patient` names one of the member's Patients (its person's events by this member).
func (s *Server) searchAuditEvents(c echo.Context) error {
	const op = "exchange.searchAuditEvents"
	if err := require(c, "AuditEvent", 's'); err != nil {
		return err
	}
	ctx := c.Request().Context()
	p := principal(c)
	f := audit.Filter{Org: p.MemberID, Member: true}
	q := c.QueryParams()
	bad := func(msg, param string) error {
		e := errs.E(op, errs.Invalid, msg)
		e.Path = "AuditEvent?" + param
		return e
	}
	for k, vs := range q {
		switch k {
		case "patient":
			person, err := s.memberPerson(ctx, nil, p.MemberID, vs[0])
			if errs.CodeOf(err) == errs.NotFound {
				return fhirJSON(c, http.StatusOK, emptySearchSet(s.FHIRBase()+"/AuditEvent", c.Request().URL.RawQuery))
			}
			if err != nil {
				return err
			}
			f.Patient = person
		case "date":
			for _, v := range vs {
				prefix, val := v[:min(2, len(v))], v
				if prefix == "ge" || prefix == "le" || prefix == "gt" || prefix == "lt" {
					val = v[2:]
				} else {
					prefix = "eq"
				}
				d, err := fhir.ParseSearchDate(val)
				if err != nil {
					return bad("date must be a FHIR date or dateTime with ge/le", k)
				}
				switch prefix {
				case "ge", "gt":
					f.From = d.Low
				case "le", "lt":
					f.To = d.Low
				default:
					f.From, f.To = d.Low, d.High
				}
			}
		case "agent":
			f.Agent = vs[0]
		case "outcome":
			switch vs[0] {
			case "0":
				f.Outcome = audit.Permit
			case "4":
				f.Outcome = audit.Deny
			case "8":
				f.Outcome = audit.Failure
			default:
				return bad("outcome must be 0, 4 or 8", k)
			}
		case "entity-type", "_format":
			// entity-type: every event names a patient (1) and its resources (2); nothing to narrow.
		case "_count":
			n, err := strconv.Atoi(vs[0])
			if err != nil || n < 1 {
				return bad("_count must be a positive integer", k)
			}
			f.Count = min(n, s.cfg.MaxCount)
		case "_cursor":
			f.Cursor = vs[0]
		default:
			return bad("unsupported search parameter", k)
		}
	}
	evs, next, err := audit.Search(ctx, s.Pool, f)
	// Who reads the log is itself logged, before anything of it is shown. The query holds
	// the member's Patient id, dates, codes and a cursor: no demographics.
	if aerr := s.Records.AuditQuery(ctx, viewer(c), f.Patient, c.Request().URL.RawQuery, err); aerr != nil {
		return aerr
	}
	if err != nil {
		return err
	}
	set := fhir.SearchSet{Timestamp: s.Now()}
	self := s.FHIRBase() + "/AuditEvent"
	if raw := c.Request().URL.RawQuery; raw != "" {
		self += "?" + raw
	}
	set.Links = append(set.Links, fhir.Link{Relation: "self", URL: self})
	if next != "" {
		nq := url.Values{}
		for k, v := range q {
			if k != "_cursor" {
				nq[k] = v
			}
		}
		nq.Set("_cursor", next)
		set.Links = append(set.Links, fhir.Link{Relation: "next", URL: s.FHIRBase() + "/AuditEvent?" + nq.Encode()})
	}
	for _, ev := range evs {
		r, err := fhir.Parse(audit.ToFHIR(ev, s.FHIRBase()))
		if err != nil {
			return errs.E(op, errs.Internal, err)
		}
		set.Entries = append(set.Entries, fhir.SearchEntry{FullURL: s.FHIRBase() + "/AuditEvent/" + r.ID, Resource: r, Mode: "match"})
	}
	b, err := set.JSON()
	if err != nil {
		return errs.E(op, errs.Internal, err)
	}
	return fhirJSON(c, http.StatusOK, b)
}

func emptySearchSet(self, raw string) []byte {
	if raw != "" {
		self += "?" + raw
	}
	zero := 0
	b, _ := fhir.SearchSet{Total: &zero, Links: []fhir.Link{{Relation: "self", URL: self}}}.JSON()
	return b
}

func fhirJSON(c echo.Context, status int, b []byte) error {
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.Blob(status, mimeFHIR, b)
}
