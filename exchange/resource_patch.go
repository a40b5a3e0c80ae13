package exchange

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"mime"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/directory"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/records"
)

// patchMedia enforces PATCH's media types in place of fhirMedia: the body must be a JSON
// Patch (application/json-patch+json) or a FHIRPath Patch, a Parameters resource in FHIR
// JSON (application/fhir+json, the older application/json+fhir, or application/json:
// patchFormat); anything else, JSON Merge Patch (application/merge-patch+json) included,
// is 415. Accept and _format are checked as fhirMedia checks them (406).
func (s *Server) patchMedia(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if patchFormat(r) == "" {
			return errs.E("exchange.patchMedia", errs.Unsupported, "PATCH takes a JSON Patch sent as "+fhir.MediaTypeJSONPatch+
				" or a FHIRPath Patch (a Parameters resource) sent as "+fhir.MediaTypeFHIRPathPatch+"; JSON Merge Patch is not supported")
		}
		if acc := r.Header.Get("Accept"); acc != "" && !acceptsJSON(acc) {
			return echo.NewHTTPError(http.StatusNotAcceptable)
		}
		if f := c.QueryParam("_format"); f != "" && f != "json" && f != mimeFHIR && f != "application/json" {
			return echo.NewHTTPError(http.StatusNotAcceptable)
		}
		return next(c)
	}
}

// admitPatch admits a PATCH of typ: an unknown type is errs.NotFound with the message
// unknown, a type written only by its own handler is 405 as its PUT is (a patch is an
// update: ownHandlerWrite with PUT, so an Endpoint, Group or Consent is not patched around
// its handler), and a token without both the update and the read scope (system/Type.u and
// system/Type.r) is refused (403, the same for either). A patch needs read as well: its
// answer is the patched resource, and whether a test operation holds (200 or 422) tells
// what the current version holds, so update alone would read through PATCH.
func admitPatch(c echo.Context, op, typ, unknown string) error {
	if !fhir.IsResourceType(typ) {
		return errs.E(op, errs.NotFound, unknown)
	}
	if ownHandlerWrite(typ, http.MethodPut) {
		return echo.NewHTTPError(http.StatusMethodNotAllowed, typ+" is not written through the generic PATCH")
	}
	if err := require(c, typ, 'u'); err != nil {
		return err
	}
	return require(c, typ, 'r')
}

// patchFormat returns the patch format the Content-Type of the PATCH request r names:
// fhir.MediaTypeJSONPatch; fhir.MediaTypeFHIRPathPatch for application/fhir+json,
// application/json+fhir and application/json; "" for anything else.
func patchFormat(r *http.Request) string {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch {
	case err != nil:
		return ""
	case mt == fhir.MediaTypeJSONPatch:
		return fhir.MediaTypeJSONPatch
	case mt == mimeFHIR, mt == "application/json+fhir", mt == "application/json":
		return fhir.MediaTypeFHIRPathPatch
	}
	return ""
}

// readPatch reads the request body within the body limit (readBody: 413 beyond it) and
// parses it as the patch its Content-Type names (patchFormat): a JSON Patch
// (fhir.ParsePatch) or a FHIRPath Patch (fhir.ParseFHIRPathPatch), 400 naming the problem.
// A JSON array sent as FHIR JSON is a JSON Patch under the wrong media type: 415.
func (s *Server) readPatch(c echo.Context) (*fhir.Patch, error) {
	body, err := s.readBody(c)
	if err != nil {
		return nil, err
	}
	if patchFormat(c.Request()) == fhir.MediaTypeJSONPatch {
		return fhir.ParsePatch(body)
	}
	if b := bytes.TrimLeft(body, " \t\r\n"); len(b) > 0 && b[0] == '[' {
		return nil, errs.E("exchange.readPatch", errs.Unsupported, "a JSON Patch must be sent as "+fhir.MediaTypeJSONPatch+
			"; a FHIRPath Patch, sent as "+fhir.MediaTypeFHIRPathPatch+", is a Parameters resource")
	}
	return fhir.ParseFHIRPathPatch(body)
}

