package httpx

import (
	"errors"
	"net/http"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/internal/errs"
)

func TestCodeForStatusRoundTrips(t *testing.T) {
	// Every status Echo produces maps to a code that Status turns back into that status,
	// except 405, which has no errs code of its own and keeps its status through Status.
	for _, st := range []int{400, 401, 403, 404, 413, 415, 429, 500, 503} {
		if got := Status(errs.E("t", CodeForStatus(st))); got != st {
			t.Errorf("status %d -> %s -> %d", st, CodeForStatus(st), got)
		}
	}
	if CodeForStatus(http.StatusMethodNotAllowed) != errs.Unsupported {
		t.Error("405 is not Unsupported")
	}
	if got := Status(echo.NewHTTPError(http.StatusMethodNotAllowed)); got != http.StatusMethodNotAllowed {
		t.Errorf("Status(405 HTTPError) = %d", got)
	}
	if got := Status(errors.New("plain")); got != 500 {
		t.Errorf("Status(plain) = %d", got)
	}
}
