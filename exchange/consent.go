package exchange

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/directory"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
	mpistore "github.com/concord-hie/concord/mpi/store"
	"github.com/concord-hie/concord/records"
)

// Code systems of the security labels ingest adds.
const (
	systemActCode         = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
	systemConfidentiality = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
)

// defaultLabeler is the labeler over the value sets embedded in package consent. It is an
// immutable value computed once from constant data (building it takes about 0.4 ms), not
// a registry; a deployment that configures its own value sets passes a Labeler instead.
var defaultLabeler = sync.OnceValues(consent.DefaultLabeler)

// ingestLabels returns the security labels ingest adds to res by rule (consent.Labeler:
// substance use, mental health, HIV, violence, sexual health, and R with any of them), as
// codings for store.Write.Security. Labels the member sent stay: Stamp appends and never
// removes, and labels the rules derive from the codes are derived again on every write,
// so a client cannot drop them. If the labeler cannot be built, the resource is labelled
// R (restricted): it cannot be shown to be unrestricted.
func ingestLabels(res *fhir.Resource) []fhir.Coding {
	l, err := defaultLabeler()
	var codes []string
	if err != nil {
		codes = []string{consent.LabelRestricted}
	} else {
		codes = l.Labels(res.Bytes())
	}
	if len(codes) == 0 {
		return nil
	}
	out := make([]fhir.Coding, 0, len(codes))
	for _, c := range codes {
		sys := systemActCode
		if c == consent.LabelRestricted || c == consent.LabelVeryRestrict {
			sys = systemConfidentiality
		}
		out = append(out, fhir.Coding{System: sys, Code: c})
	}
	return out
}

// ConsentAudit is the audit log as the consent endpoints use it (audit.Log): changes are
// appended in the saving transaction, reads before the response leaves.
type ConsentAudit interface {
	Append(ctx context.Context, ev audit.Event) error
	AppendTx(ctx context.Context, tx db.Querier, evs ...audit.Event) error
}

// ConsentDeps are what the consent endpoints need beyond the exchange's Deps.
type ConsentDeps struct {
	Store      *consent.Store
	Directives *records.StoreDirectives // current and as-of reads, directives by id
	Cache      consent.VersionedSource  // current directives for previews (the Redis cache); nil: Directives
	BreakGlass *records.BreakGlassStore
	Policy     consent.BreakGlassPolicy // MaxDuration from config BreakGlass (default 60 min)
	Audit      ConsentAudit
}

// ConsentAPI serves consent directives as FHIR Consent, break-the-glass declarations and
// the consent preview on the exchange's FHIR base.
type ConsentAPI struct {
	s *Server
	ConsentDeps
}

// NewConsentAPI returns the consent routes of s.
func NewConsentAPI(s *Server, d ConsentDeps) *ConsentAPI {
	if d.Cache == nil {
		d.Cache = d.Directives
	}
	return &ConsentAPI{s: s, ConsentDeps: d}
}

// Register mounts the consent routes on e, behind the exchange's media-type check and
// bearer-token authentication:
//
//	POST /fhir/Consent                          file a patient's directive (system/Consent.c)
//	PUT  /fhir/Consent/:id                      a new version of it (system/Consent.u; If-Match W/"n")
//	GET  /fhir/Consent/:id                      read it (system/Consent.r)
//	GET  /fhir/Consent/:id/_history[/:vid]      405: versions are not served here
//	DELETE /fhir/Consent/:id                    405: withdraw with status inactive
//	GET  /fhir/Consent?patient=                 the patient's current directives (system/Consent.s)
//	POST /fhir/$break-glass                     declare an emergency (system/BreakGlass.c, named explicitly)
//	GET  /fhir/Patient/:id/$consent-preview     what an organization would see (system/Consent.r)
//
// A member names patients by its own Patient ids; a Patient that is not the member's own
// answers like one that does not exist.
func (a *ConsentAPI) Register(e *echo.Echo) {
	mw := []echo.MiddlewareFunc{a.s.fhirMedia, noStore, a.s.authenticate}
	e.POST("/fhir/Consent", a.createConsent, mw...)
	e.PUT("/fhir/Consent/:id", a.updateConsent, mw...)
	e.GET("/fhir/Consent/:id", a.readConsent, mw...)
	// A trailing :id matches the rest of the path: history and DELETE are answered
	// explicitly (405), never by readConsent with id "x/_history" or by the generic delete,
	// which would answer 204 and leave the directive in force.
	e.GET("/fhir/Consent/:id/_history", historyNotServed, mw...)
	e.GET("/fhir/Consent/:id/_history/:vid", historyNotServed, mw...)
	e.DELETE("/fhir/Consent/:id", consentDeleteNotAllowed, mw...)
	e.GET("/fhir/Consent", a.searchConsent, mw...)
	e.POST("/fhir/$break-glass", a.declareBreakGlass, mw...)
	e.GET("/fhir/Patient/:id/$consent-preview", a.previewConsent, mw...)
}