// patchResource handles PATCH [base]/[type]/[id] with a JSON Patch or a FHIRPath Patch
// (FHIR R4 http.html#patch, fhirpatch.html; readPatch, and fhir.ParseFHIRPathPatch for the
// FHIRPath subset its paths may use): the patch is applied to the current version of the
// member's own resource, and the
// result is stored exactly as a PUT of it would be (update: compartment authorized like a
// create, security labels, the MPI link of a Patient, a new version in _history, If-Match
// checked under the row lock, the update's audit event committed with it, the new version
// answered like PUT's: 200 with the resource, nothing or an OperationOutcome as Prefer
// asks). A patch whose result has the current version's content (a replace with the same
// value) stores no new version and answers that one, as a PUT of it would. Another
// member's resource, an unknown id and the member's own deleted one answer 404 alike,
// each after the deny event a PUT of it leaves (auditRefusedUpdate); the patch is never
// applied to them, so a test operation cannot probe another member's data. A malformed
// patch is 400 (a FHIRPath Patch also when its paths or values do not fit the resource's
// definition), a well-formed one that cannot be applied 422 (a failed test, a missing path;
// a FHIRPath path that selects no element, or several), a result that is not a valid
// resource of the same type and id 400; on every error nothing is stored.
func (s *Server) patchResource(c echo.Context) error {
	const op = "exchange.patchResource"
	typ, id := c.Param("type"), c.Param("id")
	if err := admitPatch(c, op, typ, "resource not found"); err != nil {
		return err
	}
	return s.patch(c, typ, func(context.Context, db.Querier, directory.Member) (string, error) { return id, nil })
}

// conditionalPatch handles PATCH [base]/[type]?identifier=system|value (or another
// condition, as conditionalUpdate takes it): the member's one current resource that matches
// it is patched as patchResource patches it. None answers 404 and more than one 412;
// another member's resources never match, so the condition refuses nothing (and leaves no
// deny event), as conditionalDelete does.
func (s *Server) conditionalPatch(c echo.Context) error {
	const op = "exchange.conditionalPatch"
	typ := c.Param("type")
	if err := admitPatch(c, op, typ, "resource type not supported"); err != nil {
		return err
	}
	cond, err := store.ParseCondition(typ, c.Request().URL.RawQuery)
	if err != nil {
		return errs.E(op, err)
	}
	return s.patch(c, typ, func(ctx context.Context, tx db.Querier, member directory.Member) (string, error) {
		m, err := s.FHIR.Match(ctx, tx, member.ID, cond)
		switch {
		case err != nil:
			return "", err
		case len(m) == 0:
			return "", errs.E(op, errs.NotFound, "resource not found")
		case len(m) > 1:
			return "", &errPrecondition{msg: "the condition matches more than one resource"}
		}
		return m[0], nil
	})
}

// patch is patchResource and conditionalPatch after admission: it reads the patch, and in
// one transaction resolves the target id (target), applies the patch to it (patchOwn) and
// commits the update's audit event with it (writeOwn, which also answers).
func (s *Server) patch(c echo.Context, typ string, target func(context.Context, db.Querier, directory.Member) (string, error)) error {
	p, err := s.readPatch(c)
	if err != nil {
		return err
	}
	ifMatch := c.Request().Header.Get("If-Match")
	return s.writeOwn(c, func(ctx context.Context, tx db.Querier, member directory.Member, w *records.Writes) (store.Stored, int, error) {
		id, err := target(ctx, tx, member)
		if err != nil {
			return store.Stored{}, 0, err
		}
		st, err := s.patchOwn(ctx, tx, member, typ, id, p, ifMatch, nil)
		if err == nil {
			w.Stored(audit.Update, st)
		}
		return st, http.StatusOK, err
	})
}

