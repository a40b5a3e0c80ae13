package portal

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

// maxProxies bounds one patient's caregivers (pending invitations included, ended grants not).
const maxProxies = 10

// proxyInviteTTL is how long an invitation can be accepted.
const proxyInviteTTL = 7 * 24 * time.Hour

// Relationships a caregiver can have to the patient, as the invitation form offers them.
var proxyRelationships = []struct{ Value, Label string }{
	{"parent", "Parent"}, {"guardian", "Legal guardian"}, {"spouse", "Spouse or partner"},
	{"child", "Adult child"}, {"caregiver", "Caregiver"}, {"other", "Other"},
}

// ProxyGrant is a patient's grant to a caregiver: pending until the caregiver accepts it
// with their own login, then active until the patient revokes it or its end (EndsAt)
// passes, whichever comes first.
type ProxyGrant struct {
	ID            int64
	PersonID      string // the patient
	PatientName   string // the patient's name, shown to the caregiver
	GrantedBy     string // the patient's login
	CaregiverName string // in the patient's words
	Relationship  string
	InviteExpires time.Time
	ProxyLogin    string // the caregiver's login, "" while pending
	ProxyDisplay  string // the caregiver's name from their sign-in
	Created       time.Time
	Accepted      time.Time // zero while pending
	// IncludeSensitive: the patient lets this caregiver see sensitive information too.
	IncludeSensitive bool
	// Evidence is, for a guardian a privacy officer registered, the officer's reference to
	// the documents checked; "" for a patient's own invitation.
	Evidence string
	// EndsAt is when the grant ends by itself (from then on it is no access, like a revoked
	// one); zero for no end date.
	EndsAt time.Time
}

// LogValue redacts the grant: it holds names.
func (g ProxyGrant) LogValue() slog.Value {
	return slog.GroupValue(slog.Int64("id", g.ID), slog.String("person", g.PersonID))
}

// Pending reports whether the grant still waits for the caregiver.
func (g ProxyGrant) Pending() bool { return g.ProxyLogin == "" }

// Ended reports whether the grant's end date has passed at now.
func (g ProxyGrant) Ended(now time.Time) bool { return !g.EndsAt.IsZero() && !now.Before(g.EndsAt) }

// Proxies keeps caregiver grants. Every change commits with its audit event.
type Proxies interface {
	// Invite stores a pending grant of v's person to a caregiver, reachable with the token
	// whose SHA-256 is tokenHash until now+7 days, and ending at g.EndsAt (zero: no end;
	// errs.Invalid when it is not after now). A privacy officer v registers a parent or
	// legal guardian for person g.PersonID instead (g.PatientName and g.Evidence required;
	// errs.NotFound for an unknown person). errs.Conflict when the patient has too many
	// caregivers.
	Invite(ctx context.Context, v Viewer, g ProxyGrant, tokenHash []byte, now time.Time) (int64, error)
	// InviteByHash returns the pending, unexpired, unrevoked grant with that token hash
	// whose end has not passed at now; errs.NotFound otherwise, alike.
	InviteByHash(ctx context.Context, tokenHash []byte, now time.Time) (ProxyGrant, error)
	// Accept makes the pending grant with that token hash active for caregiver login v
	// (display: their name). errs.NotFound as InviteByHash; errs.Invalid when v is the
	// patient themself; errs.Conflict when v already holds an active grant for the person.
	Accept(ctx context.Context, v Viewer, display string, tokenHash []byte, now time.Time) (ProxyGrant, error)
	// Grants returns the patient's pending grants (invitation open, end not passed) and
	// accepted unrevoked ones, those whose end has passed included (see
	// ProxyGrant.Ended), newest first.
	Grants(ctx context.Context, personID string, now time.Time) ([]ProxyGrant, error)
	// ActingFor returns the accepted, unrevoked grants held by caregiver login, by patient
	// name, ended ones included: it takes no clock, so callers drop those that
	// ProxyGrant.Ended. It lists; Active decides.
	ActingFor(ctx context.Context, login string) ([]ProxyGrant, error)
	// Active returns grant id when it is active at now (accepted, not revoked, its end not
	// passed) and held by login; errs.NotFound otherwise, alike.
	Active(ctx context.Context, id int64, login string, now time.Time) (ProxyGrant, error)
	// Revoke ends grant id of v's person (for an officer, the person they act on, in
	// v.PersonID) at once, pending, active or ended (which takes it off the lists);
	// errs.NotFound when there is no such grant.
	Revoke(ctx context.Context, v Viewer, id int64, now time.Time) error
	// SetSensitive lets the caregiver of grant id of v's person see sensitive information
	// too (on) or not, from their next request; errs.NotFound when v has no such grant, or
	// it has ended.
	SetSensitive(ctx context.Context, v Viewer, id int64, on bool, now time.Time) error
}