// consentDeleteNotAllowed answers DELETE [base]/Consent/{id}: a directive is withdrawn by
// a new version (status inactive), never deleted, so its history stays.
func consentDeleteNotAllowed(echo.Context) error {
	return echo.NewHTTPError(http.StatusMethodNotAllowed, "a Consent is withdrawn by a new version with status inactive")
}

// memberPerson returns the person behind the member's own Patient patientID ("Patient/"
// prefix allowed). Another member's Patient, or none, is errs.NotFound.
func (s *Server) memberPerson(ctx context.Context, q db.Querier, member, patientID string) (string, error) {
	const op = "exchange.memberPerson"
	patientID = strings.TrimPrefix(patientID, "Patient/")
	st, err := s.FHIR.Get(ctx, q, "Patient", patientID)
	if err != nil || st.MemberID != member {
		if err != nil && errs.CodeOf(err) != errs.NotFound {
			return "", err
		}
		return "", errs.E(op, errs.NotFound, "patient not found")
	}
	src, err := s.MPI.SourceByPatient(ctx, q, patientID)
	if err != nil {
		return "", err
	}
	return string(src.PersonID), nil
}

// memberPatient returns the member's own Patient id for person, the person a directive
// is filed under: a Patient of person or of any other person of its merge family
// (consent.Store.Family), which after a merge means one of the kept person's, where the
// lost person's Patients went while its directives stayed filed under it. The directive
// is then in force for that Patient's person (consent.Store.Load), so it is the member's
// patient's. It prefers person's own Patient, then goes by family order; errs.NotFound if
// the member has none.
func (a *ConsentAPI) memberPatient(ctx context.Context, member, person string) (string, error) {
	fam, err := a.Store.Family(ctx, a.s.Pool, person)
	if err != nil {
		return "", err
	}
	ids := make([]mpistore.PersonID, len(fam))
	for i, p := range fam {
		ids[i] = mpistore.PersonID(p)
	}
	srcs, err := a.s.MPI.SourcesOf(ctx, ids)
	if err != nil {
		return "", err
	}
	for _, p := range append([]mpistore.PersonID{mpistore.PersonID(person)}, ids...) {
		for _, s := range srcs[p] {
			if s.MemberID == member {
				return s.PatientID, nil
			}
		}
	}
	return "", errs.E("exchange.memberPatient", errs.NotFound, "consent not found")
}

// consentEvent starts an audit event for the calling system about person.
func consentEvent(c echo.Context, action audit.Action, person string) audit.Event {
	v := viewer(c)
	return audit.Event{Action: action, Outcome: audit.Permit, Client: v.Client, Org: v.Org, Role: v.Role, Purpose: v.Purpose,
		Patient: person, TokenID: v.TokenID, RequestID: v.RequestID, SourceIP: v.SourceIP}
}

// formatForMember writes d as FHIR with the member's own Patient id as its patient.
func formatForMember(d consent.Directive, patientID string) ([]byte, error) {
	d.PersonID = patientID
	return consent.FormatConsent(d)
}