// patchOwn applies p to the current version of the member's resource typ/id and stores
// the result as update would, inside tx. It takes update's locks in update's order before
// it reads the pre-image, so the version patched is the version replaced: for a Patient
// the MRN of its current version (patientMRNKey), then the row (lockOwn), and stores the
// result under them (ingestUpdate) without taking them again. A patch that changes a
// Patient's MRN (its identifier in the member's namespace) is refused with errs.Conflict
// (409) as soon as it is applied, since its new MRN could only be locked after the row (a
// PUT of the changed body is refused too, so nothing is lost); a patched Patient with no
// MRN is left for ingestUpdate to refuse. A resource that is not the member's own and live
// is refused by lockOwn as update refuses it (errs.NotFound whose cause is a *refusedWrite),
// before the patch touches it. ifMatch, when not "", must name the current version
// (errPrecondition otherwise; errs.Invalid when it is not an ETag). bp is nil for PATCH
// [type]/[id], whose patch has the work bound of its own (fhir.Resource.ApplyPatch); for a
// Bundle's entry it is what the Bundle's PATCH entries share (bundlePatches): a budget
// already spent is errs.TooLarge before anything is locked or read, the patch's work is
// taken from it, and the patched resource goes through bp.charge before it is stored.
func (s *Server) patchOwn(ctx context.Context, tx db.Querier, member directory.Member, typ, id string, p *fhir.Patch, ifMatch string,
	bp *bundlePatches) (store.Stored, error) {
	const op = "exchange.patchOwn"
	if bp != nil {
		if err := bp.check(s.cfg.MaxBodyBytes); err != nil {
			return store.Stored{}, err
		}
	}
	mrnKey := "" // a Patient's MRN lock, taken before the row
	if typ == "Patient" {
		k, err := s.patientMRNKey(ctx, tx, member, id)
		if err != nil {
			return store.Stored{}, err
		}
		if k != "" {
			if err := s.FHIR.LockConditions(ctx, tx, member.ID, []string{k}); err != nil {
				return store.Stored{}, err
			}
		}
		mrnKey = k
	}
	if _, err := s.lockOwn(ctx, tx, member, typ, id, ifMatch); err != nil {
		return store.Stored{}, err
	}
	cur, err := s.FHIR.Get(ctx, tx, typ, id) // under the row lock: the version If-Match named
	if err != nil {
		return store.Stored{}, err
	}
	pre, err := fhir.Parse(cur.Body)
	if err != nil {
		return store.Stored{}, errs.E(op, errs.Internal, "stored resource does not parse", err)
	}
	var res *fhir.Resource
	if bp == nil {
		res, err = pre.ApplyPatch(p, s.cfg.MaxBodyBytes)
	} else {
		res, err = pre.ApplyPatchWithin(p, s.cfg.MaxBodyBytes, bp.work)
	}
	if err != nil {
		return store.Stored{}, err
	}
	if typ == "Patient" {
		if err := keepsMRN(pre, res, member, mrnKey); err != nil {
			return store.Stored{}, err
		}
	}
	if bp != nil {
		if res, err = bp.charge(res, s.cfg.MaxBodyBytes); err != nil {
			return store.Stored{}, err
		}
	}
	// The row lock and, for a Patient, its MRN's lock (keepsMRN: the MRN is unchanged) are
	// held already: store the result as update would after taking them.
	if err := sameTarget(typ, id, res); err != nil {
		return store.Stored{}, err
	}
	return s.ingestUpdate(ctx, tx, member, res, id)
}

// bundlePatches is what the PATCH entries of one Bundle share (runEntries): a Bundle may
// patch no more, in bytes stored and in work, than one PATCH [type]/[id] may, so that a
// Bundle of many cheap patches of a large resource costs no more than one patch of it.
type bundlePatches struct {
	rewrite func(*fhir.Resource) (*fhir.Resource, error) // resolves a patched resource's references
	stored  *int64                                       // the bytes the entries stored so far
	work    *fhir.PatchBudget                            // the work left to the entries
}

// check is the refusal, before a patch is applied, of an entry that could only fail: the
// entries before it stored maxBytes already, or spent the work budget. errs.TooLarge.
func (bp *bundlePatches) check(maxBytes int64) error {
	if *bp.stored >= maxBytes || bp.work.Spent() {
		return errs.E("exchange.patchOwn", errs.TooLarge, "the Bundle's PATCH entries would store more, or take more work, than one patch may")
	}
	return nil
}

// charge resolves r's references and adds its size to what the entries stored: beyond
// maxBytes it is errs.TooLarge instead.
func (bp *bundlePatches) charge(r *fhir.Resource, maxBytes int64) (*fhir.Resource, error) {
	r, err := bp.rewrite(r)
	if err != nil {
		return nil, err
	}
	n := int64(len(r.Bytes()))
	if *bp.stored+n > maxBytes {
		return nil, errs.E("exchange.runEntries", errs.TooLarge, "the Bundle's PATCH entries would store more than the body limit allows")
	}
	*bp.stored += n
	return r, nil
}

