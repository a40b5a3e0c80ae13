package portal

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

// Limits of a secure message, as the migration enforces them too.
const (
	maxSubjectLen = 120
	maxBodyLen    = 4000
)

// MessageThread is a secure-message thread between one patient (PersonID) and one member
// organization (Member). Subject is the patient's own words: never logged. Unread counts
// the messages of the other side that the reader has not opened.
type MessageThread struct {
	ID       int64
	PersonID string
	Member   string
	Subject  string
	Closed   bool
	Created  time.Time
	Last     time.Time // the newest message's time
	Unread   int
}

// LogValue redacts the thread: its subject is PHI.
func (t MessageThread) LogValue() slog.Value {
	return slog.GroupValue(slog.Int64("id", t.ID), slog.String("person", t.PersonID))
}

// Message is one message of a thread; append-only. Body is plain text and never logged.
type Message struct {
	ID          int64
	ThreadID    int64
	AuthorKind  Role // RolePatient or RoleClinician
	AuthorLogin string
	AuthorName  string
	Body        string
	Created     time.Time
	Read        time.Time // zero until the other side opened it
}

// LogValue redacts the message: its body is PHI.
func (m Message) LogValue() slog.Value { return slog.GroupValue(slog.Int64("id", m.ID)) }

// MessageStore keeps secure messages in portal_message_threads and portal_messages. Every
// read is scoped: a patient's calls name their person, a clinician's their member, and a
// thread of someone else is errs.NotFound, as an absent one.
type MessageStore struct {
	db    db.Querier
	audit Auditor // nil: clinicians cannot open threads (Open fails closed)
}

// NewMessageStore returns a store on q (usually the pool).
func NewMessageStore(q db.Querier) *MessageStore { return &MessageStore{db: q} }

// WithAudit makes a clinician's opening of a thread commit one audit event (action read,
// the patient's person, resource Communication/<thread id>, purpose TREAT) together with
// marking the patient's messages read. Without it Open refuses clinicians. It returns s.
func (s *MessageStore) WithAudit(a Auditor) *MessageStore {
	s.audit = a
	return s
}

// Open returns thread id and its messages for v as Thread does, and marks the other side's
// messages read at now. A clinician's or a caregiver's opening is a disclosure of the
// conversation: it is audited in the same transaction, and when the event cannot be written
// Open returns errs.Unavailable and nothing. The patient's own opening is not.
func (s *MessageStore) Open(ctx context.Context, v Viewer, id int64, now time.Time) (MessageThread, []Message, error) {
	const op = "portal.MessageStore.Open"
	if v.Role != RolePatient && s.audit == nil {
		return MessageThread{}, nil, errs.E(op, errs.Unavailable, "messages are not audited")
	}
	var t MessageThread
	var ms []Message
	run := func(tx db.Querier) error {
		q := &MessageStore{db: tx}
		var err error
		if t, ms, err = q.Thread(ctx, v, id); err != nil {
			return err
		}
		if err := q.MarkRead(ctx, v, id, now); err != nil {
			return err
		}
		if v.Role == RolePatient {
			return nil
		}
		purpose := consent.PurposeTreatment
		if v.Role == RoleProxy {
			purpose = consent.PurposePatientRequest
		}
		ev := audit.Event{Time: now, Action: audit.Read, Outcome: audit.Permit, Reason: "portal-message", Actor: v.Actor,
			Org: v.Org, Role: string(v.Role), Purpose: purpose, Patient: t.PersonID,
			Resources: []audit.Resource{{Type: "Communication", ID: strconv.FormatInt(id, 10)}},
			RequestID: v.RequestID, SourceIP: v.SourceIP}
		if err := s.audit.AppendTx(ctx, tx, ev); err != nil {
			return errs.E(op, errs.Unavailable, err)
		}
		return nil
	}
	var err error
	if ts, ok := s.db.(db.TxStarter); ok {
		err = db.InTx(ctx, ts, run)
	} else {
		err = run(s.db)
	}
	if err != nil {
		return MessageThread{}, nil, err
	}
	return t, ms, nil
}

// CleanMessage trims subject and body and checks their limits; errs.Invalid with a
// readable message when one is empty or too long. A reply passes subject "-".
func CleanMessage(subject, body string) (string, string, error) {
	const op = "portal.CleanMessage"
	subject, body = strings.TrimSpace(subject), strings.TrimSpace(body)
	switch {
	case subject == "":
		return "", "", errs.E(op, errs.Invalid, "Please write a subject.")
	case utf8.RuneCountInString(subject) > maxSubjectLen:
		return "", "", errs.E(op, errs.Invalid, "The subject is too long: at most 120 characters.")
	case body == "":
		return "", "", errs.E(op, errs.Invalid, "Please write a message.")
	case utf8.RuneCountInString(body) > maxBodyLen:
		return "", "", errs.E(op, errs.Invalid, "The message is too long: at most 4000 characters.")
	}
	return subject, body, nil
}