// ProxyStore keeps grants in portal_proxies. It implements Proxies.
type ProxyStore struct {
	db    db.Querier
	audit Auditor
}

var _ Proxies = (*ProxyStore)(nil)

// NewProxyStore returns a store on q that audits every change with a (audit.ConsentChange,
// reasons proxy-invited, proxy-registered, proxy-accepted, proxy-revoked,
// proxy-sensitive-on, proxy-sensitive-off; TokenID "proxy/ID"; a grant made with an end
// date has Query "ends_at=" and the end in RFC 3339, UTC). Without an audit writer it
// refuses changes.
func NewProxyStore(q db.Querier, a Auditor) *ProxyStore { return &ProxyStore{db: q, audit: a} }

func proxyEvent(v Viewer, person string, id int64, reason string, at time.Time) audit.Event {
	return audit.Event{Time: at, Action: audit.ConsentChange, Outcome: audit.Permit, Reason: reason, Actor: v.Actor,
		Org: v.Org, Role: string(v.Role), Purpose: consent.PurposePatientRequest, Patient: person,
		TokenID: "proxy/" + strconv.FormatInt(id, 10), RequestID: v.RequestID, SourceIP: v.SourceIP}
}

func (s *ProxyStore) change(ctx context.Context, fn func(tx db.Querier) (audit.Event, error)) error {
	if s.audit == nil {
		return errs.E("portal.ProxyStore", errs.Unavailable, "caregiver changes need an audit writer")
	}
	return auditedTx(ctx, s.db, s.audit, fn)
}

const proxyCols = `id, person_id, patient_name, granted_by, caregiver_name, relationship, invite_expires_at,
	coalesce(proxy_login, ''), proxy_display, created_at, accepted_at, include_sensitive, evidence, ends_at`

// proxyNotEnded is the condition, on the time in parameter $n, that a grant's end has not
// passed; it is the SQL twin of ProxyGrant.Ended.
func proxyNotEnded(n int) string {
	return `(ends_at IS NULL OR ends_at > $` + strconv.Itoa(n) + `)`
}

func scanProxy(row pgx.Row) (ProxyGrant, error) {
	var g ProxyGrant
	var accepted, ends *time.Time
	err := row.Scan(&g.ID, &g.PersonID, &g.PatientName, &g.GrantedBy, &g.CaregiverName, &g.Relationship, &g.InviteExpires,
		&g.ProxyLogin, &g.ProxyDisplay, &g.Created, &accepted, &g.IncludeSensitive, &g.Evidence, &ends)
	if accepted != nil {
		g.Accepted = *accepted
	}
	if ends != nil {
		g.EndsAt = *ends
	}
	return g, err
}

// endsParam is g.EndsAt as a query argument: NULL for no end.
func endsParam(g ProxyGrant) any {
	if g.EndsAt.IsZero() {
		return nil
	}
	return g.EndsAt.UTC()
}

func (s *ProxyStore) list(ctx context.Context, op, where string, args ...any) ([]ProxyGrant, error) {
	rows, err := s.db.Query(ctx, `SELECT `+proxyCols+` FROM portal_proxies WHERE `+where, args...)
	if err != nil {
		return nil, db.Map(op, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ProxyGrant, error) { return scanProxy(r) })
	return out, db.Map(op, err)
}

