package portal

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"html/template"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/documents"
	"github.com/concord-hie/concord/internal/errs"
)

// maxRenderBytes bounds a document the page renders itself (C-CDA, text); larger ones are
// offered as a download only.
const maxRenderBytes = 4 << 20

// DocumentCopy is one copy of a listed clinical document: one document a member sent, as
// the list of a cluster's copies shows it. Each opens on its own (Open takes ID).
type DocumentCopy struct {
	ID          string    // what Open takes
	Source      string    // the sending member's name
	Received    time.Time // when the exchange stored it
	ContentType string
	Size        int64
	Status      string // current or superseded
}

// DocumentCluster is one entry of the documents list: Item is the primary copy as the row
// shows it (Item.Copies says "3 copies from 2 organizations" when there are others), and Copies
// is every copy the viewer may see, the primary first. A patient's upload is an entry of
// its own, with Copies empty.
type DocumentCluster struct {
	Item   DocumentItem
	Copies []DocumentCopy
}

type documentsPage struct {
	Page
	Clinical  []DocumentCluster
	Uploads   []DocumentItem
	UploadKey string // one-time key of the upload form: a resubmission stores nothing new
	CanUpload bool   // the patient themself (a caregiver only reads)
	Error     string
	Uploaded  bool // the upload just succeeded
}

type documentPage struct {
	Page
	Item     DocumentItem
	Kind     string        // "ccda", "text", "pdf", "image" or "" (download only)
	HTML     template.HTML // a rendered C-CDA
	Text     string        // a plain-text document
	FileURL  string
	TooLarge bool // too large to show here; download only
}

// showDocuments lists the patient's documents from every member and their own uploads,
// with the upload form.
func (s *Server) showDocuments(c echo.Context) error {
	return s.renderDocuments(c, http.StatusOK, documentsPage{Uploaded: c.QueryParam("uploaded") == "1"})
}

func (s *Server) renderDocuments(c echo.Context, status int, p documentsPage) error {
	sess, _ := session(c)
	entries, err := s.docs.List(c.Request().Context(), s.patientViewer(c, sess))
	if err != nil {
		return err
	}
	p.Page, p.CanUpload = s.page(c, ownOr(sess, "Your documents", "'s documents")), sess.Role == RolePatient
	for _, e := range entries {
		if e.Item.Uploaded {
			p.Uploads = append(p.Uploads, e.Item)
		} else {
			p.Clinical = append(p.Clinical, e)
		}
	}
	var k [16]byte
	if _, err := rand.Read(k[:]); err != nil {
		return errs.E("portal.renderDocuments", errs.Internal, err)
	}
	p.UploadKey = base64.RawURLEncoding.EncodeToString(k[:])
	return s.render(c, status, "documents", p)
}

// showDocument shows one document: a C-CDA rendered as a page (no markup of the document's
// own survives), plain text as text, anything else as a download. It is one read of the
// document, authorized and audited before any byte is read; its content is fetched only
// when the page shows it. What the patient may not see is the 404 page.
func (s *Server) showDocument(c echo.Context) error {
	sess, _ := session(c)
	id := c.Param("id")
	f, err := s.docs.Open(c.Request().Context(), s.patientViewer(c, sess), id, func(it DocumentItem) bool {
		return documentView(it) == "text" || documentView(it) == "ccda"
	})
	if err != nil {
		return err
	}
	defer f.Close()
	p := documentPage{Page: s.page(c, f.Item.Title), Item: f.Item, FileURL: "/documents/" + id + "/file"}
	switch kind := documentView(f.Item); {
	case kind == "large":
		p.TooLarge = true
	case (kind == "text" || kind == "ccda") && f.Write != nil:
		var buf bytes.Buffer
		if err := f.Write(&buf); err != nil {
			return err
		}
		if kind == "text" {
			p.Kind, p.Text = "text", buf.String()
		} else if h, err := documents.RenderCCDA(&buf); err == nil {
			p.Kind, p.HTML = "ccda", h
		}
	default:
		p.Kind = kind
	}
	return s.render(c, http.StatusOK, "document", p)
}

