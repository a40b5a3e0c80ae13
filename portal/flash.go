package portal

import "github.com/labstack/echo/v4"

// setFlash stores msg in the session for the next page (post/redirect/get). The action has
// already happened, so a failing session store only loses the message: it is logged, not
// returned.
func (s *Server) setFlash(c echo.Context, msg string) {
	sess, id := session(c)
	if sess == nil || id == "" {
		return
	}
	sess.Flash = msg
	if err := s.sessions.Save(c.Request().Context(), id, *sess); err != nil {
		s.log.Warn("portal: flash not saved", "request_id", requestID(c), "err", err)
	}
}

// takeFlash returns the session's flash and clears it, or "" when there is none.
func (s *Server) takeFlash(c echo.Context) string {
	sess, id := session(c)
	if sess == nil || id == "" || sess.Flash == "" {
		return ""
	}
	msg := sess.Flash
	sess.Flash = ""
	if err := s.sessions.Save(c.Request().Context(), id, *sess); err != nil {
		s.log.Warn("portal: flash not cleared", "request_id", requestID(c), "err", err)
	}
	return msg
}
