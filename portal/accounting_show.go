package portal

import (
	"context"
	"encoding/csv"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/audit"
)

// accountingYears is the look-back of an accounting of disclosures (45 CFR 164.528).
const accountingYears = 6

type accountingPage struct {
	Page
	Patient  string
	From, To string // YYYY-MM-DD as entered (or the defaults)
	Error    string
	Rows     []accountingRow
	Searched bool
	Capped   bool
	CSV      string // the same report as CSV
}

// accountingRow is one disclosure as the report shows it.
type accountingRow struct {
	Time       time.Time
	Recipient  string
	Actor      string // the receiving login or system as recorded ("issuer|subject"), for the CSV
	User       string // Actor as the page shows it: the subject, issuer on hover (UserFrom)
	UserFrom   string
	Purpose    string
	Data       string
	Action     string
	BreakGlass bool
	ShareLink  bool
	RequestID  string
}

// showOfficerAccounting is the officer's accounting of disclosures for one person over a
// period (default: the last six years), on the page or as CSV (format=csv). Each report
// run is audited before it is shown (Privacy.Accounting).
func (s *Server) showOfficerAccounting(c echo.Context) error {
	q := c.QueryParams()
	p := accountingPage{Page: s.page(c, "Accounting of disclosures"), Patient: strings.TrimSpace(q.Get("patient")),
		From: strings.TrimSpace(q.Get("from")), To: strings.TrimSpace(q.Get("to"))}
	if p.From == "" && p.To == "" {
		now := s.now().In(s.cfg.Location)
		p.From, p.To = now.AddDate(-accountingYears, 0, 0).Format("2006-01-02"), now.Format("2006-01-02")
	}
	if p.Patient == "" {
		return s.render(c, http.StatusOK, "officer_accounting", p)
	}
	from, to, ok := parseDateRange(p.From, p.To, s.cfg.Location)
	switch {
	case !ok:
		p.Error = "Enter dates as year-month-day, the first not after the second."
	case len(p.Patient) > 64:
		p.Error = "The person ID is too long."
	}
	if p.Error != "" {
		return s.render(c, http.StatusBadRequest, "officer_accounting", p)
	}
	v := staffViewer(c)
	return s.accounting(c, v, p, from, to, q.Get("format") == "csv")
}

// downloadOwnAccounting gives the signed-in patient the accounting of disclosures of their
// own record over the last six years, as CSV.
func (s *Server) downloadOwnAccounting(c echo.Context) error {
	sess, _ := session(c)
	now := s.now()
	return s.accounting(c, s.patientViewer(c, sess), accountingPage{Patient: sess.PersonID}, now.AddDate(-accountingYears, 0, 0), now, true)
}

// accounting reads the report for p.Patient (audited by Privacy) and renders it, as CSV when
// asCSV.
func (s *Server) accounting(c echo.Context, v Viewer, p accountingPage, from, to time.Time, asCSV bool) error {
	ctx := c.Request().Context()
	names, err := s.privacy.MemberNames(ctx)
	if err != nil {
		return err
	}
	rows, err := s.privacy.Accounting(ctx, v, p.Patient, from, to)
	if err != nil {
		return err
	}
	p.Searched, p.Capped = true, len(rows) >= 10000
	if limitedCaregiver(v) {
		if rows, err = s.screenAccounting(ctx, p.Patient, rows); err != nil {
			return err
		}
	}
	for _, r := range rows {
		p.Rows = append(p.Rows, accountingRowOf(r, names, s.cfg.Location))
	}
	if !asCSV {
		u := c.Request().URL.Query()
		u.Set("format", "csv")
		p.CSV = "/officer/accounting?" + u.Encode()
		return s.render(c, http.StatusOK, "officer_accounting", p)
	}
	h := c.Response().Header()
	h.Set("Content-Type", "text/csv; charset=utf-8")
	h.Set("Content-Disposition", `attachment; filename="accounting-of-disclosures.csv"`)
	h.Set("X-Content-Type-Options", "nosniff")
	c.Response().WriteHeader(http.StatusOK)
	w := csv.NewWriter(c.Response())
	_ = w.Write([]string{"date", "recipient", "recipient_user", "purpose", "data", "action", "break_glass", "share_link", "request_id"})
	for _, r := range p.Rows {
		_ = w.Write(csvSafe(r.Time.Format(time.RFC3339), r.Recipient, r.Actor, r.Purpose, r.Data, r.Action,
			strconv.FormatBool(r.BreakGlass), strconv.FormatBool(r.ShareLink), r.RequestID))
	}
	w.Flush()
	return w.Error()
}

// screenAccounting returns rows as a caregiver without sensitive access may see them:
// the disclosures screenAccesses hides are left out, and the sensitive resources of the
// others are left out of their data classes and item counts.
func (s *Server) screenAccounting(ctx context.Context, personID string, rows []audit.DisclosureRow) ([]audit.DisclosureRow, error) {
	return screenRows(ctx, s, personID, rows, func(r audit.DisclosureRow) int64 { return r.Seq },
		func(r *audit.DisclosureRow, sc accessScreen) { r.DataClasses, r.Resources = sc.classes, sc.count })
}

func accountingRowOf(r audit.DisclosureRow, names map[string]string, loc *time.Location) accountingRow {
	row := accountingRow{Time: r.Time.In(loc), Actor: r.Actor, Purpose: thirdPerson(purposeWords(r.Purpose)), Action: actionWords(r.Action),
		BreakGlass: r.BreakGlass, ShareLink: r.ShareLink, RequestID: r.RequestID}
	switch {
	case r.ShareLink:
		row.Recipient = "Holder of a share link the patient made"
	case r.Recipient != "" && names[r.Recipient] != "":
		row.Recipient = names[r.Recipient]
	case r.Recipient != "":
		row.Recipient = r.Recipient
	default:
		row.Recipient = "The patient (or their proxy)"
	}
	row.UserFrom, row.User = splitActor(r.Actor)
	row.Data = thirdPerson(classWords(r.DataClasses))
	if r.Resources > 1 {
		row.Data += " (" + strconv.Itoa(r.Resources) + " items)"
	}
	return row
}

// csvSafe guards cells a spreadsheet would run as a formula (=, +, -, @, tab, CR).
func csvSafe(cells ...string) []string {
	for i, c := range cells {
		if c != "" && strings.ContainsRune("=+-@\t\r", rune(c[0])) {
			cells[i] = "'" + c
		}
	}
	return cells
}