// parseMemberConsent reads a Consent body strictly (the R4 parser, then ParseConsent);
// it must be a patient's directive. A non-empty id replaces the body's id (a create's
// server-assigned id).
func (a *ConsentAPI) parseMemberConsent(c echo.Context, id string) (consent.Directive, error) {
	body, err := a.s.readBody(c)
	if err != nil {
		return consent.Directive{}, err
	}
	res, err := fhir.Parse(body)
	if err != nil {
		return consent.Directive{}, err
	}
	if res.ResourceType != "Consent" {
		return consent.Directive{}, errs.E("exchange.parseMemberConsent", errs.Invalid, "resourceType must be Consent")
	}
	if id != "" {
		if res, err = res.Stamp(fhir.Stamp{ID: id}); err != nil {
			return consent.Directive{}, err
		}
	}
	d, err := consent.ParseConsent(res.Bytes(), time.UTC)
	if err != nil {
		return consent.Directive{}, err
	}
	if d.Kind != consent.KindPatient {
		e := errs.E("exchange.parseMemberConsent", errs.Invalid, "a member files a patient's directive: Consent.patient is required")
		e.Path = "Consent.patient"
		return consent.Directive{}, e
	}
	return d, nil
}

// checkFiling applies the filing rule to d, a directive the calling member files
// through POST or PUT [base]/Consent. A member writes down the patient's choice; it can
// never author its own authorization. It returns errs.Invalid (with Path) for a broken
// rule, errs.Forbidden for a release the member may not file:
//
//   - Restrictions are always accepted: a deny provision, a permit that releases no
//     gating label, and a directive that is not active (a withdrawal is status inactive).
//   - A permit whose path names a gating label (consent.IsGatingLabel: ETH, PSY, HIV,
//     SDV, SEX, R, V, 42CFRPart2) releases sensitive records, so the directive must carry
//     the patient's signed form (standards.md §5, IHE BPPC/PCF): sourceAttachment or a
//     sourceReference to a DocumentReference. Without one it is 422, naming
//     Consent.source[x].
//   - A permit releasing 42CFRPart2 is a 42 CFR 2.31 written consent, which names the
//     program that discloses. It is accepted only from a member registered as a Part 2
//     program (directory.Member.Part2), else 403 naming the securityLabel element; and
//     it may not name the filing program itself as a recipient (422 naming the
//     provision), so a program cannot write its own authorization to another program's
//     records either.
//
// The portal's patient choices and an officer's paper consents are saved by
// consent.Store.Save directly and do not pass here. The rule depends on the body and
// the caller only, never on a stored record, so it runs before the patient is looked up.
func (a *ConsentAPI) checkFiling(ctx context.Context, memberID string, d consent.Directive) error {
	const op = "exchange.checkFiling"
	rels := d.Releases()
	if len(rels) == 0 {
		return nil
	}
	var member *directory.Member
	for _, r := range rels {
		i := slices.Index(r.Labels, consent.LabelPart2)
		if i < 0 {
			continue
		}
		if member == nil {
			m, err := a.s.Directory.Member(ctx, memberID)
			if err != nil {
				return errs.E(op, errs.Unavailable, "member directory unavailable", err)
			}
			member = &m
		}
		if !member.Part2 {
			e := errs.E(op, errs.Forbidden, "only a 42 CFR Part 2 program may file a consent that releases 42CFRPart2 records")
			e.Path = r.LabelPaths[i]
			return e
		}
		if slices.Contains(r.Recipients, "Organization/"+member.ID) {
			e := errs.E(op, errs.Invalid, "a Part 2 program may not file a consent that releases 42CFRPart2 records to itself")
			e.Path = r.Path
			return e
		}
	}
	if d.SourceAttachment == nil && d.SourceReference == "" {
		e := errs.E(op, errs.Invalid, "a consent that releases sensitive records needs the patient's signed form: sourceAttachment or sourceReference")
		e.Path = "Consent.source[x]"
		return e
	}
	return nil
}

// filingRefused answers a directive checkFiling refused: a broken business rule
// (errs.Invalid) is 422 with an OperationOutcome naming the element, anything else goes
// to the error handler (403 for a release the member may not file, 503 when the
// directory cannot be read).
func filingRefused(c echo.Context, err error) error {
	if errs.CodeOf(err) == errs.Invalid {
		return writeUnprocessable(c, err)
	}
	return err
}

// createConsent handles POST [base]/Consent: a new directive with a server-assigned id.
func (a *ConsentAPI) createConsent(c echo.Context) error {
	if err := require(c, "Consent", 'c'); err != nil {
		return err
	}
	d, err := a.parseMemberConsent(c, store.NewID())
	if err != nil {
		return err
	}
	if err := a.checkFiling(c.Request().Context(), principal(c).MemberID, d); err != nil {
		return filingRefused(c, err)
	}
	d.Version = 0
	return a.saveConsent(c, d, http.StatusCreated)
}