// Invite implements Proxies. The count of the patient's grants and the insert are one
// statement, so two concurrent invitations cannot both pass the cap.
func (s *ProxyStore) Invite(ctx context.Context, v Viewer, g ProxyGrant, tokenHash []byte, now time.Time) (int64, error) {
	const op = "portal.ProxyStore.Invite"
	person, reason := v.PersonID, "proxy-invited"
	switch {
	case len(tokenHash) != 32 || g.CaregiverName == "":
		return 0, errs.E(op, errs.Invalid, "an invitation needs a caregiver's name and a token hash")
	case !g.EndsAt.IsZero() && !g.EndsAt.After(now):
		return 0, errs.E(op, errs.Invalid, "the end date has passed")
	case v.Role == RolePatient && v.PersonID != "":
		g.Evidence = ""
	case v.Role == RoleOfficer && g.PersonID != "" && g.PatientName != "" && g.Evidence != "" && (g.Relationship == "parent" || g.Relationship == "guardian"):
		person, reason = g.PersonID, "proxy-registered"
	default:
		return 0, errs.E(op, errs.Invalid, "only the patient invites a caregiver; an officer registers a parent or guardian with the evidence checked")
	}
	var id int64
	err := s.change(ctx, func(tx db.Querier) (audit.Event, error) {
		if v.Role == RoleOfficer {
			var live bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM mpi_persons WHERE id::text = $1 AND retired_into IS NULL)`, person).Scan(&live); err != nil {
				return audit.Event{}, db.Map(op, err)
			}
			if !live {
				return audit.Event{}, errs.E(op, errs.NotFound, "no such person")
			}
		}
		// Grants that have ended do not count: they are no access.
		err := tx.QueryRow(ctx, `
			INSERT INTO portal_proxies (person_id, patient_name, granted_by, caregiver_name, relationship, invite_hash, invite_expires_at, created_at, evidence, ends_at)
			SELECT $1, $2, $3, $4, $5, $6, $7, $8, $10, $11
			WHERE (SELECT count(*) FROM portal_proxies WHERE person_id = $1 AND revoked_at IS NULL AND `+proxyNotEnded(8)+`
			       AND (proxy_login IS NOT NULL OR invite_expires_at > $8)) < $9
			RETURNING id`, person, g.PatientName, v.Actor, g.CaregiverName, g.Relationship, tokenHash,
			now.Add(proxyInviteTTL).UTC(), now.UTC(), maxProxies, g.Evidence, endsParam(g)).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			return audit.Event{}, errs.E(op, errs.Conflict, "too many caregivers")
		}
		if err != nil {
			return audit.Event{}, db.Map(op, err)
		}
		ev := proxyEvent(v, person, id, reason, now)
		if !g.EndsAt.IsZero() {
			ev.Query = "ends_at=" + g.EndsAt.UTC().Format(time.RFC3339)
		}
		return ev, nil
	})
	return id, err
}

// InviteByHash implements Proxies.
func (s *ProxyStore) InviteByHash(ctx context.Context, tokenHash []byte, now time.Time) (ProxyGrant, error) {
	g, err := scanProxy(s.db.QueryRow(ctx, `SELECT `+proxyCols+` FROM portal_proxies
		WHERE invite_hash = $1 AND revoked_at IS NULL AND invite_expires_at > $2 AND `+proxyNotEnded(2), tokenHash, now.UTC()))
	return g, db.Map("portal.ProxyStore.InviteByHash", err)
}

// Accept implements Proxies. The grant's token is cleared in the same statement, so an
// invitation is accepted once. An ended grant of the same caregiver for the same person is
// closed (revoked as of its end) first, so that it does not stand in the way of the new one.
func (s *ProxyStore) Accept(ctx context.Context, v Viewer, display string, tokenHash []byte, now time.Time) (ProxyGrant, error) {
	const op = "portal.ProxyStore.Accept"
	if v.Actor == "" {
		return ProxyGrant{}, errs.E(op, errs.Invalid, "accepting needs a signed-in login")
	}
	var g ProxyGrant
	err := s.change(ctx, func(tx db.Querier) (audit.Event, error) {
		var err error
		g, err = scanProxy(tx.QueryRow(ctx, `SELECT `+proxyCols+` FROM portal_proxies
			WHERE invite_hash = $1 AND revoked_at IS NULL AND invite_expires_at > $2 AND `+proxyNotEnded(2)+` FOR UPDATE`, tokenHash, now.UTC()))
		if err != nil {
			return audit.Event{}, db.Map(op, err)
		}
		if g.GrantedBy == v.Actor || (v.PersonID != "" && v.PersonID == g.PersonID) {
			return audit.Event{}, errs.E(op, errs.Invalid, "this invitation is for someone else")
		}
		if len(display) > 100 {
			display = display[:100]
		}
		_, err = tx.Exec(ctx, `UPDATE portal_proxies SET revoked_at = ends_at
			WHERE person_id = $1 AND proxy_login = $2 AND revoked_at IS NULL AND ends_at <= $3`, g.PersonID, v.Actor, now.UTC())
		if err != nil {
			return audit.Event{}, db.Map(op, err)
		}
		_, err = tx.Exec(ctx, `UPDATE portal_proxies SET invite_hash = NULL, proxy_login = $2, proxy_display = $3, accepted_at = $4
			WHERE id = $1`, g.ID, v.Actor, display, now.UTC())
		if err != nil {
			return audit.Event{}, db.Map(op, err) // Conflict: already a caregiver of this person
		}
		g.ProxyLogin, g.ProxyDisplay, g.Accepted = v.Actor, display, now
		ev := proxyEvent(v, g.PersonID, g.ID, "proxy-accepted", now)
		ev.Role = consent.RoleProxy
		return ev, nil
	})
	return g, err
}

// Grants implements Proxies.
func (s *ProxyStore) Grants(ctx context.Context, personID string, now time.Time) ([]ProxyGrant, error) {
	return s.list(ctx, "portal.ProxyStore.Grants", `person_id = $1 AND revoked_at IS NULL
		AND (proxy_login IS NOT NULL OR (invite_expires_at > $2 AND `+proxyNotEnded(2)+`)) ORDER BY created_at DESC, id DESC`, personID, now.UTC())
}

// ActingFor implements Proxies.
func (s *ProxyStore) ActingFor(ctx context.Context, login string) ([]ProxyGrant, error) {
	return s.list(ctx, "portal.ProxyStore.ActingFor", `proxy_login = $1 AND revoked_at IS NULL ORDER BY patient_name, id`, login)
}

// Active implements Proxies.
func (s *ProxyStore) Active(ctx context.Context, id int64, login string, now time.Time) (ProxyGrant, error) {
	g, err := scanProxy(s.db.QueryRow(ctx, `SELECT `+proxyCols+` FROM portal_proxies
		WHERE id = $1 AND proxy_login = $2 AND revoked_at IS NULL AND `+proxyNotEnded(3), id, login, now.UTC()))
	return g, db.Map("portal.ProxyStore.Active", err)
}

// Revoke implements Proxies.
func (s *ProxyStore) Revoke(ctx context.Context, v Viewer, id int64, now time.Time) error {
	const op = "portal.ProxyStore.Revoke"
	return s.change(ctx, func(tx db.Querier) (audit.Event, error) {
		tag, err := tx.Exec(ctx, `UPDATE portal_proxies SET revoked_at = $3, invite_hash = NULL
			WHERE person_id = $1 AND id = $2 AND revoked_at IS NULL`, v.PersonID, id, now.UTC())
		if err != nil {
			return audit.Event{}, db.Map(op, err)
		}
		if tag.RowsAffected() == 0 {
			return audit.Event{}, errs.E(op, errs.NotFound, "no such caregiver")
		}
		return proxyEvent(v, v.PersonID, id, "proxy-revoked", now), nil
	})
}

// SetSensitive implements Proxies.
func (s *ProxyStore) SetSensitive(ctx context.Context, v Viewer, id int64, on bool, now time.Time) error {
	const op = "portal.ProxyStore.SetSensitive"
	return s.change(ctx, func(tx db.Querier) (audit.Event, error) {
		tag, err := tx.Exec(ctx, `UPDATE portal_proxies SET include_sensitive = $3
			WHERE person_id = $1 AND id = $2 AND revoked_at IS NULL AND `+proxyNotEnded(4), v.PersonID, id, on, now.UTC())
		if err != nil {
			return audit.Event{}, db.Map(op, err)
		}
		if tag.RowsAffected() == 0 {
			return audit.Event{}, errs.E(op, errs.NotFound, "no such caregiver")
		}
		reason := "proxy-sensitive-off"
		if on {
			reason = "proxy-sensitive-on"
		}
		return proxyEvent(v, v.PersonID, id, reason, now), nil
	})
}
