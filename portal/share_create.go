package portal

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"slices"
	"strings"
	"unicode"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/internal/errs"
)

// shareTokenBytes is a link token's length: 256 bits from crypto/rand.
const shareTokenBytes = 32

// maxShareNote bounds the note, in characters.
const maxShareNote = 200

// shareForm is the "Create a share link" form.
type shareForm struct {
	What   string // "all" or "one"
	Result string // the result's ID when What is "one"
	For    string // a shareDurations value
	Note   string // who it is for, in the patient's words; optional
	// Sensitive includes sensitive results in a link of all results (a box left unticked
	// by default); Validate clears it for a link of one result.
	Sensitive bool
	// ResultSensitive is set by Validate for a link of one result: the result is sensitive
	// now, so the link is made to show sensitive data. A link made for a result that was
	// not sensitive shows nothing once a member labels it sensitive.
	ResultSensitive bool
}

// includeSensitive is what the link records as ShareLink.IncludeSensitive.
func (f shareForm) includeSensitive() bool { return f.Sensitive || f.ResultSensitive }

// Validate checks f against the patient's own results and returns the sentence to show,
// or "" when f is good. It trims the note and drops control characters from it, and sets
// ResultSensitive for a link of one result from that result.
func (f *shareForm) Validate(choices []shareChoice) string {
	f.Note = strings.TrimSpace(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, f.Note))
	switch f.What {
	case "all":
		f.Result, f.ResultSensitive = "", false
	case "one":
		f.Sensitive, f.ResultSensitive = false, false
		i := slices.IndexFunc(choices, func(ch shareChoice) bool { return ch.ID == f.Result })
		if i < 0 {
			return "Please choose the lab result to share."
		}
		f.ResultSensitive = choices[i].Sensitive
	default:
		return "Please choose what to share."
	}
	if durationOf(f.For) == nil {
		return "Please choose how long the link works: 1 hour, 1 day or 7 days."
	}
	if len([]rune(f.Note)) > maxShareNote {
		return "Please keep the note to 200 characters."
	}
	return ""
}

func durationOf(v string) *shareDuration {
	for i := range shareDurations {
		if shareDurations[i].Value == v {
			return &shareDurations[i]
		}
	}
	return nil
}

// createShareLink makes a link from the form and shows it once. The token is never
// stored: the link table keeps its SHA-256, and the page that shows it is answered directly
// (no redirect through the session) with no-store.
func (s *Server) createShareLink(c echo.Context) error {
	sess, _ := session(c)
	ctx := c.Request().Context()
	f := shareForm{What: c.FormValue("what"), Result: c.FormValue("result"), For: c.FormValue("for"), Note: c.FormValue("note"),
		Sensitive: c.FormValue("sensitive") == "yes"}
	p := sharePage{Page: s.page(c, "Share your lab results"), Form: f}
	labs, err := s.records.Labs(ctx, s.patientViewer(c, sess), sess.PersonID)
	if err != nil {
		return err
	}
	if msg := p.Form.Validate(shareChoices(labs, s.cfg.Location)); msg != "" {
		p.Error = msg
		return s.renderShares(c, http.StatusBadRequest, p)
	}
	var raw [shareTokenBytes]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return errs.E("portal.createShareLink", errs.Internal, err)
	}
	token := base64.RawURLEncoding.EncodeToString(raw[:])
	sum := sha256.Sum256([]byte(token))
	now := s.now()
	l := ShareLink{PersonID: sess.PersonID, ResourceID: p.Form.Result, IncludeSensitive: p.Form.includeSensitive(), Note: p.Form.Note, FirstName: firstName(sess.Name),
		CreatedBy: sess.Issuer + "|" + sess.Subject, Created: now, Expires: now.Add(durationOf(p.Form.For).D)}
	if _, err := s.shares.CreateShareLink(ctx, s.patientViewer(c, sess), l, sum[:]); err != nil {
		if errs.Is(err, errs.Conflict) {
			p.Error = "You have as many active links as allowed. Revoke one you no longer need, then try again."
			return s.renderShares(c, http.StatusBadRequest, p)
		}
		return err
	}
	p.NewURL = s.cfg.BaseURL + "/share/" + token
	p.NewExpiry = l.Expires.In(s.cfg.Location)
	p.Form = shareForm{What: "all", For: "1d"}
	return s.renderShares(c, http.StatusOK, p)
}

// firstName is the first word of a display name, "" for none.
func firstName(name string) string {
	if f := strings.Fields(name); len(f) > 0 {
		return f[0]
	}
	return ""
}
