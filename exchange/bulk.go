package exchange

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/directory"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/errs"
	mpistore "github.com/concord-hie/concord/mpi/store"
)

// Bulk Data export (FHIR Bulk Data Access, Group level): a member system asks for the
// regional record of the patients on one of its rosters, polls, and downloads one NDJSON
// file per resource type. A job stores only what was asked and the roster at kick-off;
// each file is composed when it is downloaded, from the records as they stand then, so
// consent is decided per patient at that moment and each patient's disclosure is audited
// (as an export) before its lines are written. A consent revoked, or a patient taken off
// the roster, after kick-off keeps the patient out of every later file.

// bulkTTL is how long a job's manifest and files can be fetched after kick-off.
const bulkTTL = time.Hour

// mimeNDJSON is the media type of an export file.
const mimeNDJSON = "application/fhir+ndjson"

// ScopeBulkExport is the scope a member system must be registered with, and ask for by
// name, to kick off an export; a wildcard registration never grants it.
const ScopeBulkExport = "system/BulkExport.r"

// bulkPatientWrite is how long one patient's lines may take to reach the client; the
// deadline moves on with every patient, so a large roster is not cut by the server's
// whole-response write timeout.
const bulkPatientWrite = 30 * time.Second

// bulkDefaultTypes are the types exported when the kick-off names none (_type): the
// patient-compartment types clinics exchange (US Core). Others can be asked for by _type.
var bulkDefaultTypes = []string{
	"Patient", "AllergyIntolerance", "CarePlan", "CareTeam", "Condition", "Coverage", "Device",
	"DiagnosticReport", "DocumentReference", "Encounter", "Goal", "Immunization",
	"MedicationAdministration", "MedicationDispense", "MedicationRequest", "MedicationStatement",
	"Observation", "Procedure", "ServiceRequest",
}

// bulkJob is one kicked-off export (table bulk_exports).
type bulkJob struct {
	ID, MemberID, ClientID, GroupID, Request string
	Types                                    []string
	Since                                    *time.Time
	TransactionTime, Expires                 time.Time
	Patients                                 []string
}

// exportGroup handles GET [base]/Group/{id}/$export: the kick-off. It needs Prefer:
// respond-async, ScopeBulkExport, and read scopes for Group and for every exported type;
// _type, _since and _outputFormat (NDJSON) are understood, any other parameter is refused
// by name unless Prefer says handling=lenient, which ignores it. The group must be one of
// the caller's member's rosters (anything else is 404). The answer is 202 with
// Content-Location naming the job's status URL.
func (s *Server) exportGroup(c echo.Context) error {
	const op = "exchange.exportGroup"
	if !hasNamedScope(c, directory.BulkExportResource, 'r') {
		return errs.E(op, errs.Forbidden, "this client may not export in bulk (scope "+ScopeBulkExport+")")
	}
	if err := require(c, "Group", 'r'); err != nil {
		return err
	}
	prefer := c.Request().Header.Values("Prefer")
	if !preferHas(prefer, "respond-async") {
		return errs.E(op, errs.Invalid, "a Bulk Data kick-off needs the header Prefer: respond-async")
	}
	lenient := preferHas(prefer, "handling=lenient")
	p := principal(c)
	job := bulkJob{MemberID: p.MemberID, ClientID: p.ClientID, GroupID: c.Param("id"), Request: s.cfg.BaseURL + c.Request().URL.RequestURI()}
	q := c.QueryParams()
	for k, vs := range q {
		if len(vs) != 1 || vs[0] == "" {
			return errs.E(op, errs.Invalid, "give "+k+" once, with a value")
		}
		switch k {
		case "_type":
			for _, t := range strings.Split(vs[0], ",") {
				if !fhir.IsResourceType(t) {
					return errs.E(op, errs.Invalid, "_type names an unknown resource type")
				}
				if !p.Scopes.Allows(t, 'r') {
					return errs.E(op, errs.Forbidden, "the access token's scopes do not allow reading "+t)
				}
				if !slices.Contains(job.Types, t) {
					job.Types = append(job.Types, t)
				}
			}
		case "_since":
			// An unencoded "+" of a time zone offset arrives as a space.
			t, err := time.Parse(time.RFC3339Nano, strings.ReplaceAll(vs[0], " ", "+"))
			if err != nil {
				return errs.E(op, errs.Invalid, "_since must be an instant (YYYY-MM-DDThh:mm:ss+zz:zz)")
			}
			job.Since = &t
		case "_outputFormat":
			switch vs[0] {
			case mimeNDJSON, "application/ndjson", "ndjson":
			default:
				return errs.E(op, errs.Unsupported, "_outputFormat: only application/fhir+ndjson is produced")
			}
		default:
			if !lenient {
				return errs.E(op, errs.Invalid, k+" is not supported by this server's $export (supported: _type, _since, _outputFormat)")
			}
		}
	}
	if job.Types == nil {
		for _, t := range bulkDefaultTypes {
			if p.Scopes.Allows(t, 'r') {
				job.Types = append(job.Types, t)
			}
		}
	}
	ctx := c.Request().Context()
	patients, err := s.Notify.Roster(ctx, s.Pool, p.MemberID, job.GroupID)
	if err != nil {
		if errs.CodeOf(err) == errs.NotFound {
			return errs.E(op, errs.NotFound, "resource not found")
		}
		return err
	}
	job.Patients, job.ID = patients, store.NewID() // 32 hex digits, as ownBulkJob expects
	job.TransactionTime = s.Now().UTC().Truncate(time.Millisecond)
	job.Expires = job.TransactionTime.Add(bulkTTL)
	if err := s.putBulkJob(ctx, job); err != nil {
		return err
	}
	c.Response().Header().Set("Content-Location", s.FHIRBase()+"/$export-status/"+job.ID)
	return c.NoContent(http.StatusAccepted)
}