// CreateThread stores a new open thread of personID with member and its first message m
// (written by the patient), in one transaction, and returns the thread's ID.
func (s *MessageStore) CreateThread(ctx context.Context, personID, member, subject string, m Message, at time.Time) (int64, error) {
	const op = "portal.MessageStore.CreateThread"
	subject, body, err := CleanMessage(subject, m.Body)
	if err != nil {
		return 0, err
	}
	if personID == "" || member == "" || m.AuthorLogin == "" {
		return 0, errs.E(op, errs.Invalid, "a thread needs its patient, clinic and author")
	}
	var id int64
	run := func(tx db.Querier) error {
		if err := tx.QueryRow(ctx, `INSERT INTO portal_message_threads (person_id, member_id, subject, created_at)
			VALUES ($1, $2, $3, $4) RETURNING id`, personID, member, subject, at.UTC()).Scan(&id); err != nil {
			return db.Map(op, err)
		}
		_, err := tx.Exec(ctx, `INSERT INTO portal_messages (thread_id, author_kind, author_login, author_name, body, created_at)
			VALUES ($1, 'patient', $2, $3, $4, $5)`, id, m.AuthorLogin, m.AuthorName, body, at.UTC())
		return db.Map(op, err)
	}
	if ts, ok := s.db.(db.TxStarter); ok {
		err = db.InTx(ctx, ts, run)
	} else {
		err = run(s.db)
	}
	return id, err
}

// scope is the WHERE clause that limits threads to viewer v: a patient's person, a
// clinician's member. Any other role sees nothing.
//
// A caregiver whose grant leaves sensitive information out (Viewer.ProxySensitive off)
// does not see the patient's threads with a member the directory flags as a 42 CFR Part 2
// program: that the patient writes to such a program is itself Part 2 information
// (§2.13(c)). Those threads are absent to them (not listed, 404 on open, no reply, no
// unread count), as a thread of another person is. The flag is read with the threads, so
// a program flagged later hides its earlier threads too.
func scope(v Viewer) (string, string, bool) {
	switch {
	case v.Role == RoleProxy && v.PersonID != "" && !v.ProxySensitive:
		return `t.person_id = $1 AND NOT EXISTS (SELECT 1 FROM directory_members dm
			WHERE dm.id = t.member_id AND dm.part2_program)`, v.PersonID, true
	case (v.Role == RolePatient || v.Role == RoleProxy) && v.PersonID != "": // a caregiver writes for the patient
		return "t.person_id = $1", v.PersonID, true
	case v.Role == RoleClinician && v.Org != "":
		return "t.member_id = $1", v.Org, true
	}
	return "", "", false
}

// otherKind is the author kind whose messages v reads.
func otherKind(v Viewer) string {
	if v.Role == RoleClinician {
		return "patient"
	}
	return "clinician"
}

// authorKind is the side v writes on: the clinic's, or the patient's (a caregiver's
// messages are on the patient's side, signed with the caregiver's name).
func authorKind(v Viewer) string {
	if v.Role == RoleClinician {
		return "clinician"
	}
	return "patient"
}

// Threads returns v's threads: for a patient newest first, for a clinician unread first,
// then newest first.
func (s *MessageStore) Threads(ctx context.Context, v Viewer) ([]MessageThread, error) {
	const op = "portal.MessageStore.Threads"
	where, arg, ok := scope(v)
	if !ok {
		return nil, nil
	}
	order := "last DESC, t.id DESC"
	if v.Role == RoleClinician {
		order = "(count(*) FILTER (WHERE m.author_kind = $2 AND m.read_at IS NULL) > 0) DESC, " + order
	}
	rows, err := s.db.Query(ctx, `SELECT t.id, t.person_id, t.member_id, t.subject, t.status = 'closed', t.created_at,
			coalesce(max(m.created_at), t.created_at) AS last,
			count(*) FILTER (WHERE m.author_kind = $2 AND m.read_at IS NULL) AS unread
		FROM portal_message_threads t LEFT JOIN portal_messages m ON m.thread_id = t.id
		WHERE `+where+` GROUP BY t.id ORDER BY `+order, arg, otherKind(v))
	if err != nil {
		return nil, db.Map(op, err)
	}
	defer rows.Close()
	var out []MessageThread
	for rows.Next() {
		var t MessageThread
		if err := rows.Scan(&t.ID, &t.PersonID, &t.Member, &t.Subject, &t.Closed, &t.Created, &t.Last, &t.Unread); err != nil {
			return nil, db.Map(op, err)
		}
		out = append(out, t)
	}
	return out, db.Map(op, rows.Err())
}