// documentView is how the document page shows it: "pdf" or "image" (embedded from its file
// URL), "text" or "ccda" (read and shown on the page), "large" (too large to show here) or
// "" (offered as a download only).
func documentView(it DocumentItem) string {
	mt, _, _ := mime.ParseMediaType(it.ContentType)
	switch {
	case mt == "application/pdf":
		return "pdf"
	case strings.HasPrefix(mt, "image/"):
		return "image"
	case mt != "text/plain" && !strings.HasSuffix(mt, "xml"):
		return ""
	case it.Size > maxRenderBytes:
		return "large"
	case mt == "text/plain":
		return "text"
	}
	return "ccda"
}

// downloadDocument streams a document's bytes: images inline (for the document's page;
// sandboxed, never sniffed), everything else as an attachment under a generated name. The bytes are checked
// against their SHA-256 as they stream; on a mismatch the transfer is cut before its last
// byte.
func (s *Server) downloadDocument(c echo.Context) error {
	sess, _ := session(c)
	f, err := s.docs.Open(c.Request().Context(), s.patientViewer(c, sess), c.Param("id"), nil)
	if err != nil {
		return err
	}
	defer f.Close()
	h := c.Response().Header()
	mt, _, _ := mime.ParseMediaType(f.ContentType)
	disposition := "attachment"
	if mt == "image/png" || mt == "image/jpeg" || mt == "image/gif" {
		disposition = "inline" // shown on the document's page
	}
	h.Set("Content-Type", f.ContentType)
	h.Set("Content-Length", strconv.FormatInt(f.Size, 10))
	h.Set("Content-Disposition", mime.FormatMediaType(disposition, map[string]string{"filename": f.Filename}))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
	c.Response().WriteHeader(http.StatusOK)
	if err := f.Write(c.Response()); err != nil {
		s.log.Error("portal: document transfer cut", "request_id", requestID(c), "err", err)
		if hj, ok := c.Response().Writer.(http.Hijacker); ok {
			if conn, _, herr := hj.Hijack(); herr == nil {
				conn.Close()
			}
		}
	}
	return nil
}

// uploadDocument stores a file the patient chose as their own document. The browser's file
// name is never used. Bad files get the list page with a sentence saying why.
func (s *Server) uploadDocument(c echo.Context) error {
	sess, _ := session(c)
	fh, err := c.FormFile("file")
	if err != nil {
		return s.renderDocuments(c, http.StatusBadRequest, documentsPage{Error: "Please choose a file to upload."})
	}
	key := c.FormValue("key")
	if len(key) > 64 {
		return s.renderDocuments(c, http.StatusBadRequest, documentsPage{Error: "The form has expired. Please try again."})
	}
	file, err := fh.Open()
	if err != nil {
		return errs.E("portal.uploadDocument", errs.Invalid, err)
	}
	defer file.Close()
	err = s.docs.Upload(c.Request().Context(), s.patientViewer(c, sess), key, fh.Header.Get("Content-Type"), file)
	switch errs.CodeOf(err) {
	case errs.TooLarge:
		return s.renderDocuments(c, http.StatusRequestEntityTooLarge, documentsPage{Error: "That file is too large to upload."})
	case errs.Unsupported, errs.Invalid:
		return s.renderDocuments(c, http.StatusUnsupportedMediaType, documentsPage{Error: "That kind of file cannot be uploaded. Please upload a PDF, an image (PNG, JPEG) or a text file."})
	}
	if err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/documents?uploaded=1")
}

// documentKind names a media type for patients ("PDF", "Image", "Text", "Clinical document").
func documentKind(contentType string) string {
	mt, _, _ := mime.ParseMediaType(contentType)
	switch {
	case mt == "application/pdf":
		return "PDF"
	case strings.HasPrefix(mt, "image/"):
		return "Image"
	case mt == "text/plain" || mt == "text/markdown":
		return "Text"
	case strings.HasSuffix(mt, "xml"):
		return "Clinical document (XML)"
	}
	return "File"
}

// documentSize is n bytes for people: "812 bytes", "14 KB", "2.3 MB".
func documentSize(n int64) string {
	switch {
	case n < 1024:
		return strconv.FormatInt(n, 10) + " bytes"
	case n < 1024*1024:
		return strconv.FormatInt((n+512)/1024, 10) + " KB"
	}
	return strconv.FormatFloat(float64(n)/(1024*1024), 'f', 1, 64) + " MB"
}
