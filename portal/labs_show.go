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
// group newest first, and orders groups by their newest result.
func groupLabs(res []LabResult, loc *time.Location) []labTest {
	byKey := map[string]*labTest{}
	var order []string
	for _, r := range res {
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
			Effective: r.Effective.In(loc), Status: status, Source: src, Part2: r.Part2,
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

// labStatusWords names a FHIR Observation status for a patient; "" for a final result,
// which needs no label.
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
		return "Cancelled"
	case "entered-in-error":
		return "Entered in error"
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
