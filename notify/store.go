package notify

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
	mpistore "github.com/concord-hie/concord/mpi/store"
)

// Store keeps rosters, registered endpoints and subscriptions in PostgreSQL. Every
// method takes the Querier to run on, so callers put writes in their own transaction.
type Store struct {
	// allow is the client allowlist, so a registered or subscribed literal address that is
	// not public is refused up front unless the dispatcher may dial it.
	allow []netip.AddrPort
}

// NewStore returns a Store; allow is the same list as ClientConfig.Allow.
func NewStore(allow []netip.AddrPort) *Store { return &Store{allow: allow} }

// RosterEntry says that a member has one of its Patients (and so the Patient's person)
// on a roster.
type RosterEntry struct {
	MemberID  string
	GroupID   string
	PatientID string
}

// PutRoster replaces the entries of the member's roster groupID with patientIDs in tx.
// The caller has checked that each Patient is the member's own. A group id that belongs
// to another member is errs.NotFound.
func (s *Store) PutRoster(ctx context.Context, tx db.Querier, memberID, groupID string, patientIDs []string) error {
	const op = "notify.Store.PutRoster"
	tag, err := tx.Exec(ctx, `INSERT INTO notify_rosters (group_id, member_id) VALUES ($1, $2)
		ON CONFLICT (group_id) DO UPDATE SET member_id = EXCLUDED.member_id WHERE notify_rosters.member_id = EXCLUDED.member_id`, groupID, memberID)
	if err != nil {
		return errs.E(op, errs.Unavailable, "could not store the roster", err)
	}
	if tag.RowsAffected() == 0 {
		return errs.E(op, errs.NotFound, "roster not found")
	}
	if _, err := tx.Exec(ctx, `DELETE FROM notify_roster_entries WHERE group_id = $1`, groupID); err != nil {
		return errs.E(op, errs.Unavailable, "could not store the roster", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO notify_roster_entries (group_id, member_id, patient_id)
		SELECT $1, $2, p FROM unnest($3::text[]) AS p ON CONFLICT DO NOTHING`, groupID, memberID, patientIDs); err != nil {
		return errs.E(op, errs.Unavailable, "could not store the roster", err)
	}
	return nil
}

// Roster returns the Patient ids on memberID's roster groupID. A group that
// is not one of the member's rosters, or whose Group was deleted, is errs.NotFound.
func (s *Store) Roster(ctx context.Context, q db.Querier, memberID, groupID string) ([]string, error) {
	const op = "notify.Store.Roster"
	var ids []string
	err := q.QueryRow(ctx, `SELECT coalesce(array_agg(e.patient_id) FILTER (WHERE e.patient_id IS NOT NULL), '{}')
		FROM notify_rosters r JOIN fhir_resources g ON g.type = 'Group' AND g.id = r.group_id AND NOT g.deleted
		LEFT JOIN notify_roster_entries e ON e.group_id = r.group_id
		WHERE r.group_id = $1 AND r.member_id = $2 GROUP BY r.group_id`, groupID, memberID).Scan(&ids)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, errs.E(op, errs.NotFound, "roster not found")
	}
	if err != nil {
		return nil, errs.E(op, errs.Unavailable, "roster lookup failed", err)
	}
	return ids, nil
}

// RostersWithPerson answers "which members have this person in a roster": every roster
// entry whose Patient the MPI links to person, one per member and Patient. A roster whose
// Group was deleted counts no more.
func (s *Store) RostersWithPerson(ctx context.Context, q db.Querier, person mpistore.PersonID) ([]RosterEntry, error) {
	const op = "notify.Store.RostersWithPerson"
	rows, err := q.Query(ctx, `SELECT DISTINCT ON (e.member_id, e.patient_id) e.member_id, e.group_id, e.patient_id
		FROM notify_roster_entries e JOIN mpi_source_records r ON r.patient_id = e.patient_id
		JOIN fhir_resources g ON g.type = 'Group' AND g.id = e.group_id AND NOT g.deleted
		WHERE r.person_id = $1 ORDER BY e.member_id, e.patient_id, e.group_id`, string(person))
	if err != nil {
		return nil, errs.E(op, errs.Unavailable, "roster lookup failed", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (RosterEntry, error) {
		var e RosterEntry
		return e, r.Scan(&e.MemberID, &e.GroupID, &e.PatientID)
	})
	if err != nil {
		return nil, errs.E(op, errs.Unavailable, "roster lookup failed", err)
	}
	return out, nil
}

// RegisterEndpoint records that member may subscribe with endpoints at rawURL's origin
// (scheme, host and port). An operator action (directory administration), not a member
// API. An origin removed earlier (RemoveEndpointOrigins) is registered again: its
// removed_at is cleared.
func (s *Store) RegisterEndpoint(ctx context.Context, q db.Querier, memberID, rawURL string) error {
	_, o, err := ParseEndpoint(rawURL, s.allow)
	if err != nil {
		return err
	}
	if _, err := q.Exec(ctx, `INSERT INTO notify_endpoints (member_id, origin) VALUES ($1, $2)
		ON CONFLICT (member_id, origin) DO UPDATE SET removed_at = NULL WHERE notify_endpoints.removed_at IS NOT NULL`, memberID, o.String()); err != nil {
		return errs.E("notify.Store.RegisterEndpoint", errs.Unavailable, "could not register the endpoint", err)
	}
	return nil
}

// RemoveEndpointOrigin takes the origin (scheme, host and port) of rawURL out of the
// rest-hook origins registered (RegisterEndpoint) to member and returns it: it is
// RemoveEndpointOrigins of one URL.
func (s *Store) RemoveEndpointOrigin(ctx context.Context, q db.Querier, memberID, rawURL string) (Origin, error) {
	removed, err := s.RemoveEndpointOrigins(ctx, q, memberID, []string{rawURL})
	if err != nil {
		return Origin{}, err
	}
	return removed[0], nil
}

// RemoveEndpointOrigins takes the origins (scheme, host and port) of rawURLs out of the
// rest-hook origins registered (RegisterEndpoint) to member and returns them, each once,
// in the order first named. An operator action, like registration. A removed origin's row
// stays as the record of the removal (removed_at, the time of it), and every reader treats
// it as absent until it is registered again. Run it in a transaction (q) so that it
// removes all of them or none. Once it commits, a Subscription naming an endpoint at a
// removed origin is refused, and the member's requested and active Subscriptions at one
// are set to error in the same statement group, so they read as stopped at once; the
// dispatcher, which checks the origin again before every send, sends them nothing more (a
// send already past that check may still complete). A literal address that is not public
// is removed whether or not the allowlist still names it, since removal dials nothing. Errors name a URL by its position, never by its text (a URL may carry a
// receiver's secret): errs.Invalid (or errs.Forbidden for a host that is not a canonical
// address) when one is not an endpoint URL, before anything is removed; errs.NotFound,
// naming the origins, when some are not registered to member, also before anything is
// removed, so removing an origin twice fails the second time.
func (s *Store) RemoveEndpointOrigins(ctx context.Context, q db.Querier, memberID string, rawURLs []string) ([]Origin, error) {
	const op = "notify.Store.RemoveEndpointOrigins"
	var origins []Origin
	var names []string
	for i, u := range rawURLs {
		o, err := removalOrigin(u, s.allow)
		if err != nil {
			return nil, errs.E(op, errs.CodeOf(err), fmt.Sprintf("URL %d of %d: %s", i+1, len(rawURLs), errs.MessageOf(err)), err)
		}
		if !slices.Contains(names, o.String()) {
			origins, names = append(origins, o), append(names, o.String())
		}
	}
	rows, err := q.Query(ctx, `SELECT origin FROM notify_endpoints
		WHERE member_id = $1 AND origin = ANY($2) AND removed_at IS NULL ORDER BY origin FOR UPDATE`, memberID, names)
	if err != nil {
		return nil, errs.E(op, errs.Unavailable, "could not read the endpoint origins", err)
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, errs.E(op, errs.Unavailable, "could not read the endpoint origins", err)
	}
	var missing []string
	for _, n := range names {
		if !slices.Contains(found, n) {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return nil, errs.E(op, errs.NotFound, "no such registered endpoint origin: "+strings.Join(missing, ", "))
	}
	if _, err := q.Exec(ctx, `UPDATE notify_endpoints SET removed_at = now()
		WHERE member_id = $1 AND origin = ANY($2) AND removed_at IS NULL`, memberID, names); err != nil {
		return nil, errs.E(op, errs.Unavailable, "could not remove the endpoint origins", err)
	}
	rows, err = q.Query(ctx, `SELECT id, endpoint FROM notify_subscriptions
		WHERE member_id = $1 AND status IN ('requested', 'active') FOR UPDATE`, memberID)
	if err != nil {
		return nil, errs.E(op, errs.Unavailable, "could not read the subscriptions", err)
	}
	type sub struct{ id, endpoint string }
	subs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (sub, error) {
		var x sub
		return x, r.Scan(&x.id, &x.endpoint)
	})
	if err != nil {
		return nil, errs.E(op, errs.Unavailable, "could not read the subscriptions", err)
	}
	var stopped []string
	for _, x := range subs {
		if o, err := removalOrigin(x.endpoint, s.allow); err == nil && slices.Contains(names, o.String()) {
			stopped = append(stopped, x.id)
		}
	}
	if len(stopped) > 0 {
		if _, err := q.Exec(ctx, `UPDATE notify_subscriptions SET status = 'error', updated_at = now() WHERE id = ANY($1)`, stopped); err != nil {
			return nil, errs.E(op, errs.Unavailable, "could not stop the subscriptions", err)
		}
	}
	return origins, nil
}

// removalOrigin is the origin of rawURL as ParseEndpoint reads it, except that a literal
// address that is not public is accepted whether or not allow names it.
func removalOrigin(rawURL string, allow []netip.AddrPort) (Origin, error) {
	_, o, err := ParseEndpoint(rawURL, allow)
	if !errors.Is(err, errRefused) {
		return o, err
	}
	u, _ := url.Parse(rawURL) // ParseEndpoint parsed it before refusing the address
	ip, perr := netip.ParseAddr(strings.ToLower(u.Hostname()))
	if perr != nil {
		return Origin{}, err
	}
	port, _ := strconv.Atoi(cmp.Or(u.Port(), map[string]string{"http": "80", "https": "443"}[u.Scheme]))
	_, o, err = ParseEndpoint(rawURL, []netip.AddrPort{netip.AddrPortFrom(ip.Unmap().WithZone(""), uint16(port))})
	return o, err
}

// checkEndpoint refuses an endpoint whose exact origin the member has not registered.
func (s *Store) checkEndpoint(ctx context.Context, q db.Querier, memberID, endpoint string) error {
	const op = "notify.Store.checkEndpoint"
	_, o, err := ParseEndpoint(endpoint, s.allow)
	if err != nil {
		e := errs.E(op, errs.Invalid, errs.MessageOf(err), err)
		e.Path = "Subscription.channel.endpoint"
		return e
	}
	var ok bool
	if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM notify_endpoints WHERE member_id = $1 AND origin = $2 AND removed_at IS NULL)`,
		memberID, o.String()).Scan(&ok); err != nil {
		return errs.E(op, errs.Unavailable, "endpoint lookup failed", err)
	}
	if !ok {
		e := errs.E(op, errs.Invalid, "channel.endpoint is not an endpoint registered to the member")
		e.Path = "Subscription.channel.endpoint"
		return e
	}
	return nil
}

// CreateSubscription stores sub (ID and MemberID set by the caller) as requested, after
// checking its endpoint against the member's registered origins, and queues the
// handshake in tx. The dispatcher makes it active when the handshake is answered 2xx, and
// off when its End passes. An End that is not an instant, or that has already passed
// (by the database's clock, the one the dispatcher ends subscriptions by), is
// errs.Invalid naming Subscription.end, and nothing is stored.
func (s *Store) CreateSubscription(ctx context.Context, tx db.Querier, sub Subscription) (Subscription, error) {
	const op = "notify.Store.CreateSubscription"
	ends, err := endsAt(sub.End)
	if err != nil {
		return Subscription{}, errs.E(op, err)
	}
	if err := s.checkEndpoint(ctx, tx, sub.MemberID, sub.Endpoint); err != nil {
		return Subscription{}, err
	}
	sub.Status, sub.Events = StatusRequested, 0
	if sub.Headers == nil {
		sub.Headers = []string{}
	}
	headers, _ := json.Marshal(sub.Headers)
	body, err := sub.JSON()
	if err != nil {
		return Subscription{}, err
	}
	tag, err := tx.Exec(ctx, `INSERT INTO notify_subscriptions (id, member_id, topic, filter, endpoint, headers, payload, status, body, ends_at)
		SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 WHERE $10::timestamptz IS NULL OR $10::timestamptz > now()`,
		sub.ID, sub.MemberID, sub.Topic, sub.Filter, sub.Endpoint, headers, sub.Payload, string(sub.Status), body, ends)
	if err != nil {
		return Subscription{}, errs.E(op, errs.Unavailable, "could not store the subscription", err)
	}
	if tag.RowsAffected() == 0 {
		return Subscription{}, endInvalid(op, "end has already passed: a subscription must end in the future")
	}
	if _, err := tx.Exec(ctx, `INSERT INTO notify_deliveries (subscription_id, kind, event_number) VALUES ($1, 'handshake', 0)`, sub.ID); err != nil {
		return Subscription{}, errs.E(op, errs.Unavailable, "could not queue the handshake", err)
	}
	return sub, nil
}

// subCols lists the columns scanSub reads, qualified by alias when it is not "". A
// requested or active subscription whose end has passed reads as off even before the
// dispatcher has stored that (endSubscriptions).
func subCols(alias string) string {
	a := ""
	if alias != "" {
		a = alias + "."
	}
	status := "CASE WHEN " + a + "ends_at <= now() AND " + a + "status IN ('requested', 'active') THEN 'off' ELSE " + a + "status END"
	return a + "id, " + a + "member_id, " + a + "topic, " + a + "filter, " + a + "endpoint, " + a + "headers, " + a + "payload, " +
		status + ", " + a + "events, coalesce(" + a + "body->>'reason', ''), coalesce(" + a + "body->>'end', '')"
}

var subColumns = subCols("")

func scanSub(r pgx.Row) (Subscription, error) {
	var s Subscription
	var headers []byte
	var status string
	if err := r.Scan(&s.ID, &s.MemberID, &s.Topic, &s.Filter, &s.Endpoint, &headers, &s.Payload, &status, &s.Events, &s.Reason, &s.End); err != nil {
		return Subscription{}, err
	}
	s.Status = Status(status)
	_ = json.Unmarshal(headers, &s.Headers)
	return s, nil
}

// Subscription returns the member's subscription id; another member's, or none, is
// errs.NotFound.
func (s *Store) Subscription(ctx context.Context, q db.Querier, memberID, id string) (Subscription, error) {
	sub, err := scanSub(q.QueryRow(ctx, `SELECT `+subColumns+` FROM notify_subscriptions WHERE id = $1 AND member_id = $2`, id, memberID))
	if errors.Is(err, pgx.ErrNoRows) {
		return Subscription{}, errs.E("notify.Store.Subscription", errs.NotFound, "subscription not found")
	}
	if err != nil {
		return Subscription{}, errs.E("notify.Store.Subscription", errs.Unavailable, "subscription lookup failed", err)
	}
	return sub, nil
}

// Subscriptions returns the member's subscriptions, oldest first.
func (s *Store) Subscriptions(ctx context.Context, q db.Querier, memberID string) ([]Subscription, error) {
	const op = "notify.Store.Subscriptions"
	rows, err := q.Query(ctx, `SELECT `+subColumns+` FROM notify_subscriptions WHERE member_id = $1 ORDER BY created_at, id`, memberID)
	if err != nil {
		return nil, errs.E(op, errs.Unavailable, "subscription lookup failed", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Subscription, error) { return scanSub(r) })
	if err != nil {
		return nil, errs.E(op, errs.Unavailable, "subscription lookup failed", err)
	}
	return out, nil
}

// DeleteSubscription removes the member's subscription and its undelivered
// notifications; another member's, or none, is errs.NotFound.
func (s *Store) DeleteSubscription(ctx context.Context, q db.Querier, memberID, id string) error {
	tag, err := q.Exec(ctx, `DELETE FROM notify_subscriptions WHERE id = $1 AND member_id = $2`, id, memberID)
	if err != nil {
		return errs.E("notify.Store.DeleteSubscription", errs.Unavailable, "could not delete the subscription", err)
	}
	if tag.RowsAffected() == 0 {
		return errs.E("notify.Store.DeleteSubscription", errs.NotFound, "subscription not found")
	}
	return nil
}

// Notified is one numbered notification of a subscription, for $events.
type Notified struct {
	EventNumber int64
	Focus       string
	At          string       // instant
	Context     *LinkContext // a link-changed event's details; nil for other topics
	// ConsentRef is the Type/id whose disclosure to the member decided consent when it is
	// not the focus (link-changed events: another member's Patient of the person). It is
	// never sent; $events reads it again to decide again.
	ConsentRef string
}

// Events returns the subscription's event notifications numbered in [from, to] (to 0:
// no upper bound), at most limit, by number.
func (s *Store) Events(ctx context.Context, q db.Querier, subID string, from, to int64, limit int) ([]Notified, error) {
	const op = "notify.Store.Events"
	if to <= 0 {
		to = 1<<62 - 1
	}
	rows, err := q.Query(ctx, `SELECT event_number, focus, to_char(event_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), context, consent_ref
		FROM notify_deliveries WHERE subscription_id = $1 AND kind = 'event-notification' AND event_number BETWEEN $2 AND $3
		ORDER BY event_number LIMIT $4`, subID, from, to, limit)
	if err != nil {
		return nil, errs.E(op, errs.Unavailable, "event lookup failed", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Notified, error) {
		var n Notified
		var lc []byte
		if err := r.Scan(&n.EventNumber, &n.Focus, &n.At, &lc, &n.ConsentRef); err != nil {
			return n, err
		}
		if len(lc) > 0 {
			n.Context = &LinkContext{}
			if err := json.Unmarshal(lc, n.Context); err != nil {
				return n, err
			}
		}
		return n, nil
	})
	if err != nil {
		return nil, errs.E(op, errs.Unavailable, "event lookup failed", err)
	}
	return out, nil
}
