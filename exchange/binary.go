package exchange

import (
	"errors"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/documents"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/internal/httpx"
	"github.com/concord-hie/concord/records"
)

// readBinary handles GET [base]/Binary/{id} (MHD ITI-68). The token needs read scopes for
// both Binary and DocumentReference (403 otherwise, before any lookup). The read is decided through the
// enforcement point as a read of the Binary's DocumentReference (or, for a Binary no
// document names yet, of the Binary itself, which only its sender may read) before the
// object store is touched; whatever the caller may not see is a 404 like an unknown id,
// after its audit event committed. A permitted read's object is opened while its audit
// event commits, and not one byte or header of the answer leaves before that event is
// durable (503 if it cannot be written). The bytes then stream from S3 through a SHA-256 check: ETag is the
// quoted SHA-256, Range gives 206, and on a hash mismatch the connection is cut before the
// last byte, so no complete 200 or 206 carries corrupted content.
func (s *Server) readBinary(c echo.Context) error {
	const op = "exchange.readBinary"
	// Both scopes before any lookup: the bytes are a document's content, and a refusal that
	// came after the lookup would tell existing ids from unknown ones.
	if err := require(c, "Binary", 'r'); err != nil {
		return err
	}
	if err := require(c, "DocumentReference", 'r'); err != nil {
		return err
	}
	ctx := c.Request().Context()
	id := c.Param("id")
	cont, err := s.Documents.Content(ctx, id)
	if err != nil {
		if errs.CodeOf(err) == errs.Unavailable { // a database outage is not "absent"
			return errs.E(op, err)
		}
		return errs.E(op, errs.NotFound, "resource not found", err)
	}
	v := viewer(c)
	var d *records.Disclosure
	switch {
	case cont.PersonID != "": // a patient's own upload is served by the portal, not here
		if err := s.Records.AuditRefusal(ctx, v, audit.Read, cont.PersonID, "patient-upload", "",
			audit.Resource{Type: "Binary", ID: id}); err != nil {
			return err
		}
		return errs.E(op, errs.NotFound, "resource not found")
	case cont.DocumentID != "":
		d, err = s.Records.ReadPending(ctx, v, "DocumentReference", cont.DocumentID)
	default:
		d, err = s.Records.ReadPending(ctx, v, "Binary", cont.BinaryID)
	}
	if err != nil {
		return err // a denial is a 404 here, before the object store is touched
	}

	req, h := c.Request(), c.Response().Header()
	etag := `"` + cont.Key + `"`
	presigned := s.cfg.PresignTTL > 0 && d.Part2 == nil && preferPresigned(req.Header)
	match := req.Header.Get("If-None-Match")
	notModified := match != "" && (match == etag || match == "W/"+etag)
	rng, partial, rangeOK := parseRange(req.Header.Get("Range"), cont.Size)
	// The read is permitted and its audit event is committing: the object is opened
	// meanwhile (S3's latency overlaps the commit's), and nothing leaves before Wait.
	var tr *documents.Transfer
	var openErr error
	if !presigned && !notModified && rangeOK {
		tr, openErr = s.Documents.Open(ctx, cont, audit.Event{Actor: v.Actor, Client: v.Client, Org: v.Org, Role: v.Role,
			Purpose: v.Purpose, TokenID: v.TokenID, RequestID: v.RequestID, SourceIP: v.SourceIP})
	}
	if tr != nil {
		defer tr.Close()
	}
	if err := d.Wait(); err != nil {
		return err
	}
	if d.Part2 != nil { // a Part 2 document: the §2.32 notice and its consent travel in headers
		s.setPart2Headers(h, *d.Part2)
	}
	h.Set("ETag", etag)
	h.Set("Cache-Control", "no-store")
	switch {
	case presigned:
		return s.redirectPresigned(c, cont)
	case notModified:
		return c.NoContent(http.StatusNotModified)
	case !rangeOK:
		h.Set("Content-Range", "bytes */"+strconv.FormatInt(cont.Size, 10))
		return c.NoContent(http.StatusRequestedRangeNotSatisfiable)
	case openErr != nil:
		return openErr
	}
	n := rng.Len(cont.Size)
	h.Set("Content-Type", cont.ContentType)
	h.Set("Content-Length", strconv.FormatInt(n, 10))
	h.Set("Accept-Ranges", "bytes")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": cont.Filename()}))
	status := http.StatusOK
	if partial {
		status = http.StatusPartialContent
		h.Set("Content-Range", "bytes "+strconv.FormatInt(rng.Start, 10)+"-"+strconv.FormatInt(rng.Start+n-1, 10)+"/"+strconv.FormatInt(cont.Size, 10))
	}
	c.Response().WriteHeader(status)
	if err := tr.WriteRange(c.Response(), rng); err != nil {
		httpx.LogError(s.Log, c, http.StatusInternalServerError, err)
		cut(c)
	}
	return nil
}

