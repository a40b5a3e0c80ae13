package exchange

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/errs"
	mpistore "github.com/concord-hie/concord/mpi/store"
	"github.com/concord-hie/concord/records"
)

type pixIdentifier struct {
	System string `json:"system"`
	Value  string `json:"value"`
}

type pixReference struct {
	Reference string `json:"reference"`
}

type pixParameter struct {
	Name            string         `json:"name"`
	ValueIdentifier *pixIdentifier `json:"valueIdentifier,omitempty"`
	ValueReference  *pixReference  `json:"valueReference,omitempty"`
}

type pixParameters struct {
	ResourceType string         `json:"resourceType"`
	Parameter    []pixParameter `json:"parameter,omitempty"`
}

// pixNotFound is the one answer for a source identifier that is unknown or that the caller
// may not see: the same 404 body either way.
func pixNotFound() error {
	return errs.E("exchange.pixQuery", errs.NotFound, "no patient is known for the source identifier")
}

// pixQuery handles GET [base]/Patient/$ihe-pix?sourceIdentifier=sys|val[&targetSystem=sys]
// (PIXm ITI-83): the identifiers, in the target domains, of the person that the source
// identifier belongs to, as Parameters of targetIdentifier and targetId (the source itself
// is not echoed). A source identifier domain that no member owns is 400; a targetSystem no
// member owns is 403; a source identifier that is unknown or whose Patient the caller may
// not see is 404 with identical bodies. Target Patients pass records.IdentityPatients (own
// member's always, others' for TREAT with consent) and each disclosure is audited.
func (s *Server) pixQuery(c echo.Context) error {
	const op = "exchange.pixQuery"
	if err := require(c, "Patient", 'r'); err != nil {
		return err
	}
	if err := s.limitIdentity(c); err != nil {
		return err
	}
	q := c.QueryParams()
	for k := range q {
		if k != "sourceIdentifier" && k != "targetSystem" && k != "_format" {
			return errs.E(op, errs.Invalid, "unsupported $ihe-pix parameter")
		}
	}
	if len(q["sourceIdentifier"]) != 1 {
		return errs.E(op, errs.Invalid, "exactly one sourceIdentifier is required")
	}
	sys, val, ok := strings.Cut(q.Get("sourceIdentifier"), "|")
	if !ok || sys == "" || val == "" {
		return errs.E(op, errs.Invalid, "sourceIdentifier must be system|value")
	}
	ctx := c.Request().Context()
	if _, err := s.Directory.MemberForSystem(ctx, sys); errs.CodeOf(err) == errs.NotFound {
		return errs.E(op, errs.Invalid, "the sourceIdentifier's assigning authority is not known")
	} else if err != nil {
		return err
	}
	var targets map[string]bool // member IDs; nil means every domain
	for _, ts := range q["targetSystem"] {
		for _, t := range strings.Split(ts, ",") {
			m, err := s.Directory.MemberForSystem(ctx, t)
			if errs.CodeOf(err) == errs.NotFound {
				return errs.E(op, errs.Forbidden, "the targetSystem is not a known domain")
			} else if err != nil {
				return err
			}
			if targets == nil {
				targets = map[string]bool{}
			}
			targets[m.ID] = true
		}
	}
	v := viewer(c)
	src, err := s.MPI.SourceByIdentifier(ctx, nil, sys, val)
	if errs.CodeOf(err) == errs.NotFound {
		// Nobody to name: the query's event says only that it found no one.
		if err := s.Records.AuditRefusal(ctx, v, audit.Query, "", "unknown-source-identifier", ""); err != nil {
			return err
		}
		return pixNotFound()
	} else if err != nil {
		return err
	}
	person := string(src.PersonID)
	source, err := s.Records.IdentityRelease(ctx, v, records.IdentityQuery{Persons: []string{person},
		Keep: func(x mpistore.Source) bool { return x.ID == src.ID }, Reason: "pix-source"})
	if err != nil {
		return err
	}
	if len(source.Patients[0]) == 0 {
		return pixNotFound()
	}
	byPatient := map[string]mpistore.Source{}
	ans, err := s.Records.IdentityRelease(ctx, v, records.IdentityQuery{Persons: []string{person},
		Keep: func(x mpistore.Source) bool {
			if x.ID == src.ID || (targets != nil && !targets[x.MemberID]) {
				return false
			}
			byPatient[x.PatientID] = x
			return true
		}, Reason: "pix"})
	if err != nil {
		return err
	}
	out := pixParameters{ResourceType: "Parameters"}
	// An identifier in a 42 CFR Part 2 program's domain, asked about or answered, says the
	// person is its patient: a Parameters answer has no meta for the §2.32 notice, so it
	// travels in headers, as for Binary content.
	h := c.Response().Header()
	notice := false
	linked := map[string]bool{} // consents already linked
	part2 := func(a records.IdentityAnswer, st store.Stored) {
		r, ok := a.Part2Of(st)
		switch {
		case !ok:
		case !notice:
			s.setPart2Headers(h, r)
			notice, linked[string(r.Consent)] = true, true
		case !linked[string(r.Consent)]:
			s.addPart2ConsentLink(h, r)
			linked[string(r.Consent)] = true
		}
	}
	part2(source, source.Patients[0][0])
	for _, st := range ans.Patients[0] {
		part2(ans, st)
		x := byPatient[st.ID]
		out.Parameter = append(out.Parameter,
			pixParameter{Name: "targetIdentifier", ValueIdentifier: &pixIdentifier{System: x.System, Value: x.Value}},
			pixParameter{Name: "targetId", ValueReference: &pixReference{Reference: s.FHIRBase() + "/Patient/" + st.ID}})
	}
	b, err := json.Marshal(out)
	if err != nil {
		return errs.E(op, err)
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.Blob(http.StatusOK, mimeFHIR, b)
}