// exportStatus handles GET [base]/$export-status/{job}: the complete manifest (files are
// composed on download, so a job is ready as soon as it exists). Only the client that
// kicked the job off sees it; anyone else, and everyone after it expired, gets 404.
func (s *Server) exportStatus(c echo.Context) error {
	job, err := s.ownBulkJob(c)
	if err != nil {
		return err
	}
	type file struct {
		Type string `json:"type"`
		URL  string `json:"url"`
	}
	m := struct {
		TransactionTime     string `json:"transactionTime"`
		Request             string `json:"request"`
		RequiresAccessToken bool   `json:"requiresAccessToken"`
		Output              []file `json:"output"`
		Error               []file `json:"error"`
	}{TransactionTime: fhir.FormatInstant(job.TransactionTime), Request: job.Request, RequiresAccessToken: true,
		Output: []file{}, Error: []file{}}
	for _, t := range job.Types {
		m.Output = append(m.Output, file{Type: t, URL: s.FHIRBase() + "/$export-file/" + job.ID + "/" + t})
	}
	c.Response().Header().Set("Expires", job.Expires.Format(http.TimeFormat))
	return c.JSON(http.StatusOK, m)
}

// cancelExport handles DELETE [base]/$export-status/{job}: the job and its files are gone
// (202), for the client that kicked it off.
func (s *Server) cancelExport(c echo.Context) error {
	job, err := s.ownBulkJob(c)
	if err != nil {
		return err
	}
	if _, err := s.Pool.Exec(c.Request().Context(), `DELETE FROM bulk_exports WHERE id = $1`, job.ID); err != nil {
		return errs.E("exchange.cancelExport", errs.Unavailable, "could not cancel the export", err)
	}
	return c.NoContent(http.StatusAccepted)
}

