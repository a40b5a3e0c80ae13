package portal

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/internal/errs"
)

// checkLogin runs after loadSession on every signed-in request but signing in and out: it
// reads the login's standing again and ends the session, as signing out does (signOut),
// when the login no longer has what the session was given at sign-in (loginHolds); the
// browser then goes to the landing page, signed out. So removing a staff member, or
// unlinking a patient's login, is in force at their next request (security.md S9). The
// read is one primary-key look-up per request and is never cached: a cache would let a
// removed login go on until it expired. A failed read is the error page (503) and the
// request goes no further: never on with the role the session had.
func (s *Server) checkLogin(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		sess, id := session(c)
		if sess == nil || sess.Role == "" {
			return next(c)
		}
		ctx := c.Request().Context()
		holds, err := s.loginHolds(ctx, sess)
		if err != nil {
			return err
		}
		if holds {
			return next(c)
		}
		s.log.LogAttrs(ctx, slog.LevelInfo, "portal session ended: the login no longer has its role",
			slog.String("request_id", requestID(c)),
			slog.String("role", string(sess.Role)),
			slog.String("person", sess.PersonID),
			slog.String("org", sess.Org))
		if err := s.signOut(c, id); err != nil {
			return err
		}
		return c.Redirect(http.StatusSeeOther, "/")
	}
}

// loginHolds reports whether sess's login still has the standing it signed in with: for a
// clinician or officer, a staff record (StaffForLogin) with the same role at the same
// member; for a patient, enrolment (PersonForLogin) to the same person. A caregiver acting
// for someone is checked as the login's own role and person (its grant is checkProxy's);
// an unenrolled login has nothing to lose and is not read. It returns errs.Unavailable
// when the look-up fails, and false for a role it does not know.
func (s *Server) loginHolds(ctx context.Context, sess *Session) (bool, error) {
	const op = "portal.loginHolds"
	role, person := sess.Role, sess.PersonID
	if role == RoleProxy {
		role, person = sess.OwnRole, sess.OwnPerson
	}
	switch role {
	case RoleUnenrolled:
		return true, nil
	case RoleClinician, RoleOfficer:
		st, err := s.staff.StaffForLogin(ctx, sess.Issuer, sess.Subject)
		switch {
		case errs.Is(err, errs.NotFound):
			return false, nil
		case err != nil:
			return false, errs.E(op, errs.Unavailable, "the sign-in could not be checked", err)
		}
		return st.Role == role && st.Org == sess.Org, nil
	case RolePatient:
		pid, err := s.identity.PersonForLogin(ctx, sess.Issuer, sess.Subject)
		switch {
		case errs.Is(err, errs.NotFound):
			return false, nil
		case err != nil:
			return false, errs.E(op, errs.Unavailable, "the sign-in could not be checked", err)
		}
		return pid != "" && pid == person, nil
	default:
		return false, nil
	}
}
