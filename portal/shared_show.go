package portal

import (
	"crypto/sha256"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/internal/errs"
)

type sharedPage struct {
	Page
	FirstName string // the patient's first name; "" when unknown
	Expires   time.Time
	One       bool // the link names one result
	Tests     []labTest
	Part2     *part2Notice
}

// showShared is what a share link opens, without sign-in: the lab results the link names,
// read-only, rendered as the labs page renders them, with the patient's first name, the
// link's expiry and a notice that the patient shared it. Unknown, expired and revoked
// tokens, and anything that is not a token, get the same 404 as any missing page. The read
// goes through SharedRecords, which decides consent and commits the audit event first; when
// it cannot, the page is the 503 error page and shows nothing of the record.
func (s *Server) showShared(c echo.Context) error {
	const op = "portal.showShared"
	token := c.Param("token")
	if len(token) != base64URLLen(shareTokenBytes) {
		return errs.E(op, errs.NotFound, "no such page")
	}
	sum := sha256.Sum256([]byte(token))
	ctx := c.Request().Context()
	l, err := s.shares.ShareLinkByHash(ctx, sum[:], s.now())
	if err != nil {
		return err // NotFound for unknown, expired and revoked alike
	}
	v := Viewer{PersonID: l.PersonID, Role: RoleShare, RequestID: requestID(c), SourceIP: c.RealIP()}
	labs, err := s.shared.SharedLabs(ctx, v, l)
	if err != nil {
		return err
	}
	if err := s.shares.CountShareUse(ctx, l.ID, s.now()); err != nil {
		// The audit event is the record of the use; the counter is a convenience.
		s.log.Warn("portal: share link use not counted", "request_id", requestID(c), "link", l.ID, "err", err)
	}
	title := "Shared lab results"
	if l.FirstName != "" {
		title = l.FirstName + "'s shared lab results"
	}
	p := sharedPage{Page: s.page(c, title), FirstName: l.FirstName, Expires: l.Expires.In(s.cfg.Location),
		One: l.ResourceID != "", Tests: groupLabs(labs, s.cfg.Location)}
	p.Part2 = part2NoticeFor(p.Tests)
	return s.render(c, http.StatusOK, "shared", p)
}

// base64URLLen is the length of n bytes in unpadded base64url.
func base64URLLen(n int) int { return (n*8 + 5) / 6 }