// Thread returns thread id and its messages, oldest first, if v may see it; errs.NotFound
// otherwise. It does not mark anything read (MarkRead does).
func (s *MessageStore) Thread(ctx context.Context, v Viewer, id int64) (MessageThread, []Message, error) {
	const op = "portal.MessageStore.Thread"
	where, arg, ok := scope(v)
	if !ok {
		return MessageThread{}, nil, errs.E(op, errs.NotFound, "no such thread")
	}
	var t MessageThread
	err := s.db.QueryRow(ctx, `SELECT t.id, t.person_id, t.member_id, t.subject, t.status = 'closed', t.created_at
		FROM portal_message_threads t WHERE `+where+` AND t.id = $2`, arg, id).
		Scan(&t.ID, &t.PersonID, &t.Member, &t.Subject, &t.Closed, &t.Created)
	if errors.Is(err, pgx.ErrNoRows) {
		return MessageThread{}, nil, errs.E(op, errs.NotFound, "no such thread")
	}
	if err != nil {
		return MessageThread{}, nil, db.Map(op, err)
	}
	rows, err := s.db.Query(ctx, `SELECT id, thread_id, author_kind, author_login, author_name, body, created_at, read_at
		FROM portal_messages WHERE thread_id = $1 ORDER BY id`, id)
	if err != nil {
		return MessageThread{}, nil, db.Map(op, err)
	}
	defer rows.Close()
	var ms []Message
	for rows.Next() {
		var m Message
		var kind string
		var read *time.Time
		if err := rows.Scan(&m.ID, &m.ThreadID, &kind, &m.AuthorLogin, &m.AuthorName, &m.Body, &m.Created, &read); err != nil {
			return MessageThread{}, nil, db.Map(op, err)
		}
		m.AuthorKind = Role(kind)
		if read != nil {
			m.Read = *read
		}
		t.Last = m.Created
		ms = append(ms, m)
	}
	return t, ms, db.Map(op, rows.Err())
}

// MarkRead marks the other side's unread messages of thread id read at now, if v may see
// the thread (otherwise it changes nothing).
func (s *MessageStore) MarkRead(ctx context.Context, v Viewer, id int64, now time.Time) error {
	const op = "portal.MessageStore.MarkRead"
	where, arg, ok := scope(v)
	if !ok {
		return nil
	}
	_, err := s.db.Exec(ctx, `UPDATE portal_messages SET read_at = $3
		WHERE thread_id = $2 AND author_kind = $4 AND read_at IS NULL
		  AND EXISTS (SELECT 1 FROM portal_message_threads t WHERE `+where+` AND t.id = $2)`,
		arg, id, now.UTC(), otherKind(v))
	return db.Map(op, err)
}

// Reply appends m (AuthorKind from v's role) to open thread id if v may see it:
// errs.NotFound when v may not, errs.Conflict when the thread is closed.
func (s *MessageStore) Reply(ctx context.Context, v Viewer, id int64, m Message, at time.Time) error {
	const op = "portal.MessageStore.Reply"
	_, body, err := CleanMessage("-", m.Body)
	if err != nil {
		return err
	}
	t, _, err := s.Thread(ctx, v, id)
	if err != nil {
		return err
	}
	if t.Closed {
		return errs.E(op, errs.Conflict, "This conversation is closed.")
	}
	_, err = s.db.Exec(ctx, `INSERT INTO portal_messages (thread_id, author_kind, author_login, author_name, body, created_at)
		VALUES ($1, $2, $3, $4, $5, $6)`, id, authorKind(v), m.AuthorLogin, m.AuthorName, body, at.UTC())
	return db.Map(op, err)
}

// Close closes thread id of clinician v's member; errs.NotFound when v may not see it.
func (s *MessageStore) Close(ctx context.Context, v Viewer, id int64) error {
	const op = "portal.MessageStore.Close"
	if v.Role != RoleClinician || v.Org == "" {
		return errs.E(op, errs.NotFound, "no such thread")
	}
	tag, err := s.db.Exec(ctx, `UPDATE portal_message_threads SET status = 'closed' WHERE member_id = $1 AND id = $2`, v.Org, id)
	if err != nil {
		return db.Map(op, err)
	}
	if tag.RowsAffected() == 0 {
		return errs.E(op, errs.NotFound, "no such thread")
	}
	return nil
}
