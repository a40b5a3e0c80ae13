package portal

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/concord-hie/concord/internal/errs"
)

// Session is the server-side state behind a session cookie. A pre-login session carries
// only Flow; a signed-in one carries the login and the role it reached.
type Session struct {
	Role     Role   `json:"role,omitempty"` // "" while signing in
	PersonID string `json:"person,omitempty"`
	Org      string `json:"org,omitempty"`
	OrgName  string `json:"org_name,omitempty"`
	Name     string `json:"name,omitempty"` // display name, from the staff record or UserInfo
	Issuer   string `json:"iss,omitempty"`
	Subject  string `json:"sub,omitempty"`
	IDToken  string `json:"id_token,omitempty"` // id_token_hint for the OP's end_session
	MFA      bool   `json:"mfa,omitempty"`      // the ID token carried second-factor evidence (acr or amr)
	// AuthTime is when the user last authenticated at the OP, on this server's clock (see
	// finishLogin); operations that need step-up authentication require it to be recent.
	AuthTime time.Time  `json:"auth_time,omitzero"`
	Flow     *loginFlow `json:"flow,omitempty"`
	Flash    string     `json:"flash,omitempty"`
	// Draft is a form a step-up refused, kept for its page to show again (takeDraft).
	Draft *formDraft `json:"draft,omitempty"`
	// Landing is the path and query finishLogin sent the browser to, until the session's
	// next request: that GET follows the OP's redirects, so it arrives from the OP's site,
	// and confirmCrossSite lets it through once.
	Landing string `json:"landing,omitempty"`

	// Caregiver access. Grants are the patients this login may act for (as of sign-in or
	// acceptance; each switch checks the grant again). While acting for one, Role is
	// RoleProxy, PersonID the patient's, ProxyGrant the grant and ActingFor the patient's
	// name; OwnRole and OwnPerson keep the login's own to switch back to.
	Grants     []ProxyRef `json:"grants,omitempty"`
	ProxyGrant int64      `json:"proxy_grant,omitempty"`
	ActingFor  string     `json:"acting_for,omitempty"`
	OwnRole    Role       `json:"own_role,omitempty"`
	OwnPerson  string     `json:"own_person,omitempty"`

	Created  time.Time `json:"created"`
	LastSeen time.Time `json:"last_seen"`
}

// ProxyRef is one patient a caregiver may act for.
type ProxyRef struct {
	Grant int64  `json:"grant"`
	Name  string `json:"name"`
}

// LogValue redacts the session: it holds a name and a token.
func (s Session) LogValue() slog.Value {
	return slog.GroupValue(slog.String("role", string(s.Role)), slog.String("person", s.PersonID))
}

// loginFlow is a started sign-in: the values the callback must see again. It never leaves
// the server.
type loginFlow struct {
	State    string    `json:"state"`
	Nonce    string    `json:"nonce"`
	Verifier string    `json:"verifier"`
	Started  time.Time `json:"started"`
	MFA      bool      `json:"mfa,omitempty"`     // the OP was asked for the MFA acr
	StepUp   bool      `json:"step_up,omitempty"` // the OP was asked to authenticate afresh (max_age=0)
	// ReturnTo is where the browser goes once signed in instead of its role's home: a
	// path that passed localPath when the sign-in started (it is checked again at the
	// callback), or "". It may hold a secret, such as a caregiver invitation's token:
	// never log it.
	ReturnTo string `json:"return_to,omitempty"`
	// StepUpLogin is the login ("iss|sub") whose session started this sign-in as a step-up,
	// "" otherwise. What the step-up carries over is given back only to that same login:
	// ActFor, the grant it was acting for (finishLogin acts for the patient again if the
	// grant is still active; zero otherwise), and Draft, the form the step-up refused.
	StepUpLogin string     `json:"step_up_login,omitempty"`
	ActFor      int64      `json:"act_for,omitempty"`
	Draft       *formDraft `json:"draft,omitempty"`
}

// LogValue redacts the flow: its state, nonce, verifier and return path are secrets.
func (loginFlow) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// SessionTimeouts bound a session's life.
type SessionTimeouts struct {
	PatientIdle time.Duration // patients and unenrolled logins
	StaffIdle   time.Duration // clinicians and officers
	Absolute    time.Duration // from sign-in, whatever the activity
	Login       time.Duration // a pre-login session (sign-in started, not finished)
}

// SessionStore keeps sessions in Redis under prefix+"portal:sess:"+SHA-256(ID), so a dump of
// Redis does not hold usable session IDs. Redis holds no truth: losing it signs everyone out.
type SessionStore struct {
	rdb    redis.Cmdable
	prefix string
	t      SessionTimeouts
	now    func() time.Time
}