// updateConsent handles PUT [base]/Consent/{id}: a new version of a directive the member
// filed (404 for any other id, known or not). If-Match W/"n" makes it conditional on
// version n.
func (a *ConsentAPI) updateConsent(c echo.Context) error {
	const op = "exchange.updateConsent"
	if err := require(c, "Consent", 'u'); err != nil {
		return err
	}
	d, err := a.parseMemberConsent(c, "")
	if err != nil {
		return err
	}
	if string(d.ID) != c.Param("id") {
		e := errs.E(op, errs.Invalid, "Consent.id must equal the id in the URL")
		e.Path = "Consent.id"
		return e
	}
	if err := a.checkFiling(c.Request().Context(), principal(c).MemberID, d); err != nil {
		return filingRefused(c, err)
	}
	d.Version = 0
	if m := c.Request().Header.Get("If-Match"); m != "" {
		n, err := strconv.Atoi(strings.Trim(strings.TrimPrefix(m, "W/"), `"`))
		if err != nil || n < 1 {
			return errs.E(op, errs.Invalid, "If-Match must be W/\"version\"")
		}
		d.Version = n + 1
	}
	return a.saveConsent(c, d, http.StatusOK)
}

// saveConsent saves d (PersonID still the member's Patient id) for the person, with its
// ConsentChange audit event in the same transaction, and answers with the stored version
// and status: 201 for a create, 200 for an update, which must name an existing directive
// the member filed (errs.NotFound otherwise, alike for unknown and foreign ids).
func (a *ConsentAPI) saveConsent(c echo.Context, d consent.Directive, status int) error {
	const op = "exchange.saveConsent"
	ctx := c.Request().Context()
	p := principal(c)
	patientID := strings.TrimPrefix(d.PersonID, "Patient/")
	var saved consent.Directive
	err := db.InTx(ctx, a.s.Pool, func(tx db.Querier) error {
		person, err := a.s.memberPerson(ctx, tx, p.MemberID, patientID)
		if errs.CodeOf(err) == errs.NotFound {
			e := errs.E(op, errs.Invalid, "the Consent's patient is not one of the member's patients", err)
			e.Path = "Consent.patient"
			return e
		}
		if err != nil {
			return err
		}
		// Lock the id before reading what is stored under it, so no concurrent save
		// (another person's, another member's) lands between this check and Save.
		if err := a.Store.LockDirective(ctx, tx, d.ID); err != nil {
			return err
		}
		// An existing directive may be changed only by the member that filed it, and only
		// through a Patient whose person it is in force for: filed under that person or
		// under another of its merge family (after a merge, the member's Patients of the
		// lost person belong to the kept one, and the directive stays filed under the lost
		// one). Another member with a Patient for the same person, another person's
		// directive, and a directive filed by the portal or an officer, answer like an
		// unknown id.
		d.PersonID = person
		cur, err := a.Directives.Directive(ctx, tx, d.ID)
		switch {
		case err == nil:
			if cur.Kind != consent.KindPatient {
				return errs.E(op, errs.NotFound, "consent not found")
			}
			if cur.PersonID != person {
				fam, err := a.Store.Family(ctx, tx, person)
				if err != nil {
					return err
				}
				if !slices.Contains(fam, cur.PersonID) {
					return errs.E(op, errs.NotFound, "consent not found")
				}
			}
			filer, err := a.Store.FiledBy(ctx, tx, d.ID)
			if err != nil && errs.CodeOf(err) != errs.NotFound {
				return err
			}
			if err != nil || filer != p.MemberID {
				return errs.E(op, errs.NotFound, "consent not found")
			}
			// A new version stays filed under the person the directive was made for, so
			// an unmerge gives it back with that person's Patients.
			d.PersonID = cur.PersonID
		case errs.CodeOf(err) != errs.NotFound:
			return err
		case status != http.StatusCreated:
			// PUT creates no id: an unknown one answers like another member's.
			return errs.E(op, errs.NotFound, "consent not found")
		}
		saved, _, err = a.Store.SaveFiled(ctx, tx, d, p.ClientID, p.MemberID)
		if err != nil {
			return err
		}
		ev := consentEvent(c, audit.ConsentChange, saved.PersonID)
		ev.Resources = []audit.Resource{{Type: "Consent", ID: string(saved.ID)}}
		ev.Consent, ev.ConsentVersion, ev.Reason = string(saved.ID), int64(saved.Version), "consent-saved"
		return a.Audit.AppendTx(ctx, tx, ev)
	})
	if err != nil {
		return err
	}
	if saved.Version == 1 {
		status = http.StatusCreated
	}
	body, err := formatForMember(saved, patientID)
	if err != nil {
		return err
	}
	h := c.Response().Header()
	h.Set("Location", a.s.FHIRBase()+"/Consent/"+string(saved.ID)+"/_history/"+itoa(saved.Version))
	h.Set("ETag", store.ETag(saved.Version))
	h.Set("Cache-Control", "no-store")
	return c.Blob(status, mimeFHIR, body)
}

