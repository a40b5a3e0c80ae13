package portal

import (
	"bytes"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"net/http"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/internal/errs"
)

// pageNames registers every page: each needs web/templates/pages/NAME.html, and every page
// file needs a registration here. newRenderer panics when they disagree.
var pageNames = []string{"landing", "labs", "enrol", "staff", "error", "access", "privacy", "officer_audit", "officer_reviews", "mfa_required", "shares", "shared", "staff_patients", "staff_patient", "messages", "message_new", "message", "documents", "document", "officer_accounting", "caregivers", "caregiver_invite", "summary", "officer_simulate", "officer_consent", "step_up", "continue"}

// Page is what every page's view model embeds; the layout reads it.
type Page struct {
	Title     string
	CSRF      string // the form token; empty when the request carries none
	RequestID string
	Viewer    *PageViewer // nil when signed out
	Flash     string
	// FreshAuth: the user signed in within the step-up window, so the highly sensitive
	// operations a page offers may go ahead; otherwise the page offers the "stepup" partial
	// (a fresh sign-in that comes back to Path) instead of their forms.
	FreshAuth bool
	Path      string // this page's path and query, for the step-up sign-in to come back to
	route     string // the matched route pattern ("/documents/:id"); "" for none
}

// navSection maps a route to the section link it belongs to, for pages reached from a
// section rather than from the navigation itself.
var navSection = map[string]string{
	"/labs/share":     "/labs",
	"/documents/:id":  "/documents",
	"/messages/new":   "/messages",
	"/messages/:id":   "/messages",
	"/caregivers":     "/privacy",
	"/staff/patients": "/staff",
}

// NavCurrent is the aria-current value of the navigation link to href: "page" on that page,
// "true" on a page within its section, "" otherwise.
func (p Page) NavCurrent(href string) string {
	switch {
	case p.route == "":
		return ""
	case p.route == href:
		return "page"
	case navSection[p.route] == href:
		return "true"
	}
	return ""
}

// PageViewer is the signed-in user as the layout shows them.
type PageViewer struct {
	Role    Role
	Name    string
	OrgName string
	// ActingFor is the patient a caregiver is viewing ("" otherwise); Grants the patients
	// the login may switch to.
	ActingFor string
	Grants    []ProxyRef
	// Notices counts a patient's unread notices (break-the-glass accesses); the layout
	// points to them on every page.
	Notices int
}

// renderer executes pages parsed once at start-up. It implements echo.Renderer.
type renderer struct {
	pages map[string]*template.Template
}

var _ echo.Renderer = (*renderer)(nil)

// newRenderer parses layout/*.html and partials/*.html once, then each page over a clone of
// them. It panics on a parse error, on a page file without a registration, and on a
// registration without a page file: both are build defects that tests catch.
func newRenderer(fsys fs.FS, names []string) *renderer {
	base := template.New("base").Funcs(template.FuncMap{
		"date":         func(t time.Time) string { return t.Format("2 Jan 2006") },
		"iso":          func(t time.Time) string { return t.Format("2006-01-02") },
		"kind":         documentKind,
		"size":         documentSize,
		"relationship": relationshipLabel,
		"btgReason":    btgReasonWords,
		"lower":        strings.ToLower,
		"dict": func(kv ...any) map[string]any {
			m := make(map[string]any, len(kv)/2)
			for i := 0; i+1 < len(kv); i += 2 {
				m[kv[i].(string)] = kv[i+1]
			}
			return m
		},
	})
	base = template.Must(base.ParseFS(fsys, "layout/*.html", "partials/*.html"))
	files, err := fs.Glob(fsys, "pages/*.html")
	if err != nil {
		panic(err)
	}
	r := &renderer{pages: map[string]*template.Template{}}
	for _, f := range files {
		name := strings.TrimSuffix(path.Base(f), ".html")
		if !slices.Contains(names, name) {
			panic(fmt.Sprintf("portal: page file %s has no registration", f))
		}
		t := template.Must(base.Clone())
		r.pages[name] = template.Must(t.ParseFS(fsys, f))
	}
	for _, n := range names {
		if r.pages[n] == nil {
			panic(fmt.Sprintf("portal: page %q is registered but pages/%s.html is missing", n, n))
		}
	}
	return r
}

// Render executes page name with data into w. It returns an error for an unknown page.
func (r *renderer) Render(w io.Writer, name string, data any, _ echo.Context) error {
	t := r.pages[name]
	if t == nil {
		return fmt.Errorf("portal: no page %q", name)
	}
	return t.ExecuteTemplate(w, "layout", data)
}

// render writes page name with status. It renders into a buffer first, so a template error
// becomes an error page rather than half a page.
func (s *Server) render(c echo.Context, status int, name string, data any) error {
	var buf bytes.Buffer
	if err := s.pages.Render(&buf, name, data, c); err != nil {
		return err
	}
	return c.HTMLBlob(status, buf.Bytes())
}

// page fills the common view model for c.
func (s *Server) page(c echo.Context, title string) Page {
	p := Page{Title: title, RequestID: requestID(c), route: c.Path(), Path: localPath(c.Request().URL.RequestURI())}
	if tok, ok := c.Get(csrfKey).(string); ok {
		p.CSRF = tok
	}
	if sess, ok := c.Get(sessionKey).(*Session); ok && sess.Role != "" {
		p.Viewer = &PageViewer{Role: sess.Role, Name: sess.Name, OrgName: sess.OrgName, ActingFor: sess.ActingFor, Grants: sess.Grants}
		p.FreshAuth = s.freshAuth(sess)
		if sess.Role == RolePatient && sess.PersonID != "" && s.privacy != nil {
			// Best effort: a page still renders when the count cannot be read.
			if n, err := s.privacy.UnseenNotices(c.Request().Context(), sess.PersonID); err == nil {
				p.Viewer.Notices = n
			} else {
				s.log.Warn("portal notices unavailable", "request_id", p.RequestID, "code", errs.CodeOf(err).String())
			}
		}
	}
	return p
}

func requestID(c echo.Context) string {
	if id := c.Response().Header().Get(echo.HeaderXRequestID); id != "" {
		return id
	}
	return c.Request().Header.Get(echo.HeaderXRequestID)
}

// statusTitle is the heading and page title of the error page for each status.
func statusTitle(status int) string {
	switch status {
	case http.StatusNotFound:
		return "Page not found"
	case http.StatusBadRequest:
		return "Request not processed"
	case http.StatusUnauthorized:
		return "Sign-in failed"
	case http.StatusForbidden:
		return "No access"
	case http.StatusServiceUnavailable:
		return "Temporarily unavailable"
	case http.StatusTooManyRequests:
		return "Too many requests"
	default:
		return "Something went wrong"
	}
}

// statusText is the one fixed sentence a page shows for each status.
func statusText(status int) string {
	switch status {
	case http.StatusNotFound:
		return "We could not find that page."
	case http.StatusBadRequest:
		return "The request could not be processed. Please go back and try again."
	case http.StatusUnauthorized:
		return "Your sign-in could not be completed. Please sign in again."
	case http.StatusForbidden:
		return "You do not have access to this. If you were sending a form, it may have expired: go back, reload the page and try again."
	case http.StatusServiceUnavailable:
		return "This service is temporarily unavailable. Nothing was shown or changed. Please try again in a few minutes."
	case http.StatusTooManyRequests:
		return "Too many requests. Please wait a minute and try again."
	default:
		return "Something went wrong on our side."
	}
}
