package portal

import (
	"mime"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/internal/errs"
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

// downloadRecord sends the whole record the viewer may see (the patient's own, or for a
// caregiver the patient's without sensitive items) as a FHIR R4 Bundle file, for an app or
// another provider. The read is decided and audited like the summary before the first byte;
// an error before then is the usual error page.
func (s *Server) downloadRecord(c echo.Context) error {
	sess, _ := session(c)
	w := &lazyAttachment{c: c, name: "health-record-" + s.now().In(s.cfg.Location).Format("2006-01-02") + ".json"}
	err := s.records.Export(c.Request().Context(), s.patientViewer(c, sess), sess.PersonID, w)
	if err != nil && w.started {
		s.log.Error("portal: record download cut", "request_id", requestID(c), "code", errs.CodeOf(err).String())
		return nil // the status line has gone; the client sees a short file
	}
	return err
}

// lazyAttachment writes the attachment's headers on the first write, so that an error
// before any byte can still be answered with an error page.
type lazyAttachment struct {
	c       echo.Context
	name    string
	started bool
}

func (l *lazyAttachment) Write(p []byte) (int, error) {
	if !l.started {
		l.started = true
		h := l.c.Response().Header()
		h.Set("Content-Type", "application/fhir+json")
		h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": l.name}))
		h.Set("X-Content-Type-Options", "nosniff")
		l.c.Response().WriteHeader(http.StatusOK)
	}
	return l.c.Response().Write(p)
}
