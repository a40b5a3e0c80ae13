package exchange

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/directory"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/internal/httpx"
	"github.com/concord-hie/concord/notify"
	"github.com/concord-hie/concord/records"
)

// Bundles (POST [base]) follow standards.md §1:
//
//   - transaction: all or nothing in one PostgreSQL transaction, processed in the FHIR
//     order DELETE, POST, PUT and PATCH (Patients first among the POSTs, so compartment
//     checks see them); every entry authorized on its own before anything is written.
//   - PATCH entries carry a FHIRPath Patch as a Parameters resource, or a JSON Patch as a
//     Binary (contentType application/json-patch+json) (entryPatch), and are applied as
//     PATCH [type]/[id] applies them (patchOwn); references in the patched resource are
//     resolved like any entry's, those a FHIRPath Patch's values bring in included. The
//     patched resources of one Bundle's PATCH entries may together be no larger than the
//     body limit, as if they had been sent whole (runEntries), and their patches share the
//     work one PATCH may take: beyond either a transaction fails with 413 and a batch
//     answers 413 for the PATCH entries that do not fit.
//   - batch: each entry in its own transaction; a failed entry answers with its status
//     and an OperationOutcome in response.outcome.
//   - urn:uuid (and urn:oid) fullUrls get their ids before anything is stored, then every
//     reference in every entry is rewritten. Conditional references
//     (Type?identifier=s|v, or any search parameters of the type: store.ParseCondition)
//     resolve to exactly one of the member's resources (0 or >1 fail with 412).
//   - request.ifNoneExist (search parameters of the type, e.g. identifier=system|value or
//     patient=Patient/1&code=s|c: store.ParseCondition) is a conditional create, serialized
//     on the condition by an advisory lock so concurrent bundles cannot create twice.
//   - Raw Synthea bundles: a plain POST of an Organization, Practitioner, Location or
//     PractitionerRole that carries an identifier is treated as if it had ifNoneExist on
//     its first identifier, so the directory resources that recur in every patient's bundle
//     resolve to one resource (references follow). Patients resolve by their MRN (Ingest).
//   - Idempotency per member: the Idempotency-Key header, else Bundle.identifier
//     (system|value), else (transactions only) the SHA-256 of the body. A repeat returns the
//     first transaction-response and writes nothing. Resending the same bytes is therefore
//     never a duplicate; a regenerated bundle with new bytes and no identifier re-creates
//     the resources that carry no identifier (Observation, Encounter, ...). The repeat's
//     answer is the first one as it was, whatever Prefer the repeat sends.
//   - Prefer (FHIR R4 http.html#transaction-response): each response entry of a POST, PUT
//     or PATCH carries status, location, etag and lastModified; return=representation adds
//     the resource as stored (entry.resource), return=OperationOutcome an OperationOutcome
//     saying what was done (entry.response.outcome, as wrote says it for a REST write), and
//     return=minimal, like no preference, neither. DELETE entries carry only their status.
//   - A PUT or PATCH entry whose result has the current version's content stores nothing
//     and answers 200 with that version (store.Put), as PUT and PATCH [type]/[id] do.

// MaxBundleEntries caps the entries of one Bundle.
const MaxBundleEntries = 5000

// directoryTypes are matched by identifier on a plain POST inside a bundle.
var directoryTypes = map[string]bool{"Organization": true, "Practitioner": true, "Location": true, "PractitionerRole": true}

// plannedEntry is one request entry after parsing and authorization; it is never
// modified while a transaction runs, so a retried transaction starts from the same plan.
type plannedEntry struct {
	idx      int
	method   string
	typ, id  string // id: PUT and DELETE targets
	fullURL  string
	res      *fhir.Resource
	cond     *store.Condition // explicit ifNoneExist or the implicit directory match
	ifMatch  string
	patch    *fhir.Patch // PATCH: the patch the entry carries (entryPatch)
	mrnKey   string      // Patients: the lock key of their MRN
	priority int         // processing order
	ret      returnPref  // what its response entry carries besides the status: the Bundle's Prefer
}

// entryPath names entry i in an OperationOutcome.
func entryPath(i int) string { return "Bundle.entry[" + strconv.Itoa(i) + "]" }

// entryErr places err at entry i: its Path becomes Bundle.entry[i](.resource...).
func entryErr(i int, typ string, err error) error {
	if p, ok := preconditionFailed(err); ok {
		return &errPrecondition{msg: entryPath(i) + ": " + p.msg}
	}
	e := errs.E("exchange.bundle", err)
	e.Path = entryPath(i)
	if p := errs.PathOf(err); p != "" {
		if typ != "" && strings.HasPrefix(p, typ) {
			e.Path += ".resource" + strings.TrimPrefix(p, typ)
		} else {
			e.Path += "." + p
		}
	}
	return e
}

