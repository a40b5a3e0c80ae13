package portal

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

type summaryPage struct {
	Page
	Summary HealthSummary
}

// showSummary is the patient's health summary: problems, medications, allergies and
// immunizations from every member, each with its source; for a caregiver, the patient's.
func (s *Server) showSummary(c echo.Context) error {
	sess, _ := session(c)
	sum, err := s.records.Summary(c.Request().Context(), s.patientViewer(c, sess), sess.PersonID)
	if err != nil {
		return err
	}
	for _, l := range [][]SummaryItem{sum.Conditions, sum.Medications, sum.Allergies, sum.Immunizations} {
		for i := range l {
			if !l[i].Date.IsZero() {
				l[i].Date = l[i].Date.In(s.cfg.Location)
			}
		}
	}
	return s.render(c, http.StatusOK, "summary", summaryPage{Page: s.page(c, ownOr(sess, "Your health summary", "'s health summary")), Summary: sum})
}