// Which directives a member is served. A patient's directive says whom the patient trusts
// with what: a consent naming a Part 2 program's recipient tells whoever reads it that
// the patient is in a substance-use program (42 CFR 2.13(c)), and a restriction naming
// one clinic says the patient distrusts it. So a member is served a patient's directive
// (read, search, and the directives $consent-preview decides with) only if the member
// filed it through this API (consent.Store.FiledBy) or the directive names the member
// (an Organization/{member} actor, recipient or custodian), or the directive is general:
// it names no organization and no security label (a plain opt-out, from the portal or an
// officer, applies to every member alike). Everything else answers as absent: 404 on read,
// left out of a search and its total, and left out of a preview's decisions.
// The regional default policies are public and always take part in a preview.

// visibleDirectives returns dirs without the patient's directives that member may not
// be served (see above); default policies stay. It reads who filed them in one query.
func (a *ConsentAPI) visibleDirectives(ctx context.Context, member string, dirs []consent.Directive) ([]consent.Directive, error) {
	var ids []consent.DirectiveID
	for _, d := range dirs {
		if d.Kind == consent.KindPatient {
			ids = append(ids, d.ID)
		}
	}
	filers, err := a.Store.FiledByAll(ctx, a.s.Pool, ids)
	if err != nil {
		return nil, err
	}
	out := make([]consent.Directive, 0, len(dirs))
	for _, d := range dirs {
		if d.Kind != consent.KindPatient || servedTo(d, filers[d.ID], member) {
			out = append(out, d)
		}
	}
	return out, nil
}

// servedTo reports whether the patient's directive d, filed by filer ("" when not
// filed through the exchange), may be served to member: member filed it, d names it, or d
// is general (names no organization and no label: a plain opt-out applies to every member
// alike and tells none of them anything about another, and a preview without it would
// promise a member what the decision then denies).
func servedTo(d consent.Directive, filer, member string) bool {
	return member != "" && (filer == member || d.NamesOrg(member) || d.General())
}

// readConsent handles GET [base]/Consent/{id}: the current version, if the directive is
// about a person the member has a Patient for (or, after a merge, for another person of
// its merge family: see memberPatient) and the member filed it or is named in it;
// anything else is 404, after a denial event when the directive exists.
func (a *ConsentAPI) readConsent(c echo.Context) error {
	if err := require(c, "Consent", 'r'); err != nil {
		return err
	}
	ctx := c.Request().Context()
	d, err := a.Directives.Directive(ctx, nil, consent.DirectiveID(c.Param("id")))
	if err != nil {
		return err
	}
	ev := consentEvent(c, audit.Read, d.PersonID)
	ev.Resources = []audit.Resource{{Type: "Consent", ID: string(d.ID)}}
	ev.Consent, ev.ConsentVersion, ev.Reason = string(d.ID), int64(d.Version), "own-patient"
	patientID := ""
	if d.Kind == consent.KindPatient {
		patientID, err = a.memberPatient(ctx, principal(c).MemberID, d.PersonID)
	}
	if d.Kind != consent.KindPatient || errs.CodeOf(err) == errs.NotFound {
		// Not a directive of one of the member's patients: absent to the caller, a
		// denial in the log.
		ev.Outcome, ev.Reason = audit.Deny, "not-member-patient"
		err = errs.E("exchange.readConsent", errs.NotFound, "consent not found")
	}
	if err != nil && errs.CodeOf(err) != errs.NotFound {
		return err
	}
	if err == nil {
		member := principal(c).MemberID
		filer, ferr := a.Store.FiledBy(ctx, a.s.Pool, d.ID)
		if ferr != nil {
			return ferr
		}
		if !servedTo(d, filer, member) {
			// The member's patient, but a directive it neither filed nor is named in:
			// absent to the caller, a denial in the log.
			ev.Outcome, ev.Reason = audit.Deny, "not-filed-or-named"
			err = errs.E("exchange.readConsent", errs.NotFound, "consent not found")
		}
	}
	if aerr := a.Audit.Append(ctx, ev); aerr != nil {
		return errs.E("exchange.readConsent", errs.Unavailable, "audit log unavailable", aerr)
	}
	if err != nil {
		return err
	}
	body, err := formatForMember(d, patientID)
	if err != nil {
		return err
	}
	c.Response().Header().Set("ETag", store.ETag(d.Version))
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.Blob(http.StatusOK, mimeFHIR, body)
}