// plan parses and authorizes entry i. Scopes are checked per entry: POST needs c, PUT u,
// PATCH u and r (as PATCH [type]/[id]: admitPatch), DELETE d, GET r; a missing one is
// errs.Forbidden.
func plan(p directory.Principal, member directory.Member, i int, e fhir.Entry) (plannedEntry, error) {
	const op = "exchange.plan"
	pe := plannedEntry{idx: i, method: strings.ToUpper(e.Request.Method), fullURL: e.FullURL, res: e.Resource, ifMatch: e.Request.IfMatch}
	u := strings.TrimPrefix(e.Request.URL, "/")
	path, query, _ := strings.Cut(u, "?")
	segs := strings.Split(path, "/")
	pe.typ = segs[0]
	if !fhir.IsResourceType(pe.typ) {
		return pe, errs.E(op, errs.Invalid, "entry.request.url names no resource type")
	}
	var need byte
	switch pe.method {
	case http.MethodPost:
		need = 'c'
		if len(segs) != 1 || query != "" || pe.res == nil || pe.res.ResourceType != pe.typ {
			return pe, errs.E(op, errs.Invalid, "a POST entry needs url [type] and a resource of that type")
		}
		if e.Request.IfNoneExist != "" {
			c, err := store.ParseCondition(pe.typ, e.Request.IfNoneExist)
			if err != nil {
				return pe, err
			}
			pe.cond = &c
		} else if directoryTypes[pe.typ] && store.Matchable(pe.typ, "identifier") {
			if id, ok := firstIdentifier(pe.res); ok {
				pe.cond = &store.Condition{Type: pe.typ, System: id.System, Value: id.Value}
			}
		}
		if pe.typ == "Patient" {
			mrn, _, err := patientIdentity(pe.res, member)
			if err != nil {
				return pe, err
			}
			pe.mrnKey, pe.priority = mrnLockKey(mrn), 1
		} else {
			pe.priority = 2
		}
	case http.MethodPut:
		need, pe.priority = 'u', 3
		if len(segs) != 2 || query != "" || pe.res == nil {
			return pe, errs.E(op, errs.Invalid, "a PUT entry needs url [type]/[id] and a resource (conditional update is not supported)")
		}
		pe.id = segs[1]
		if pe.typ == "Patient" { // its MRN is locked with the others, before any row (update)
			if mrn, _, err := patientIdentity(pe.res, member); err == nil {
				pe.mrnKey = mrnLockKey(mrn)
			}
		}
	case http.MethodPatch:
		need, pe.priority = 'u', 3
		if len(segs) != 2 || query != "" {
			return pe, errs.E(op, errs.Invalid, "a PATCH entry needs url [type]/[id] (conditional patch is not supported in Bundles)")
		}
		pe.id = segs[1]
		patch, err := entryPatch(pe.res)
		if err != nil {
			return pe, err
		}
		pe.patch, pe.res = patch, nil // the Parameters or Binary only carries the patch: nothing of it is stored
	case http.MethodDelete:
		need, pe.priority = 'd', 0
		if len(segs) != 2 || query != "" {
			return pe, errs.E(op, errs.Invalid, "a DELETE entry needs url [type]/[id] (conditional delete is not supported)")
		}
		pe.id = segs[1]
	case http.MethodGet:
		need, pe.priority = 'r', 4
		if len(segs) != 2 || query != "" {
			return pe, errs.E(op, errs.Invalid, "a GET entry needs url [type]/[id] (search is not supported in bundles)")
		}
		pe.id = segs[1]
	default:
		return pe, errs.E(op, errs.Invalid, "only POST, PUT, PATCH, DELETE and (in a batch) GET entries are supported")
	}
	method := pe.method
	if method == http.MethodPatch {
		method = http.MethodPut // a patch is an update
	}
	if err := refuseEntry(pe.typ, method, pe.id); err != nil {
		return pe, err
	}
	// A patch reads what it changes, and an explicit ifNoneExist that matches answers with
	// the stored resource: both need the read scope too.
	reads := pe.method == http.MethodPatch || pe.method == http.MethodPost && e.Request.IfNoneExist != ""
	if !p.Scopes.Allows(pe.typ, need) || reads && !p.Scopes.Allows(pe.typ, 'r') {
		return pe, errs.E(op, errs.Forbidden, "the access token's scopes do not allow this entry")
	}
	return pe, nil
}

// firstIdentifier returns the resource's first identifier with both system and value.
func firstIdentifier(res *fhir.Resource) (identifier, bool) {
	var f patientFields
	if json.Unmarshal(res.Bytes(), &f) != nil {
		return identifier{}, false
	}
	for _, id := range f.Identifier {
		if id.System != "" && id.Value != "" {
			return id, true
		}
	}
	return identifier{}, false
}

// urnKey normalizes a fullUrl or reference for matching (urn:uuid is case-insensitive).
func urnKey(s string) string {
	if len(s) > 9 && strings.EqualFold(s[:9], "urn:uuid:") {
		return strings.ToLower(s)
	}
	return s
}