// preferPresigned reports whether the caller asked for the presigned mode: a Prefer header
// with the token presigned-url.
func preferPresigned(h http.Header) bool { return preferHas(h.Values("Prefer"), "presigned-url") }

// redirectPresigned answers an authorized, audited retrieval with 303 See Other to a
// presigned S3 URL valid for PresignTTL, when the caller prefers it and the mode is on.
// The trade-off, documented in the README: the bytes no longer pass through Concord, so
// their SHA-256 is not checked on the way (the ETag lets the caller check it), and the link
// works for whoever holds it until it expires — consent revoked meanwhile does not stop
// it. A Part 2 document is never redirected: its §2.32 notice must travel with the bytes.
func (s *Server) redirectPresigned(c echo.Context, cont documents.Content) error {
	u, err := s.Documents.PresignedURL(c.Request().Context(), cont, s.cfg.PresignTTL)
	if err != nil {
		return err
	}
	h := c.Response().Header()
	h.Set("Expires", s.Now().Add(s.cfg.PresignTTL).UTC().Format(http.TimeFormat))
	h.Set("Referrer-Policy", "no-referrer")
	return c.Redirect(http.StatusSeeOther, u.String())
}

// cut ends a response whose body must not complete: the connection is closed under it,
// so the client sees fewer bytes than Content-Length.
func cut(c echo.Context) {
	conn, _, err := http.NewResponseController(c.Response().Writer).Hijack()
	if err == nil {
		conn.Close()
		return
	}
	if !errors.Is(err, http.ErrNotSupported) {
		return // already hijacked or closed
	}
	panic(http.ErrAbortHandler) // HTTP/2: reset the stream
}

// parseRange reads a single "bytes=a-b", "bytes=a-" or "bytes=-n" range. Without a usable
// single range (none, several, or not bytes) it selects the whole object; ok is false only
// for a well-formed range that the object cannot satisfy (416).
func parseRange(h string, size int64) (rng documents.ByteRange, partial, ok bool) {
	whole := documents.ByteRange{Start: 0, End: -1}
	spec, found := strings.CutPrefix(h, "bytes=")
	if !found || strings.Contains(spec, ",") {
		return whole, false, true
	}
	a, b, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return whole, false, true
	}
	if a == "" { // suffix: the last b bytes
		k, err := strconv.ParseInt(b, 10, 64)
		if err != nil || k < 0 {
			return whole, false, true
		}
		if k == 0 {
			return whole, false, false
		}
		return documents.ByteRange{Start: max(size-k, 0), End: size - 1}, true, true
	}
	start, err := strconv.ParseInt(a, 10, 64)
	if err != nil || start < 0 {
		return whole, false, true
	}
	end := int64(-1)
	if b != "" {
		if end, err = strconv.ParseInt(b, 10, 64); err != nil || end < start {
			return whole, false, true
		}
	}
	if start >= size {
		return whole, false, false
	}
	return documents.ByteRange{Start: start, End: end}, true, true
}