type searchEntry struct {
	FullURL  string          `json:"fullUrl"`
	Resource json.RawMessage `json:"resource"`
	Search   struct {
		Mode string `json:"mode"`
	} `json:"search"`
}

type searchSet struct {
	ResourceType string        `json:"resourceType"`
	Type         string        `json:"type"`
	Total        int           `json:"total"`
	Entry        []searchEntry `json:"entry,omitempty"`
}

// searchConsent handles GET [base]/Consent?patient={id}: the current directives of the
// member's own patient that it filed or is named in (regional default policies are not
// the member's to read here; the others are left out, total included).
// Another member's patient and an unknown id give an empty Bundle alike, audited as a
// denial.
func (a *ConsentAPI) searchConsent(c echo.Context) error {
	const op = "exchange.searchConsent"
	if err := require(c, "Consent", 's'); err != nil {
		return err
	}
	q := c.QueryParams()
	for k := range q {
		if k != "patient" && k != "_format" {
			return errs.E(op, errs.Invalid, "Consent search supports only patient")
		}
	}
	if len(q["patient"]) != 1 || q.Get("patient") == "" {
		return errs.E(op, errs.Invalid, "Consent search needs exactly one patient")
	}
	ctx := c.Request().Context()
	patientID := strings.TrimPrefix(q.Get("patient"), "Patient/")
	out := searchSet{ResourceType: "Bundle", Type: "searchset"}
	person, err := a.s.memberPerson(ctx, nil, principal(c).MemberID, patientID)
	if err != nil && errs.CodeOf(err) != errs.NotFound {
		return err
	}
	ev := consentEvent(c, audit.Query, person)
	if person != "" {
		dirs, err := a.Directives.InForce(ctx, person, time.Now())
		if err != nil {
			return err
		}
		if dirs, err = a.visibleDirectives(ctx, principal(c).MemberID, dirs); err != nil {
			return err
		}
		for _, d := range dirs {
			if d.Kind != consent.KindPatient {
				continue
			}
			body, err := formatForMember(d, patientID)
			if err != nil {
				return err
			}
			e := searchEntry{FullURL: a.s.FHIRBase() + "/Consent/" + string(d.ID), Resource: body}
			e.Search.Mode = "match"
			out.Entry = append(out.Entry, e)
			ev.Resources = append(ev.Resources, audit.Resource{Type: "Consent", ID: string(d.ID)})
		}
		ev.Reason = "own-patient"
	} else {
		// Unknown, or another member's patient: an empty result, a denial in the log.
		ev.Outcome, ev.Reason = audit.Deny, "unknown-or-foreign-patient"
	}
	if err := a.Audit.Append(ctx, ev); err != nil {
		return errs.E(op, errs.Unavailable, "audit log unavailable", err)
	}
	out.Total = len(out.Entry)
	c.Response().Header().Set("Cache-Control", "no-store")
	b, err := json.Marshal(out)
	if err != nil {
		return errs.E(op, errs.Internal, err)
	}
	return c.Blob(http.StatusOK, mimeFHIR, b)
}
