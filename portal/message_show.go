package portal

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/internal/errs"
)

// messageRatePerMinute and messageRatePerHour bound the messages (new threads and replies)
// one login may send: a burst, and a sustained rate clinic staff can still read. The
// limiters count in fixed windows shared through Redis.
const (
	messageRatePerMinute = 5
	messageRatePerHour   = 30
)

// Messaging keeps secure messages. MessageStore implements it on PostgreSQL; every call is
// scoped to the viewer (a patient's person, a clinician's member; for a caregiver without
// sensitive access, not the patient's threads with a 42 CFR Part 2 program), and a thread
// the viewer may not see is errs.NotFound.
type Messaging interface {
	CreateThread(ctx context.Context, personID, member, subject string, m Message, at time.Time) (int64, error)
	Threads(ctx context.Context, v Viewer) ([]MessageThread, error)
	Thread(ctx context.Context, v Viewer, id int64) (MessageThread, []Message, error)
	MarkRead(ctx context.Context, v Viewer, id int64, now time.Time) error
	// Open is Thread and MarkRead at once; a clinician's opening is audited, and it fails
	// closed (errs.Unavailable, nothing shown) when the audit event cannot be written.
	Open(ctx context.Context, v Viewer, id int64, now time.Time) (MessageThread, []Message, error)
	Reply(ctx context.Context, v Viewer, id int64, m Message, at time.Time) error
	Close(ctx context.Context, v Viewer, id int64) error
}

var _ Messaging = (*MessageStore)(nil)

// clinic is a member organization a patient may write to: one that holds their records.
type clinic struct{ ID, Name string }

type messagesPage struct {
	Page
	Threads []MessageThread
	Names   map[string]string
	Self    bool // the patient's own inbox; false for a caregiver acting for them
}

type messageNewPage struct {
	Page
	Clinics               []clinic
	Clinic, Subject, Body string
	Error                 string
}

type messagePage struct {
	Page
	Thread   MessageThread
	Messages []Message
	Clinic   string
	Body     string
	Error    string
	Staff    bool
}

