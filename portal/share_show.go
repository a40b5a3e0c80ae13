package portal

import (
	"net/http"
	"sort"
	"time"

	"github.com/labstack/echo/v4"
)

// shareDurations are the lifetimes a patient may give a link, by form value.
var shareDurations = []shareDuration{
	{"1h", "1 hour", time.Hour},
	{"1d", "1 day", 24 * time.Hour},
	{"7d", "7 days", 7 * 24 * time.Hour},
}

type shareDuration struct {
	Value string
	Label string
	D     time.Duration
}

type sharePage struct {
	Page
	Choices   []shareChoice // the patient's lab results, one per result, newest first
	Durations []shareDuration
	Form      shareForm
	Error     string
	NewURL    string // the link just created, shown once; "" otherwise
	NewExpiry time.Time
	Links     []shareRow
}

// shareChoice is one lab result a link may name.
type shareChoice struct {
	ID        string
	Label     string // "Glucose 7.9 mmol/L, 14 Sep 2026"
	Sensitive bool   // LabResult.Sensitive: a link made for it includes sensitive data
}

// shareRow is one active link in the patient's list.
type shareRow struct {
	ID       int64
	What     string
	Note     string
	Created  time.Time
	Expires  time.Time
	Uses     int
	LastUsed time.Time
}

// showShares is "Share your lab results": the form that makes a link, and the patient's
// active links with expiry, use count and a Revoke button.
func (s *Server) showShares(c echo.Context) error {
	p := sharePage{Page: s.page(c, "Share your lab results"), Form: shareForm{What: "all", For: "1d"}}
	p.Flash = s.takeFlash(c)
	return s.renderShares(c, http.StatusOK, p)
}

// renderShares fills the patient's choices and active links into p and renders it.
func (s *Server) renderShares(c echo.Context, status int, p sharePage) error {
	sess, _ := session(c)
	ctx := c.Request().Context()
	labs, err := s.records.Labs(ctx, s.patientViewer(c, sess), sess.PersonID)
	if err != nil {
		return err
	}
	links, err := s.shares.ActiveShareLinks(ctx, sess.PersonID, s.now())
	if err != nil {
		return err
	}
	p.Durations = shareDurations
	p.Choices = shareChoices(labs, s.cfg.Location)
	labels := map[string]string{}
	for _, ch := range p.Choices {
		labels[ch.ID] = ch.Label
	}
	for _, l := range links {
		what := "All your lab results except sensitive ones"
		if l.IncludeSensitive {
			what = "All your lab results, sensitive ones included"
		}
		if l.ResourceID != "" {
			what = labels[l.ResourceID]
			if what == "" {
				what = "One lab result"
			}
		}
		r := shareRow{ID: l.ID, What: what, Note: l.Note, Created: l.Created.In(s.cfg.Location),
			Expires: l.Expires.In(s.cfg.Location), Uses: l.Uses}
		if !l.LastUsed.IsZero() {
			r.LastUsed = l.LastUsed.In(s.cfg.Location)
		}
		p.Links = append(p.Links, r)
	}
	return s.render(c, status, "shares", p)
}

// patientViewer is the signed-in patient as Records needs them.
func (s *Server) patientViewer(c echo.Context, sess *Session) Viewer {
	v := Viewer{PersonID: sess.PersonID, Role: sess.Role, Actor: sess.Issuer + "|" + sess.Subject,
		RequestID: requestID(c), SourceIP: c.RealIP()}
	if g, ok := c.Get(proxyGrantKey).(ProxyGrant); ok && sess.Role == RoleProxy {
		v.ProxySensitive = g.IncludeSensitive
	}
	return v
}

// shareChoices lists results with an ID, newest first, labelled as the labs page shows them
// (labShown): a result entered in error is no choice, and a cancelled one has no value.
func shareChoices(labs []LabResult, loc *time.Location) []shareChoice {
	sorted := make([]LabResult, 0, len(labs))
	for _, r := range labs {
		if r, ok := labShown(r); ok && r.ID != "" {
			sorted = append(sorted, r)
		}
	}
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Effective.After(sorted[j].Effective) })
	var out []shareChoice
	for _, r := range sorted {
		name := r.Display
		if name == "" {
			name = r.Code
		}
		label := name
		if r.Value != "" {
			label += " " + r.Value
		}
		if r.Unit != "" {
			label += " " + r.Unit
		}
		if r.Status == "cancelled" {
			label += " (cancelled)"
		}
		if !r.Effective.IsZero() {
			label += ", " + r.Effective.In(loc).Format("2 Jan 2006")
		}
		out = append(out, shareChoice{ID: r.ID, Label: label, Sensitive: r.Sensitive})
	}
	return out
}