// runEntries carries out planned entries for member inside tx and returns one response
// per entry, in the order given, each with what the entry's ret asks for (the resource or
// an OperationOutcome besides the status: see Prefer in the list above), recording in w
// every create, update and delete (an entry that resolves to an existing resource writes
// nothing and records nothing, but the read of it when its response carries it) and every
// update and delete refused because its id is not the member's own live resource
// (Writes.Refuse: a DELETE of such an id answers 204, a PUT or PATCH fails with 404), for the caller
// to audit (auditWrites, auditRolledBack). Any error fails the whole call; errors
// name the entry.
//
// patched is the size of the resources the Bundle's PATCH entries stored before this call
// (0 for a transaction; a batch's running total over the entries it committed): each
// patched resource's size is added to it before the resource is stored, and one that
// would take it beyond the body limit is errs.TooLarge (413) instead. A PATCH costs its
// sender a few bytes however large its result, so without this bound one Bundle of empty
// patches could store a large resource thousands of times; with it a Bundle's patches
// store no more than the same resources sent whole as PUTs could. The entries' patches
// share the work budget one patch has (fhir.NewPatchBudget of the body limit): an entry
// that finds it spent, or spends it, is errs.TooLarge too.
func (s *Server) runEntries(ctx context.Context, tx db.Querier, member directory.Member, entries []plannedEntry, w *records.Writes, patched *int64) ([]fhir.ResponseEntry, error) {
	work := fhir.NewPatchBudget(s.cfg.MaxBodyBytes)
	return s.runEntriesWithin(ctx, tx, member, entries, w, patched, &work)
}