// clinicsOf lists the members that hold personID's lab results, by name.
func (s *Server) clinicsOf(c echo.Context, sess *Session) ([]clinic, error) {
	labs, err := s.records.Labs(c.Request().Context(), s.patientViewer(c, sess), sess.PersonID)
	if err != nil {
		return nil, err
	}
	var out []clinic
	for _, l := range labs {
		if l.SourceMember == "" || slices.ContainsFunc(out, func(k clinic) bool { return k.ID == l.SourceMember }) {
			continue
		}
		name := l.SourceMemberName
		if name == "" {
			name = l.SourceMember
		}
		out = append(out, clinic{l.SourceMember, name})
	}
	slices.SortFunc(out, func(a, b clinic) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// memberNames maps member IDs to names when the directory is at hand; a failure shows IDs.
func (s *Server) memberNames(ctx context.Context) map[string]string {
	if s.privacy == nil {
		return nil
	}
	names, err := s.privacy.MemberNames(ctx)
	if err != nil {
		return nil
	}
	return names
}

func threadID(c echo.Context) (int64, error) {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, errs.E("portal.threadID", errs.NotFound, "no such thread")
	}
	return id, nil
}

// allowMessage counts one message of v's login against both rate limits and returns "", or
// the sentence that tells the sender when they may write again.
func (s *Server) allowMessage(c echo.Context, v Viewer) string {
	if ok, _ := s.msgLimiter.allow(c.Request().Context(), v.Actor); !ok {
		return "You have sent many messages just now. Please wait a minute and try again."
	}
	if ok, wait := s.msgHourLimiter.allow(c.Request().Context(), v.Actor); !ok {
		return "You have sent " + strconv.Itoa(messageRatePerHour) + " messages this hour. You can write again at " +
			s.now().Add(wait).In(s.cfg.Location).Format("15:04") + "; if it is urgent, please call the clinic."
	}
	return ""
}

// showMessages is the patient's inbox, newest first.
func (s *Server) showMessages(c echo.Context) error {
	sess, _ := session(c)
	ts, err := s.messages.Threads(c.Request().Context(), s.patientViewer(c, sess))
	if err != nil {
		return err
	}
	return s.render(c, http.StatusOK, "messages", messagesPage{Page: s.page(c, ownOr(sess, "Messages", "'s messages")), Threads: ts,
		Names: s.memberNames(c.Request().Context()), Self: sess.Role != RoleProxy})
}

// showNewMessage is the form to write to one of the patient's clinics.
func (s *Server) showNewMessage(c echo.Context) error {
	sess, _ := session(c)
	cl, err := s.clinicsOf(c, sess)
	if err != nil {
		return err
	}
	return s.render(c, http.StatusOK, "message_new", messageNewPage{Page: s.page(c, "New message"), Clinics: cl})
}

// createThread starts a thread with a clinic that holds the patient's records.
func (s *Server) createThread(c echo.Context) error {
	sess, _ := session(c)
	v := s.patientViewer(c, sess)
	cl, err := s.clinicsOf(c, sess)
	if err != nil {
		return err
	}
	p := messageNewPage{Page: s.page(c, "New message"), Clinics: cl, Clinic: c.FormValue("clinic"),
		Subject: c.FormValue("subject"), Body: c.FormValue("body")}
	if !slices.ContainsFunc(cl, func(k clinic) bool { return k.ID == p.Clinic }) {
		p.Error = "Please choose the clinic to write to."
		return s.render(c, http.StatusBadRequest, "message_new", p)
	}
	if _, _, err := CleanMessage(p.Subject, p.Body); err != nil {
		p.Error = errs.MessageOf(err)
		return s.render(c, http.StatusBadRequest, "message_new", p)
	}
	if msg := s.allowMessage(c, v); msg != "" {
		p.Error = msg
		return s.render(c, http.StatusTooManyRequests, "message_new", p)
	}
	id, err := s.messages.CreateThread(c.Request().Context(), sess.PersonID, p.Clinic, p.Subject,
		Message{AuthorLogin: v.Actor, AuthorName: authorName(sess), Body: p.Body}, s.now())
	if err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/messages/"+strconv.FormatInt(id, 10))
}

// authorName signs a message from the patient's side: the patient's first name, or a
// caregiver's first name marked as such.
func authorName(sess *Session) string {
	if sess.Role == RoleProxy {
		if f := firstName(sess.Name); f != "" {
			return f + " (caregiver)"
		}
		return "Caregiver"
	}
	return patientName(sess.Name)
}

// patientName is how a patient's message is signed: their first name, or "You".
func patientName(name string) string {
	if f := firstName(name); f != "" {
		return f
	}
	return "You"
}

// showThread shows one of the patient's threads and marks the clinic's messages read.
func (s *Server) showThread(c echo.Context) error {
	sess, _ := session(c)
	return s.renderThread(c, s.patientViewer(c, sess), http.StatusOK, "", "")
}

func (s *Server) renderThread(c echo.Context, v Viewer, status int, body, msg string) error {
	ctx := c.Request().Context()
	id, err := threadID(c)
	if err != nil {
		return err
	}
	t, ms, err := s.messages.Open(ctx, v, id, s.now())
	if err != nil {
		return err
	}
	name := t.Member
	if n := s.memberNames(ctx)[t.Member]; n != "" {
		name = n
	}
	return s.render(c, status, "message", messagePage{Page: s.page(c, t.Subject), Thread: t, Messages: ms, Clinic: name,
		Body: body, Error: msg, Staff: v.Role == RoleClinician})
}

// replyThread appends the signed-in user's reply to a thread they may see.
func (s *Server) replyThread(c echo.Context) error {
	sess, _ := session(c)
	v := s.patientViewer(c, sess)
	name := authorName(sess)
	if sess.Role == RoleClinician {
		v = staffViewer(c)
		name = sess.Name
	}
	id, err := threadID(c)
	if err != nil {
		return err
	}
	body := c.FormValue("body")
	if _, _, err := CleanMessage("-", body); err != nil {
		return s.renderThread(c, v, http.StatusBadRequest, body, errs.MessageOf(err))
	}
	if msg := s.allowMessage(c, v); msg != "" {
		return s.renderThread(c, v, http.StatusTooManyRequests, body, msg)
	}
	err = s.messages.Reply(c.Request().Context(), v, id, Message{AuthorLogin: v.Actor, AuthorName: name, Body: body}, s.now())
	if errs.Is(err, errs.Conflict) {
		return s.renderThread(c, v, http.StatusConflict, body, "This conversation is closed.")
	}
	if err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, c.Request().URL.Path)
}

// showStaffThread shows a thread of the clinician's member and marks the patient's messages
// read; the reading is audited (fail closed).
func (s *Server) showStaffThread(c echo.Context) error {
	return s.renderThread(c, staffViewer(c), http.StatusOK, "", "")
}

// closeThread closes a thread of the clinician's member.
func (s *Server) closeThread(c echo.Context) error {
	id, err := threadID(c)
	if err != nil {
		return err
	}
	if err := s.messages.Close(c.Request().Context(), staffViewer(c), id); err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/staff")
}
