package portal

import (
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/consent"
)

type labsPage struct {
	Page
	Tests    []labTest
	CanShare bool // share links are offered
}

// labTest is one test (by code) with its results, newest first.
type labTest struct {
	Code    string
	Display string
	Unit    string
	Latest  time.Time
	Rows    []labRow
	Trend   *trend // nil with fewer than two numeric results
}

type labRow struct {
	Value     string
	Unit      string
	RefRange  string
	Flag      string // the HL7 interpretation code
	FlagLabel string // "High", "Low", ...; "" when normal or unknown
	Abnormal  bool
	Effective time.Time
	Status    string // in words, shown only when not final ("Preliminary, may change")
	Source    string // the source member's name (its ID when the name is unknown)
	Part2     bool   // a 42 CFR Part 2 record disclosed to a non-patient (see LabResult.Part2)
	state     string // the FHIR Observation.status, for newTrend
}

// showLabs lists the patient's lab results grouped by test, each labelled with its source.
func (s *Server) showLabs(c echo.Context) error {
	sess, _ := session(c)
	v := s.patientViewer(c, sess)
	res, err := s.records.Labs(c.Request().Context(), v, sess.PersonID)
	if err != nil {
		return err
	}
	p := labsPage{Page: s.page(c, ownOr(sess, "Your lab results", "'s lab results")), Tests: groupLabs(res, s.cfg.Location), CanShare: s.shares != nil && s.shared != nil && sess.Role == RolePatient}
	return s.render(c, http.StatusOK, "labs", p)
}

// groupLabs groups results by code (by display name when a result has no code), orders each
// group newest first, and orders groups by their newest result. It shows each result as
// labShown does, so one entered in error is in no group.
func groupLabs(res []LabResult, loc *time.Location) []labTest {
	byKey := map[string]*labTest{}
	var order []string
	for _, r := range res {
		r, ok := labShown(r)
		if !ok {
			continue
		}
		key := r.Code
		if key == "" {
			key = "display:" + strings.ToLower(r.Display)
		}
		t := byKey[key]
		if t == nil {
			t = &labTest{Code: r.Code, Display: r.Display, Unit: r.Unit}
			byKey[key] = t
			order = append(order, key)
		}
		if t.Display == "" {
			t.Display = r.Display
		}
		flag := strings.ToUpper(strings.TrimSpace(r.Flag))
		label, abnormal := flagLabel(flag)
		src := r.SourceMemberName
		if src == "" {
			src = r.SourceMember
		}
		status := labStatusWords(r.Status)
		t.Rows = append(t.Rows, labRow{
			Value: r.Value, Unit: r.Unit, RefRange: r.RefRange, Flag: flag, FlagLabel: label, Abnormal: abnormal,
			Effective: r.Effective.In(loc), Status: status, Source: src, Part2: r.Part2, state: r.Status,
		})
	}
	tests := make([]labTest, 0, len(order))
	for _, k := range order {
		t := byKey[k]
		sort.SliceStable(t.Rows, func(i, j int) bool { return t.Rows[i].Effective.After(t.Rows[j].Effective) })
		t.Latest = t.Rows[0].Effective
		if t.Display == "" {
			t.Display = t.Code
		}
		t.Trend = newTrend(t.Rows)
		tests = append(tests, *t)
	}
	sort.SliceStable(tests, func(i, j int) bool {
		if !tests[i].Latest.Equal(tests[j].Latest) {
			return tests[i].Latest.After(tests[j].Latest)
		}
		return tests[i].Display < tests[j].Display
	})
	return tests
}

// labShown returns r as every lab view shows it (the labs, share-link and clinician pages,
// their trends and the share choices), and false when none may show it at all:
//   - entered-in-error: the result was never valid, so it is left out everywhere, as
//     documents entered in error are (cmd/concord portal_documents.go). Showing it, even
//     struck through, would put a wrong value and its flag in front of the reader.
//   - cancelled: the test was not done or not completed, so there is no result. The row is
//     shown with its status words ("Cancelled, no result") so the reader knows the test was
//     ordered; any value, unit or flag a sender left on it is dropped, so it is never styled
//     abnormal, never plotted and never quoted in a share label.
func labShown(r LabResult) (LabResult, bool) {
	switch r.Status {
	case "entered-in-error":
		return LabResult{}, false
	case "cancelled":
		r.Value, r.Unit, r.Flag = "", "", ""
	}
	return r, true
}

// part2Notice is the §2.32 notice a page shows above results when any of them is a Part 2
// record disclosed to a non-patient; nil when none is.
type part2Notice struct {
	Text string
	URL  string
}

func part2NoticeFor(tests []labTest) *part2Notice {
	for _, t := range tests {
		for _, r := range t.Rows {
			if r.Part2 {
				return &part2Notice{Text: consent.Part2Notice, URL: consent.Part2NoticeURL}
			}
		}
	}
	return nil
}

// labStatusWords names a FHIR R4 Observation status for a patient; "" for a final result,
// which needs no label. Every R4 status has words; a code outside R4 is shown as it is.
func labStatusWords(st string) string {
	switch st {
	case "", "final":
		return ""
	case "preliminary":
		return "Preliminary, may change"
	case "registered":
		return "Registered, no result yet"
	case "amended":
		return "Amended"
	case "corrected":
		return "Corrected"
	case "cancelled":
		return "Cancelled, no result"
	case "entered-in-error":
		return "Entered in error" // never shown: labShown leaves these results out
	case "unknown":
		return "Status unknown"
	default:
		return st
	}
}

// flagLabel names an HL7 v2 / FHIR interpretation code and says whether it is abnormal.
func flagLabel(flag string) (string, bool) {
	switch flag {
	case "", "N":
		return "", false
	case "H":
		return "High", true
	case "HH", "HU", ">":
		return "Critically high", true
	case "L":
		return "Low", true
	case "LL", "LU", "<":
		return "Critically low", true
	case "A":
		return "Abnormal", true
	case "AA":
		return "Critically abnormal", true
	case "POS":
		return "Positive", true
	default:
		return flag, true
	}
}