// runEntriesWithin is runEntries whose PATCH entries take their work from work, which a
// batch shares across the calls for its entries.
func (s *Server) runEntriesWithin(ctx context.Context, tx db.Querier, member directory.Member, entries []plannedEntry, w *records.Writes,
	patched *int64, work *fhir.PatchBudget) ([]fhir.ResponseEntry, error) {
	// 1. Serialize on every condition and MRN this call may create under, in one call: in
	// sorted order, which takes the MRNs first (mrnLockKey).
	var keys []string
	for _, e := range entries {
		if e.cond != nil {
			keys = append(keys, e.cond.Key())
		}
		if e.mrnKey != "" {
			keys = append(keys, e.mrnKey)
		}
		if e.method == http.MethodPatch && e.typ == "Patient" { // the MRN its current version has
			k, err := s.patientMRNKey(ctx, tx, member, e.id)
			if err != nil {
				return nil, entryErr(e.idx, e.typ, err)
			}
			if k != "" {
				keys = append(keys, k)
			}
		}
	}
	if err := s.FHIR.LockConditions(ctx, tx, member.ID, keys); err != nil {
		return nil, err
	}
	// 2. Assign ids (or resolve to existing resources) and map fullUrls to them.
	ids := make([]string, len(entries))
	existing := make([]bool, len(entries))
	alias := make([]int, len(entries)) // 1 + the earlier entry of this bundle with the same condition
	firstWith := map[string]int{}
	refs := map[string]string{}
	newID := func(e plannedEntry) (string, error) {
		if e.typ != "Patient" {
			return store.NewID(), nil
		}
		mrn, _, _ := patientIdentity(e.res, member)
		src, err := s.MPI.SourceByIdentifier(ctx, tx, mrn.System, mrn.Value)
		switch {
		case err == nil:
			return src.PatientID, nil // Ingest refuses another member's record
		case errs.CodeOf(err) == errs.NotFound:
			return store.NewID(), nil
		}
		return "", err
	}
	for i, e := range entries {
		var err error
		switch {
		case e.method != http.MethodPost:
			ids[i] = e.id
		case e.cond != nil:
			if j, ok := firstWith[e.cond.Key()]; ok {
				ids[i], alias[i] = ids[j], j+1
				break
			}
			firstWith[e.cond.Key()] = i
			m, err := s.FHIR.Match(ctx, tx, member.ID, *e.cond)
			if err != nil {
				return nil, entryErr(e.idx, e.typ, err)
			}
			switch len(m) {
			case 0:
				ids[i], err = newID(e)
				if err != nil {
					return nil, err
				}
			case 1:
				ids[i], existing[i] = m[0], true
			default:
				return nil, entryErr(e.idx, e.typ, &errPrecondition{msg: "the condition matches more than one resource"})
			}
		default:
			if ids[i], err = newID(e); err != nil {
				return nil, err
			}
		}
		if e.fullURL != "" && e.res != nil {
			k := urnKey(e.fullURL)
			if _, dup := refs[k]; dup {
				return nil, entryErr(e.idx, e.typ, errs.E("exchange.runEntries", errs.Invalid, "two entries have the same fullUrl"))
			}
			refs[k] = e.typ + "/" + ids[i]
		}
	}
	// 3. Rewrite references in every entry (a PATCH entry's once it is patched, in 4).
	resources := make([]*fhir.Resource, len(entries))
	condRefs := map[string]string{}
	resolve := func(ref string) (string, error) {
		if to, ok := refs[urnKey(ref)]; ok {
			return to, nil
		}
		if strings.HasPrefix(ref, "urn:") {
			return "", errs.E("exchange.runEntries", errs.Invalid, "the reference names no entry of this Bundle")
		}
		typ, q, ok := strings.Cut(ref, "?")
		if !ok || strings.Contains(typ, "/") {
			return ref, nil
		}
		if to, ok := condRefs[ref]; ok {
			return to, nil
		}
		c, err := store.ParseCondition(typ, q)
		if err != nil {
			return "", err
		}
		m, err := s.FHIR.Match(ctx, tx, member.ID, c)
		if err != nil {
			return "", err
		}
		if len(m) != 1 {
			return "", &errPrecondition{msg: "a conditional reference must match exactly one resource"}
		}
		condRefs[ref] = typ + "/" + m[0]
		return condRefs[ref], nil
	}
	rewrite := func(r *fhir.Resource) (*fhir.Resource, error) { return fhir.RewriteReferences(r, resolve) }
	// A PATCH entry's result: references resolved, then charged to patched; its work
	// taken from the budget.
	bp := &bundlePatches{rewrite: rewrite, stored: patched, work: work}
	for i, e := range entries {
		if e.res == nil || existing[i] || alias[i] != 0 {
			continue
		}
		r, err := rewrite(e.res)
		if err != nil {
			return nil, entryErr(e.idx, e.typ, err)
		}
		resources[i] = r
	}
	// 4. Write in the FHIR processing order.
	order := make([]int, len(entries))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return entries[order[a]].priority < entries[order[b]].priority })
	out := make([]fhir.ResponseEntry, len(entries))
	sts := make([]store.Stored, len(entries)) // what each answered entry stored or found
	cache := compartmentCache{}
	var bulk []store.Write // new resources stored together once the POSTs are decided
	var bulkIdx []int
	// respond answers entry i, which stored or found st (matched: found by its condition).
	respond := func(i, status int, st store.Stored, matched bool) error {
		sts[i] = st
		out[i] = fhir.ResponseEntry{FullURL: s.FHIRBase() + "/" + st.Type + "/" + st.ID, Response: fhir.EntryResponse{
			Status:       strconv.Itoa(status) + " " + http.StatusText(status),
			Location:     st.Type + "/" + st.ID + "/_history/" + itoa(st.Version),
			Etag:         store.ETag(st.Version),
			LastModified: fhir.FormatInstant(st.LastUpdated),
		}}
		switch entries[i].ret {
		case returnRepresentation:
			res, err := fhir.Parse(st.Body)
			if err != nil {
				return errs.E("exchange.runEntries", errs.Internal, "stored resource does not parse", err)
			}
			out[i].Resource = res
		case returnOutcome:
			out[i].Response.Outcome = writeOutcome(wrote(status, st, matched))
		}
		return nil
	}
	flush := func() error {
		if len(bulk) == 0 {
			return nil
		}
		created, err := s.createMany(ctx, tx, bulk)
		if err != nil {
			return err
		}
		for j, st := range created {
			if err := respond(bulkIdx[j], http.StatusCreated, st, false); err != nil {
				return err
			}
			w.Stored(audit.Create, st)
		}
		bulk, bulkIdx = nil, nil
		return nil
	}
	for _, i := range order {
		e := entries[i]
		if e.priority > 2 { // the creates are stored before any update
			if err := flush(); err != nil {
				return nil, err
			}
		}
		if alias[i] != 0 {
			continue // answered below, like the entry it repeats
		}
		var st store.Stored
		status := http.StatusOK
		var err error
		switch {
		case e.method == http.MethodDelete:
			// An unknown, foreign or deleted id answers 204 like a delete (deleteOwnRefusing);
			// the first two are refusals.
			var r *refusedWrite
			if r, err = s.deleteOwnRefusing(ctx, tx, member.ID, e.typ, e.id, w); err == nil {
				if r != nil {
					w.Refuse(writeRefusal(audit.Delete, r))
				}
				out[i] = fhir.ResponseEntry{Response: fhir.EntryResponse{Status: "204 No Content"}}
				continue
			}
		case e.method == http.MethodPut:
			var r *refusedWrite
			if st, err = s.update(ctx, tx, member, e.typ, e.id, resources[i], e.ifMatch); err == nil {
				w.Stored(audit.Update, st)
			} else if errors.As(err, &r) {
				w.Refuse(writeRefusal(audit.Update, r))
			}
		case e.method == http.MethodPatch:
			var r *refusedWrite
			if st, err = s.patchOwn(ctx, tx, member, e.typ, e.id, e.patch, e.ifMatch, bp); err == nil {
				w.Stored(audit.Update, st)
			} else if errors.As(err, &r) {
				w.Refuse(writeRefusal(audit.Update, r))
			}
		case existing[i]:
			if st, err = s.FHIR.Get(ctx, tx, e.typ, ids[i]); err == nil && e.ret == returnRepresentation {
				w.Stored(audit.Read, st) // the member's own resource, disclosed in entry.resource
			}
		case bulkCreatable(e.typ):
			var w store.Write
			w, err = s.bulkWrite(ctx, tx, member, resources[i], ids[i], cache)
			if err == nil {
				bulk, bulkIdx = append(bulk, w), append(bulkIdx, i)
				continue
			}
		default:
			if st, status, err = s.IngestAs(ctx, tx, member, resources[i], ids[i]); err == nil {
				written(w, st, status, false)
			}
		}
		if err == nil {
			err = respond(i, status, st, existing[i])
		}
		if err != nil {
			return nil, entryErr(e.idx, e.typ, err)
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	for i, j := range alias {
		if j != 0 {
			out[i] = out[j-1]
			out[i].Response.Status = "200 OK" // resolved to the resource of the earlier entry
			if out[i].Response.Outcome != nil {
				out[i].Response.Outcome = writeOutcome(wrote(http.StatusOK, sts[j-1], true))
			}
		}
	}
	return out, nil
}

// bulkWrite authorizes a new non-Patient resource like Ingest does (its compartment must
// be one of the member's own Patients) and returns its write, for CreateMany.
func (s *Server) bulkWrite(ctx context.Context, tx db.Querier, member directory.Member, res *fhir.Resource, id string, cache compartmentCache) (store.Write, error) {
	patientID, err := s.cachedCompartment(ctx, tx, member, res, cache)
	if err != nil {
		return store.Write{}, err
	}
	w := s.sourceWrite(member, res, id)
	w.PatientID = patientID
	return w, nil
}

// createMany stores writes made by bulkWrite in one round trip and, as Ingest does, puts
// each Encounter's event in the outbox in the same transaction.
func (s *Server) createMany(ctx context.Context, tx db.Querier, ws []store.Write) ([]store.Stored, error) {
	sts, err := s.FHIR.CreateMany(ctx, tx, ws)
	if err != nil || s.Notify == nil {
		return sts, err
	}
	for _, st := range sts {
		if err := notify.EnqueueStored(ctx, tx, st); err != nil {
			return nil, err
		}
	}
	return sts, nil
}

// processBundle handles POST [base] with a transaction or batch Bundle.
func (s *Server) processBundle(c echo.Context) error {
	const op = "exchange.processBundle"
	body, res, err := s.readRequestResource(c, op, "")
	if err != nil {
		return err
	}
	b, err := fhir.ParseBundle(res)
	if err != nil {
		return err
	}
	if len(b.Entries) > MaxBundleEntries {
		return errs.E(op, errs.TooLarge, "the Bundle has too many entries")
	}
	ctx := c.Request().Context()
	p := principal(c)
	member, err := s.Directory.Member(ctx, p.MemberID)
	if err != nil {
		return err
	}
	ret := preferReturn(c.Request().Header.Values("Prefer"))
	var out []byte
	switch b.Type {
	case "transaction":
		key := c.Request().Header.Get("Idempotency-Key")
		switch {
		case key != "":
			key = "header:" + key
		case b.Identifier != nil && b.Identifier.Value != "":
			key = "bundle:" + b.Identifier.System + "|" + b.Identifier.Value
		default:
			sum := sha256.Sum256(body)
			key = "sha256:" + hex.EncodeToString(sum[:])
		}
		out, err = s.transaction(ctx, viewer(c), p, member, b, key, ret)
		if pf, ok := preconditionFailed(err); ok {
			return writePrecondition(c, pf)
		}
		if keyReused(err) {
			return writeKeyReused(c)
		}
		if errors.Is(err, fhir.ErrPatchNotApplied) {
			return writeUnprocessable(c, err)
		}
	case "batch":
		out, err = s.batch(ctx, viewer(c), p, member, b, ret)
	default:
		e := errs.E(op, errs.Invalid, "POST [base] takes a transaction or batch Bundle")
		e.Path = "Bundle.type"
		return e
	}
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.Blob(http.StatusOK, mimeFHIR, out)
}

// Transaction runs a transaction Bundle for member, all or nothing, and returns the
// transaction-response. Every entry is authorized against p before anything is written;
// one refused or failed entry fails the whole Bundle (the error names it; a failed
// precondition is an errPrecondition, 412). A non-empty idempotencyKey that the member
// used before returns the first response and writes nothing; the key is remembered in
// the same transaction as the data, bound to the SHA-256 of the Bundle's requests: the key
// reused for other requests is errKeyReused (422). The audit events of what it wrote (one
// per person and action, for v: records.AuditWrites) commit in the same transaction; when
// they cannot, nothing is written and the error is errs.Unavailable (503). An update or
// delete of an id that is not the member's own live resource is refused as if absent and
// has a deny event: in the same transaction when the Bundle commits (a DELETE's 204), and
// committed on its own after the rollback when it fails (a PUT's or PATCH's 404 fails it), before
// the error is returned; when that cannot be done the error is errs.Unavailable instead.
// Its response entries carry no resource and no outcome (as under Prefer: return=minimal).
func (s *Server) Transaction(ctx context.Context, v records.Viewer, p directory.Principal, member directory.Member, b *fhir.Bundle, idempotencyKey string) ([]byte, error) {
	return s.transaction(ctx, v, p, member, b, idempotencyKey, returnDefault)
}

// transaction is Transaction whose response entries carry what ret asks for (the request's
// Prefer: the resource, an OperationOutcome, or neither).
func (s *Server) transaction(ctx context.Context, v records.Viewer, p directory.Principal, member directory.Member, b *fhir.Bundle, idempotencyKey string,
	ret returnPref) ([]byte, error) {
	entries := make([]plannedEntry, len(b.Entries))
	for i, e := range b.Entries {
		pe, err := plan(p, member, i, e)
		if err == nil && pe.method == http.MethodGet {
			err = errs.E("exchange.Transaction", errs.Invalid, "GET entries are supported in batch Bundles only")
		}
		if err != nil {
			return nil, entryErr(i, pe.typ, err)
		}
		pe.ret = ret
		entries[i] = pe
	}
	var out []byte
	reqHash := bundleRequestHash(b)
	var w records.Writes // the last attempt's
	err := db.InTx(ctx, s.Pool, func(tx db.Querier) error {
		w = records.Writes{}
		if r, err := s.replayIdempotent(ctx, tx, member.ID, idempotencyKey, reqHash); err != nil || r != nil {
			if r != nil {
				out = r.body
			}
			return err
		}
		var patched int64 // what this attempt's PATCH entries stored
		resp, err := s.runEntries(ctx, tx, member, entries, &w, &patched)
		if err != nil {
			return err
		}
		out, err = fhir.ResponseBundle(store.NewID(), true, resp)
		if err != nil {
			return err
		}
		if err := s.rememberIdempotent(ctx, tx, member.ID, idempotencyKey, reqHash, idempotentReply{status: http.StatusOK, body: out}); err != nil {
			return err
		}
		return s.auditWrites(ctx, tx, v, &w)
	})
	if err != nil {
		return nil, s.auditRolledBack(ctx, v, w.Refusals(), err)
	}
	return out, nil
}

// Batch runs each entry of a batch Bundle in its own transaction and returns the
// batch-response: failed entries carry their status and an OperationOutcome. Entries of a
// batch may not reference each other. A database failure fails the whole batch (503) only
// while no entry has committed; after that it is the failing entry's 503. Each entry's
// audit events commit with that entry (an entry whose event cannot be written is not
// written either), so a batch leaves one event per person and action per entry. A refused
// update or delete (an id that is not the member's own live resource: 404 or 204) has its
// deny event, committed with the entry or, for a failed entry, after its rollback (the
// entry's 503 when it cannot be). The response entries of writes carry no resource and no
// outcome (as under Prefer: return=minimal); a GET entry's carries the resource read.
func (s *Server) Batch(ctx context.Context, v records.Viewer, p directory.Principal, member directory.Member, b *fhir.Bundle) ([]byte, error) {
	return s.batch(ctx, v, p, member, b, returnDefault)
}

// batch is Batch whose response entries of writes carry what ret asks for (the request's
// Prefer: the resource, an OperationOutcome, or neither).
func (s *Server) batch(ctx context.Context, v records.Viewer, p directory.Principal, member directory.Member, b *fhir.Bundle, ret returnPref) ([]byte, error) {
	resp := make([]fhir.ResponseEntry, len(b.Entries))
	committed := false // an entry's write has committed: the batch can no longer fail whole
	var patched int64  // what the committed PATCH entries stored (runEntries)
	// What the PATCH entries may still spend: the work of one spent is spent, committed or not.
	work := fhir.NewPatchBudget(s.cfg.MaxBodyBytes)
	for i, e := range b.Entries {
		pe, err := plan(p, member, i, e)
		pe.ret = ret
		if err == nil && pe.method == http.MethodGet {
			resp[i], err = s.batchRead(ctx, v, pe)
		} else if err == nil {
			var w records.Writes // the last attempt's
			var total int64      // patched with the last attempt's entry
			left := work         // the work budget before the entry: a retried attempt starts from it
			err = db.InTx(ctx, s.Pool, func(tx db.Querier) error {
				w, total, work = records.Writes{}, patched, left
				r, err := s.runEntriesWithin(ctx, tx, member, []plannedEntry{pe}, &w, &total, &work)
				if err != nil {
					return err
				}
				resp[i] = r[0]
				return s.auditWrites(ctx, tx, v, &w)
			})
			committed = committed || err == nil
			if err == nil {
				patched = total
			} else {
				err = s.auditRolledBack(ctx, v, w.Refusals(), err)
			}
		}
		if err == nil {
			continue
		}
		// Before anything is written the whole batch may answer 503 (the client retries
		// it all); after a commit that would hide the committed entries, so the failure
		// is reported in this entry's response like any other.
		if !committed && (errs.CodeOf(err) == errs.Unavailable || ctx.Err() != nil) {
			return nil, err
		}
		status, is := httpx.Status(err), fhir.IssueFor(err)
		if pf, ok := preconditionFailed(err); ok {
			status, is = http.StatusPreconditionFailed, fhir.Issue{Severity: fhir.SeverityError, Code: fhir.IssueConflict, Diagnostics: pf.msg}
		} else if errors.Is(err, fhir.ErrPatchNotApplied) {
			status, is = http.StatusUnprocessableEntity, unprocessableIssue(err)
		} else if status >= 500 {
			is.Diagnostics = "the entry could not be processed"
		}
		if p := errs.PathOf(err); p != "" {
			is.Expression = []string{p}
		}
		resp[i] = fhir.ResponseEntry{Response: fhir.EntryResponse{Status: strconv.Itoa(status) + " " + http.StatusText(status), Outcome: fhir.OperationOutcome(is)}}
	}
	return fhir.ResponseBundle(store.NewID(), false, resp)
}

// writeRefusal is r, refused for action, as records audits it.
func writeRefusal(action audit.Action, r *refusedWrite) records.WriteRefusal {
	return records.WriteRefusal{Action: action, Type: r.typ, ID: r.id, Reason: r.reason}
}

// auditRolledBack is for a transaction that failed with err and rolled back, taking with
// it the deny events it would have committed: it commits those of the updates and deletes
// it refused on their own (records.Service.AuditWriteRefusals) and returns err, or, when
// they cannot be committed (or there is no enforcement point), errs.Unavailable instead.
func (s *Server) auditRolledBack(ctx context.Context, v records.Viewer, refused []records.WriteRefusal, err error) error {
	if len(refused) == 0 {
		return err
	}
	if s.Records == nil {
		return errs.E("exchange.auditRolledBack", errs.Unavailable, "audit log unavailable", err)
	}
	if aerr := s.Records.AuditWriteRefusals(ctx, v, refused...); aerr != nil {
		return aerr
	}
	return err
}

// batchRead answers a GET entry through records, the enforcement point (consent and
// audit apply; what the member may not see is not found).
func (s *Server) batchRead(ctx context.Context, v records.Viewer, e plannedEntry) (fhir.ResponseEntry, error) {
	st, rel, err := s.Records.ReadRelease(ctx, v, e.typ, e.id)
	if err != nil {
		return fhir.ResponseEntry{}, err
	}
	body, err := discloseBody(st.Body, rel) // a Part 2 record carries the §2.32 notice (part2.go)
	if err != nil {
		return fhir.ResponseEntry{}, err
	}
	res, err := fhir.Parse(body)
	if err != nil {
		return fhir.ResponseEntry{}, err
	}
	return fhir.ResponseEntry{FullURL: s.FHIRBase() + "/" + st.Type + "/" + st.ID, Resource: res, Response: fhir.EntryResponse{
		Status: "200 OK", Etag: store.ETag(st.Version), LastModified: fhir.FormatInstant(st.LastUpdated)}}, nil
}

// createIfNoneExist is a conditional create (If-None-Exist) inside tx: serialized on the
// condition, it creates when nothing of the member's matches (201), returns the one match
// (200), and fails with errPrecondition (412) on several. It records in w the create, or,
// for a match, the read of the member's own resource that the reply discloses.
func (s *Server) createIfNoneExist(ctx context.Context, tx db.Querier, member directory.Member, res *fhir.Resource, condition string, w *records.Writes) (store.Stored, int, error) {
	st, status, _, err := s.matchOrCreate(ctx, tx, member, res, condition, w)
	return st, status, err
}

// matchOrCreate is createIfNoneExist that also says whether the condition matched (and
// nothing was created), for the OperationOutcome of return=OperationOutcome (wrote).
func (s *Server) matchOrCreate(ctx context.Context, tx db.Querier, member directory.Member, res *fhir.Resource, condition string,
	w *records.Writes) (st store.Stored, status int, matched bool, err error) {
	c, err := store.ParseCondition(res.ResourceType, condition)
	if err != nil {
		return store.Stored{}, 0, false, err
	}
	m, err := s.matchLocked(ctx, tx, member, c, res) // a Patient's MRN with the condition
	if err != nil {
		return store.Stored{}, 0, false, err
	}
	switch len(m) {
	case 0:
		st, status, err := s.Ingest(ctx, tx, member, res)
		if err == nil {
			written(w, st, status, false)
		}
		return st, status, false, err
	case 1:
		st, err := s.FHIR.Get(ctx, tx, res.ResourceType, m[0])
		if err == nil {
			w.Stored(audit.Read, st)
		}
		return st, http.StatusOK, true, err
	}
	return store.Stored{}, 0, false, &errPrecondition{msg: "the If-None-Exist condition matches more than one resource"}
}

// sourceWrite is the store.Write of res as member's record: labelled with its source
// (meta.source and the source-member tag), with the consent labels the rules derive
// from its codes and, when the member is a 42 CFR Part 2 program, with
// consent.Part2ProgramLabels. Every intake path (Ingest and the bundles' bulk path) builds its writes
// here, so none can skip a label.
//
// A source-member tag the client sent is dropped first: only the server says which member
// a record came from. (A meta.tag that is not an array of codings is left for the store's
// own stamp, which refuses it.)
func (s *Server) sourceWrite(member directory.Member, res *fhir.Resource, id string) store.Write {
	if r, err := res.Stamp(fhir.Stamp{DropTagSystems: []string{systemSourceMember}}); err == nil {
		res = r
	}
	w := store.Write{Resource: res, ID: id, MemberID: member.ID, At: s.Now(), Source: s.cfg.BaseURL + "/members/" + member.ID,
		Tags: []fhir.Coding{{System: systemSourceMember, Code: member.ID, Display: member.Name}}}
	w.Security = append(w.Security, ingestLabels(res)...) // consent labels by rule (exchange/consent.go)
	if member.Part2 {
		w.Security = append(w.Security, part2Labels(w.Security)...) // a Part 2 program's record, whatever its codes
	}
	return w
}

// systemSourceMember is the meta.tag system naming the member a record came from.
const systemSourceMember = "https://concord.example/fhir/source-member"

// bulkCreatable reports whether a new resource of typ can skip Ingest's per-resource
// path: Patients go through the MPI and documents through the document service. The bulk
// path repeats the rest of Ingest: compartment check, sourceWrite (source and consent
// labels) and notify.EnqueueStored.
func bulkCreatable(typ string) bool {
	return typ != "Patient" && typ != "DocumentReference" && typ != "Binary"
}

// compartmentCache memoizes compartment decisions within one transaction: resources of a
// bundle mostly point at the same Patient. The key is the reference and the element it is
// in, which is all compartment reads.
type compartmentCache map[string]string

func (s *Server) cachedCompartment(ctx context.Context, tx db.Querier, member directory.Member, res *fhir.Resource, cache compartmentCache) (string, error) {
	ref, elem, err := compartmentRef(res) // decoded once, for the key and the check
	if err != nil {
		return "", err
	}
	key := "none"
	if elem != "" {
		key = elem + "|" + ref
	}
	if id, ok := cache[key]; ok {
		return id, nil
	}
	id, err := s.resolveCompartment(ctx, tx, member, res.ResourceType, ref, elem)
	if err != nil {
		return "", err
	}
	cache[key] = id
	return id, nil
}

// idempotentReply is a response remembered under a member's idempotency key.
type idempotentReply struct {
	status   int
	location string
	body     []byte
}

// errKeyReused is an idempotency key sent again with a different request: 422, since
// answering with the first reply would silently drop the new data.
type errKeyReused struct{}

func (*errKeyReused) Error() string {
	return "the Idempotency-Key was used before with a different request"
}

// keyReused reports whether err is an errKeyReused.
func keyReused(err error) bool {
	var k *errKeyReused
	return errors.As(err, &k)
}

// writeKeyReused answers 422 with an OperationOutcome.
func writeKeyReused(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.Blob(http.StatusUnprocessableEntity, mimeFHIR, fhir.OperationOutcome(fhir.Issue{Severity: fhir.SeverityError,
		Code: fhir.IssueConflict, Diagnostics: (&errKeyReused{}).Error()}))
}

// bundleRequestHash is the SHA-256 of what a Bundle asks for (each entry's fullUrl,
// request and resource bytes), the request an idempotency key is bound to.
func bundleRequestHash(b *fhir.Bundle) []byte {
	h := sha256.New()
	for _, e := range b.Entries {
		req, _ := json.Marshal(e.Request) // a struct of strings: cannot fail
		var res []byte
		if e.Resource != nil {
			res = e.Resource.Bytes()
		}
		for _, part := range [][]byte{[]byte(e.FullURL), req, res} {
			h.Write([]byte(strconv.Itoa(len(part)) + ":"))
			h.Write(part)
		}
	}
	return h.Sum(nil)
}

// replayIdempotent serializes on the member's key in tx and returns the remembered reply,
// or nil when the key is new (or ""). A key remembered with another request (reqHash, the
// SHA-256 of the request) is errKeyReused. The caller then writes and calls
// rememberIdempotent in the same tx, so a retried request is stored at most once.
func (s *Server) replayIdempotent(ctx context.Context, tx db.Querier, memberID, key string, reqHash []byte) (*idempotentReply, error) {
	if key == "" {
		return nil, nil
	}
	if err := s.FHIR.LockConditions(ctx, tx, memberID, []string{"idempotency:" + key}); err != nil {
		return nil, err
	}
	status, loc, body, err := s.FHIR.Idempotent(ctx, tx, memberID, key)
	switch {
	case err == nil:
	case errs.CodeOf(err) == errs.NotFound:
		return nil, nil
	default:
		return nil, err
	}
	var stored []byte
	err = tx.QueryRow(ctx, `SELECT request_sha256 FROM exchange_idempotency_requests WHERE member_id = $1 AND key = $2`,
		memberID, key).Scan(&stored)
	switch {
	case err == nil && !bytes.Equal(stored, reqHash):
		return nil, &errKeyReused{}
	case err != nil && !errors.Is(err, pgx.ErrNoRows): // no row: remembered before 0047, replay
		return nil, db.Map("exchange.replayIdempotent", err)
	}
	return &idempotentReply{status: status, location: loc, body: body}, nil
}

// rememberIdempotent stores the reply to a non-empty key, and the SHA-256 of the request
// it answers, in tx.
func (s *Server) rememberIdempotent(ctx context.Context, tx db.Querier, memberID, key string, reqHash []byte, r idempotentReply) error {
	if key == "" {
		return nil
	}
	if err := s.FHIR.RememberIdempotent(ctx, tx, memberID, key, r.status, r.location, r.body); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `INSERT INTO exchange_idempotency_requests (member_id, key, request_sha256) VALUES ($1, $2, $3)`,
		memberID, key, reqHash)
	return db.Map("exchange.rememberIdempotent", err)
}
