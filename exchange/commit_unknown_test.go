package exchange

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

// TestCommitUnknownIsSaid: a write whose COMMIT got no answer is a 503 that says the change
// may have been stored and how to repeat it safely, not the generic "could not complete",
// which a client would take for nothing stored; other 503s keep the generic sentence.
func TestCommitUnknownIsSaid(t *testing.T) {
	s := &Server{Deps: Deps{Log: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	e := echo.New()
	for _, tt := range []struct {
		err  error
		want string
	}{
		{errs.E("db.InTx", errs.Unavailable, db.CommitUnknown), "may or may not have been stored"},
		{errs.E("x", errs.Unavailable, "database unavailable"), "could not complete the request"},
	} {
		rec := httptest.NewRecorder()
		s.HandleError(tt.err, e.NewContext(httptest.NewRequest(http.MethodPost, "/fhir/Observation", nil), rec))
		if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), tt.want) {
			t.Errorf("%v: %d %s; want 503 saying %q", tt.err, rec.Code, rec.Body.String(), tt.want)
		}
	}
}