// exportFile handles GET [base]/$export-file/{job}/{type}: the NDJSON file of one type
// (whatever the Accept header says: there is one format). For each person behind the
// Patients that were on the roster at kick-off and still are (each person once), the
// person's consent-filtered regional resources of the type updated after _since are
// decided and audited now, then written one per line. A failure before the first byte is
// an OperationOutcome; after it, the connection is cut so the client cannot take a short
// file for a whole one.
func (s *Server) exportFile(c echo.Context) error {
	const op = "exchange.exportFile"
	job, err := s.ownBulkJob(c)
	if err != nil {
		return err
	}
	// The member may have taken patients off the roster, or deleted it, since kick-off.
	current, err := s.Notify.Roster(c.Request().Context(), s.Pool, job.MemberID, job.GroupID)
	if errs.CodeOf(err) == errs.NotFound {
		return errs.E(op, errs.NotFound, "resource not found")
	}
	if err != nil {
		return err
	}
	onRoster := make(map[string]bool, len(current))
	for _, pid := range current {
		onRoster[pid] = true
	}
	job.Patients = slices.DeleteFunc(job.Patients, func(pid string) bool { return !onRoster[pid] })
	typ := c.Param("type")
	if !slices.Contains(job.Types, typ) {
		return errs.E(op, errs.NotFound, "resource not found")
	}
	if !principal(c).Scopes.Allows(typ, 'r') {
		return errs.E(op, errs.Forbidden, "the access token's scopes do not allow reading "+typ)
	}
	var since time.Time
	if job.Since != nil {
		since = *job.Since
	}
	ctx := c.Request().Context()
	v := viewer(c)
	seen := map[mpistore.PersonID]bool{}
	started := false
	rc := http.NewResponseController(c.Response().Writer)
	var line bytes.Buffer
	for _, pid := range job.Patients {
		src, err := s.MPI.SourceByPatient(ctx, nil, pid)
		if errs.CodeOf(err) == errs.NotFound || (err == nil && src.MemberID != job.MemberID) {
			continue // no longer one of the member's patients (deleted, merged away)
		}
		if err == nil && seen[src.PersonID] {
			continue
		}
		var sts []store.Stored
		if err == nil {
			seen[src.PersonID] = true
			sts, err = s.Records.ExportBulk(ctx, v, string(src.PersonID), typ, since)
		}
		_ = rc.SetWriteDeadline(time.Now().Add(bulkPatientWrite))
		if err != nil {
			if !started {
				return err
			}
			s.Log.Error("bulk export file cut short", "job", job.ID, "type", typ, "err", errs.CodeOf(err).String())
			panic(http.ErrAbortHandler)
		}
		for _, st := range sts {
			if !started {
				c.Response().Header().Set(echo.HeaderContentType, mimeNDJSON)
				c.Response().WriteHeader(http.StatusOK)
				started = true
			}
			line.Reset()
			if err := json.Compact(&line, st.Body); err != nil {
				s.Log.Error("bulk export: stored body is not JSON", "job", job.ID, "type", typ)
				panic(http.ErrAbortHandler)
			}
			line.WriteByte('\n')
			if _, err := c.Response().Write(line.Bytes()); err != nil {
				return nil // the client went away
			}
		}
	}
	if !started {
		c.Response().Header().Set(echo.HeaderContentType, mimeNDJSON)
		return c.NoContent(http.StatusOK)
	}
	return nil
}

// putBulkJob stores job and deletes jobs that have expired.
func (s *Server) putBulkJob(ctx context.Context, job bulkJob) error {
	const op = "exchange.putBulkJob"
	b := &pgx.Batch{}
	b.Queue(`DELETE FROM bulk_exports WHERE expires < $1`, job.TransactionTime)
	b.Queue(`INSERT INTO bulk_exports (id, member_id, client_id, group_id, request, types, since, transaction_time, patients, expires)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`, job.ID, job.MemberID, job.ClientID, job.GroupID, job.Request,
		job.Types, job.Since, job.TransactionTime, job.Patients, job.Expires)
	if err := s.Pool.SendBatch(ctx, b).Close(); err != nil {
		return errs.E(op, errs.Unavailable, "could not store the export", err)
	}
	return nil
}

// ownBulkJob loads the job named by the path for the calling client. A job that does not
// exist, has expired, or was kicked off by another client or member is errs.NotFound.
func (s *Server) ownBulkJob(c echo.Context) (bulkJob, error) {
	const op = "exchange.bulkJob"
	// Every step of an export needs the bulk scope, not only the kick-off: another token
	// of the same client without it gets no manifest and no file.
	if !hasNamedScope(c, directory.BulkExportResource, 'r') {
		return bulkJob{}, errs.E(op, errs.Forbidden, "this client may not export in bulk (scope "+ScopeBulkExport+")")
	}
	notFound := errs.E(op, errs.NotFound, "resource not found")
	id := c.Param("job")
	if _, err := hex.DecodeString(id); err != nil || len(id) != 32 {
		return bulkJob{}, notFound
	}
	var j bulkJob
	err := s.Pool.QueryRow(c.Request().Context(), `SELECT id, member_id, client_id, group_id, request, types, since,
		transaction_time, patients, expires FROM bulk_exports WHERE id = $1`, id).Scan(&j.ID, &j.MemberID,
		&j.ClientID, &j.GroupID, &j.Request, &j.Types, &j.Since, &j.TransactionTime, &j.Patients, &j.Expires)
	if errors.Is(err, pgx.ErrNoRows) {
		return bulkJob{}, notFound
	}
	if err != nil {
		return bulkJob{}, errs.E(op, errs.Unavailable, "could not read the export", err)
	}
	p := principal(c)
	if j.ClientID != p.ClientID || j.MemberID != p.MemberID || !s.Now().Before(j.Expires) {
		return bulkJob{}, notFound
	}
	return j, nil
}