// patientMRNKey returns the MRN lock key (mrnLockKey) of the current version of the
// member's Patient id, read without a lock; "" when id is not the member's live Patient
// or has no MRN in the member's namespace. Locking it before the row keeps update's lock
// order for a patch, whose body is known only once the pre-image is read.
func (s *Server) patientMRNKey(ctx context.Context, tx db.Querier, member directory.Member, id string) (string, error) {
	cur, err := s.FHIR.Get(ctx, tx, "Patient", id)
	switch {
	case errs.CodeOf(err) == errs.NotFound:
		return "", nil
	case err != nil:
		return "", err
	case cur.MemberID != member.ID:
		return "", nil
	}
	pre, err := fhir.Parse(cur.Body)
	if err != nil {
		return "", nil // patchOwn reports it under the row lock
	}
	mrn, _, err := patientIdentity(pre, member)
	if err != nil {
		return "", nil
	}
	return mrnLockKey(mrn), nil
}

// keepsMRN refuses a patch of a Patient (pre, the current version; res, the patched one)
// that changes its MRN in the member's namespace, or whose MRN is not the one locked
// before the row (locked, an mrnLockKey; "" when none was): errs.Conflict, naming
// Patient.identifier. A patched Patient without an MRN passes, for update to refuse.
func keepsMRN(pre, res *fhir.Resource, member directory.Member, locked string) error {
	mrn, _, err := patientIdentity(res, member)
	if err != nil {
		return nil
	}
	if old, _, err := patientIdentity(pre, member); err == nil && old == mrn && mrnLockKey(mrn) == locked {
		return nil
	}
	e := errs.E("exchange.patchOwn", errs.Conflict, "a patch must not change the Patient's MRN (its identifier in the member's namespace)")
	e.Path = "Patient.identifier"
	return e
}

// entryPatch returns the patch a Bundle entry carries (FHIR R4 http.html#transaction): a
// FHIRPath Patch is the entry's resource, a Parameters; a JSON Patch is sent as a Binary
// resource with contentType application/json-patch+json and the patch, base64, in data.
// No resource is errs.Invalid; any other resource or content type is errs.Unsupported; a
// patch that does not parse is ParseFHIRPathPatch's or ParsePatch's error (errs.Invalid).
func entryPatch(res *fhir.Resource) (*fhir.Patch, error) {
	const op = "exchange.entryPatch"
	unsupported := errs.E(op, errs.Unsupported, "a PATCH entry takes a FHIRPath Patch as a Parameters resource, or a JSON Patch as a Binary with contentType "+fhir.MediaTypeJSONPatch)
	if res == nil {
		return nil, errs.E(op, errs.Invalid, "a PATCH entry needs its patch as its resource: a Parameters (FHIRPath Patch) or a Binary (JSON Patch)")
	}
	if res.ResourceType == "Parameters" {
		return fhir.ParseFHIRPathPatch(res.Bytes())
	}
	if res.ResourceType != "Binary" {
		return nil, unsupported
	}
	var b struct {
		ContentType string `json:"contentType"`
		Data        string `json:"data"`
	}
	// Parse has rejected duplicate and case-variant keys, so encoding/json sees what it saw.
	if err := json.Unmarshal(res.Bytes(), &b); err != nil {
		return nil, errs.E(op, errs.Invalid, "invalid Binary", err)
	}
	if mt, _, err := mime.ParseMediaType(b.ContentType); err != nil || mt != fhir.MediaTypeJSONPatch {
		return nil, unsupported
	}
	data, err := base64.StdEncoding.DecodeString(strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, b.Data))
	if err != nil {
		return nil, errs.E(op, errs.Invalid, "Binary.data is not base64", err)
	}
	return fhir.ParsePatch(data)
}

// writeUnprocessable answers 422 with an OperationOutcome for a patch that cannot be
// applied (fhir.ErrPatchNotApplied): its message names the operation and the problem.
func writeUnprocessable(c echo.Context, err error) error {
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.Blob(http.StatusUnprocessableEntity, mimeFHIR, fhir.OperationOutcome(unprocessableIssue(err)))
}

// unprocessableIssue is the OperationOutcome issue of a patch that cannot be applied:
// processing, with the error's message and path (a Bundle entry's).
func unprocessableIssue(err error) fhir.Issue {
	is := fhir.Issue{Severity: fhir.SeverityError, Code: fhir.IssueProcessing, Diagnostics: errs.MessageOf(err)}
	if p := errs.PathOf(err); p != "" {
		is.Expression = []string{p}
	}
	return is
}