// NewSessionStore returns a store on rdb. now is the clock that idle and absolute timeouts
// are measured with.
func NewSessionStore(rdb redis.Cmdable, prefix string, t SessionTimeouts, now func() time.Time) *SessionStore {
	return &SessionStore{rdb: rdb, prefix: prefix, t: t, now: now}
}

func (st *SessionStore) key(id string) string {
	h := sha256.Sum256([]byte(id))
	return st.prefix + "portal:sess:" + hex.EncodeToString(h[:])
}

// idle returns the idle timeout for sess.
func (st *SessionStore) idle(sess Session) time.Duration {
	switch sess.Role {
	case "":
		return st.t.Login
	case RoleClinician, RoleOfficer:
		return st.t.StaffIdle
	default:
		return st.t.PatientIdle
	}
}

// expired reports whether sess is past its idle or absolute timeout at now, and otherwise
// how long it may live untouched.
func (st *SessionStore) expired(sess Session, now time.Time) (bool, time.Duration) {
	idleLeft := sess.LastSeen.Add(st.idle(sess)).Sub(now)
	absLeft := sess.Created.Add(st.t.Absolute).Sub(now)
	left := min(idleLeft, absLeft)
	return left <= 0, left
}

// Create stores sess as a new session and returns its ID: 32 random bytes, base64url. It sets
// Created and LastSeen to now. It returns errs.Unavailable when Redis fails.
func (st *SessionStore) Create(ctx context.Context, sess Session) (string, error) {
	id := base64.RawURLEncoding.EncodeToString(randomBytes(32))
	now := st.now()
	sess.Created, sess.LastSeen = now, now
	if err := st.write(ctx, id, sess, true); err != nil {
		return "", err
	}
	return id, nil
}

// Load returns the session with the given ID and marks it used now (sliding the idle
// timeout). It returns errs.NotFound when there is none or it has passed its idle or
// absolute timeout (and deletes it then), errs.Unavailable when Redis fails.
func (st *SessionStore) Load(ctx context.Context, id string) (Session, error) {
	const op = "portal.SessionStore.Load"
	if id == "" {
		return Session{}, errs.E(op, errs.NotFound, "no session")
	}
	b, err := st.rdb.Get(ctx, st.key(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return Session{}, errs.E(op, errs.NotFound, "no session")
	}
	if err != nil {
		return Session{}, errs.E(op, errs.Unavailable, "session store unavailable", err)
	}
	var sess Session
	if err := json.Unmarshal(b, &sess); err != nil {
		return Session{}, errs.E(op, errs.Internal, err)
	}
	now := st.now()
	if gone, _ := st.expired(sess, now); gone {
		_ = st.Delete(ctx, id)
		return Session{}, errs.E(op, errs.NotFound, "session expired")
	}
	sess.LastSeen = now
	if err := st.write(ctx, id, sess, false); err != nil {
		return Session{}, err
	}
	return sess, nil
}

// Save replaces the data of an existing session (a flash, for example). It returns
// errs.NotFound when the session is gone or expired, errs.Unavailable when Redis fails.
func (st *SessionStore) Save(ctx context.Context, id string, sess Session) error {
	if gone, _ := st.expired(sess, st.now()); gone {
		return errs.E("portal.SessionStore.Save", errs.NotFound, "session expired")
	}
	return st.write(ctx, id, sess, false)
}

// Delete removes the session; deleting one that does not exist is not an error. It returns
// errs.Unavailable when Redis fails.
func (st *SessionStore) Delete(ctx context.Context, id string) error {
	if id == "" {
		return nil
	}
	if err := st.rdb.Del(ctx, st.key(id)).Err(); err != nil {
		return errs.E("portal.SessionStore.Delete", errs.Unavailable, "session store unavailable", err)
	}
	return nil
}

// write stores sess with a Redis TTL equal to the time it may live untouched, so Redis drops
// it on its own. With create it refuses to overwrite (a colliding ID); without, it refuses to
// resurrect a session deleted meanwhile (sign-out in another tab).
func (st *SessionStore) write(ctx context.Context, id string, sess Session, create bool) error {
	const op = "portal.SessionStore.write"
	_, left := st.expired(sess, st.now())
	if left <= 0 {
		return errs.E(op, errs.NotFound, "session expired")
	}
	if left < time.Second {
		left = time.Second
	}
	b, err := json.Marshal(sess)
	if err != nil {
		return errs.E(op, errs.Internal, err)
	}
	var ok bool
	if create {
		ok, err = st.rdb.SetNX(ctx, st.key(id), b, left).Result()
	} else {
		ok, err = st.rdb.SetXX(ctx, st.key(id), b, left).Result()
	}
	if err != nil {
		return errs.E(op, errs.Unavailable, "session store unavailable", err)
	}
	if !ok {
		if create {
			return errs.E(op, errs.Conflict, "session ID collision")
		}
		return errs.E(op, errs.NotFound, "no session")
	}
	return nil
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return b
}
