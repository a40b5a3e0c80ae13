package notify

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
	mpistore "github.com/concord-hie/concord/mpi/store"
	"github.com/concord-hie/concord/records"
)

// Discloser is the enforcement point's single-resource decision: *records.Service. A nil
// error permits (and was audited as a permit); errs.NotFound is a denial (audited with
// its reason); any other error means the decision could not be made.
type Discloser interface {
	Read(ctx context.Context, v records.Viewer, typ, id string) (store.Stored, error)
}

// Persons finds the person of a member's Patient: *mpistore.Store.
type Persons interface {
	SourceByPatient(ctx context.Context, q db.Querier, patientID string) (mpistore.Source, error)
}

// DispatcherConfig tunes the dispatcher. Zero values take the defaults in brackets.
type DispatcherConfig struct {
	FHIRBase             string        // Concord's FHIR base, for references in notifications
	ClientID             string        // the audit's client for notification disclosures ["concord-notify"]
	Batch                int           // rows claimed per pass [32]
	Interval             time.Duration // poll interval when idle [1 s]
	Lease                time.Duration // a claimed delivery is retried after this if its sender died [60 s]
	BaseBackoff          time.Duration // first retry delay [2 s]; doubled per attempt, with jitter
	MaxBackoff           time.Duration // retry delay cap [1 h]
	MaxHandshakeAttempts int           // then the subscription is error [5]
	Concurrency          int           // sends in flight at once [8]
}

// Dispatcher moves notification events from the outbox to subscribers. It is safe to run
// several (in one or many processes): every claim is SELECT ... FOR UPDATE SKIP LOCKED.
type Dispatcher struct {
	pool    *pgxpool.Pool
	store   *Store
	persons Persons
	records Discloser
	client  *http.Client
	cfg     DispatcherConfig
	log     *slog.Logger
}

// NewDispatcher returns a dispatcher. client must come from NewClient.
func NewDispatcher(pool *pgxpool.Pool, st *Store, persons Persons, rec Discloser, client *http.Client, cfg DispatcherConfig, log *slog.Logger) *Dispatcher {
	if cfg.ClientID == "" {
		cfg.ClientID = "concord-notify"
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 32
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 60 * time.Second
	}
	if cfg.BaseBackoff <= 0 {
		cfg.BaseBackoff = 2 * time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = time.Hour
	}
	if cfg.MaxHandshakeAttempts <= 0 {
		cfg.MaxHandshakeAttempts = 5
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 8
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Dispatcher{pool: pool, store: st, persons: persons, records: rec, client: client, cfg: cfg, log: log}
}

// Start runs the dispatcher until stop is called; stop waits for the loop to end.
func (d *Dispatcher) Start(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.Run(ctx)
	}()
	return func() { cancel(); wg.Wait() }
}

// Run polls until ctx is done: fan out, deliver, and sleep Interval when a pass found
// nothing. Errors are logged (without PHI) and retried on the next pass.
func (d *Dispatcher) Run(ctx context.Context) {
	for ctx.Err() == nil {
		n, err := d.RunOnce(ctx)
		if err != nil && ctx.Err() == nil {
			d.log.Warn("notify dispatcher pass failed", "err", err)
		}
		if n > 0 && err == nil {
			continue
		}
		select {
		case <-ctx.Done():
		case <-time.After(d.cfg.Interval):
		}
	}
}

// RunOnce turns off the subscriptions whose end has passed, then makes one fan-out pass
// and one delivery pass, and returns how many outbox and delivery rows it handled.
func (d *Dispatcher) RunOnce(ctx context.Context) (int, error) {
	if err := d.endSubscriptions(ctx); err != nil {
		return 0, err
	}
	n, err := d.fanOut(ctx)
	if err != nil {
		return n, err
	}
	m, err := d.deliver(ctx)
	return n + m, err
}

// endSubscriptions sets the status of every requested or active subscription whose end
// (Subscription.end, ends_at) has passed to off. Fan-out and the delivery claim skip
// such a subscription whether or not this has run yet, and reads show it off at once
// (subCols); this makes the stored status say so too.
func (d *Dispatcher) endSubscriptions(ctx context.Context) error {
	const op = "notify.Dispatcher.endSubscriptions"
	rows, err := d.pool.Query(ctx, `UPDATE notify_subscriptions SET status = 'off', updated_at = now()
		WHERE ends_at <= now() AND status IN ('requested', 'active') RETURNING id`)
	if err != nil {
		return errs.E(op, errs.Unavailable, "could not end subscriptions", err)
	}
	ended, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return errs.E(op, errs.Unavailable, "could not end subscriptions", err)
	}
	for _, id := range ended {
		d.log.Info("notify: subscription reached its end; set to off", "subscription", id)
	}
	return nil
}

// backoff is the delay before retry number attempts (1-based): BaseBackoff doubled per
// attempt, capped at MaxBackoff, uniformly jittered in [d/2, d).
func (d *Dispatcher) backoff(attempts int) time.Duration {
	b := d.cfg.BaseBackoff
	for i := 1; i < attempts && b < d.cfg.MaxBackoff; i++ {
		b *= 2
	}
	b = min(b, d.cfg.MaxBackoff)
	return b/2 + rand.N(b/2+1)
}

type outboxRow struct {
	id        int64
	topic     string
	payload   []byte
	attempts  int
	createdAt time.Time
}

// fanOut claims pending encounter and MPI link events and turns each into one numbered
// delivery per subscription that wants it: the subscription is active, its member has the
// person on a roster (or, for a link event, owns a moved record), the topic and filter
// match, and consent permits the disclosure to that member (records audits the decision
// either way). The deliveries and the outbox row's delivered_at commit together, so an
// event is fanned out once however often this runs. Consent decisions of a batch run
// concurrently, so their audit events share commits.
func (d *Dispatcher) fanOut(ctx context.Context) (int, error) {
	const op = "notify.Dispatcher.fanOut"
	n := 0
	err := db.InTx(ctx, d.pool, func(tx db.Querier) error {
		n = 0
		rows, err := tx.Query(ctx, `SELECT id, topic, payload, attempts, created_at FROM outbox_events
			WHERE delivered_at IS NULL AND next_at <= now() AND topic = ANY($1)
			ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED`, []string{OutboxTopicEncounter, mpistore.TopicLinkChanged}, d.cfg.Batch)
		if err != nil {
			return err
		}
		claimed, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (outboxRow, error) {
			var o outboxRow
			return o, r.Scan(&o.id, &o.topic, &o.payload, &o.attempts, &o.createdAt)
		})
		if err != nil {
			return err
		}
		n = len(claimed)
		plans := make([]plan, len(claimed))
		for i, o := range claimed {
			plans[i] = plan{o: o}
			if o.topic == mpistore.TopicLinkChanged {
				plans[i].recips, plans[i].err = d.linkRecipients(ctx, tx, o)
			} else {
				plans[i].recips, plans[i].err = d.recipients(ctx, tx, o)
			}
		}
		d.decide(ctx, plans)
		for _, p := range plans {
			if p.err == nil {
				p.err = d.record(ctx, tx, p)
			}
			if p.err == nil {
				continue
			}
			if errs.CodeOf(p.err) != errs.Unavailable {
				return p.err
			}
			// Consent or a lookup could not be decided: nothing of this event was
			// written; try it again later.
			d.log.Warn("notify: event postponed", "outbox_id", p.o.id, "err", p.err)
			if _, err := tx.Exec(ctx, `UPDATE outbox_events SET attempts = attempts + 1, next_at = now() + make_interval(secs => $2) WHERE id = $1`,
				p.o.id, d.backoff(p.o.attempts+1).Seconds()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, errs.E(op, errs.Unavailable, "fan-out failed", err)
	}
	return n, nil
}

// plan is one claimed outbox event on its way to deliveries.
type plan struct {
	o         outboxRow
	recips    []recipient // active subscriptions of members that want the event
	permitted []bool      // consent decision per recips[i]
	err       error
}

// recipient is one subscription that wants an event: what its notification names, and
// which resource's disclosure to the subscription's member decides consent.
type recipient struct {
	sub      Subscription
	focus    string       // Type/id the notification names (the member's own for link events)
	checkTyp string       // the resource read, as the member, to decide consent
	checkID  string       //
	context  *LinkContext // link events only: what changed, IDs and codes
}

// consentRef is what notify_deliveries.consent_ref keeps: "" when the focus itself was
// read to decide.
func (r recipient) consentRef() string {
	if ref := r.checkTyp + "/" + r.checkID; ref != r.focus {
		return ref
	}
	return ""
}

// recipients finds the subscriptions that want an encounter event: active, of a member
// whose roster holds the event's person, topic and filter matching. Consent is decided on
// the Encounter itself.
func (d *Dispatcher) recipients(ctx context.Context, tx db.Querier, o outboxRow) ([]recipient, error) {
	const op = "notify.Dispatcher.recipients"
	var ev EncounterEvent
	if err := json.Unmarshal(o.payload, &ev); err != nil {
		// Not retryable: settle it with no recipients rather than block the batch.
		d.log.Error("notify: malformed outbox payload; event dropped", "outbox_id", o.id)
		return nil, nil
	}
	members, err := d.rosterMembers(ctx, tx, ev.PatientID)
	if err != nil || len(members) == 0 {
		return nil, err
	}
	all, err := d.activeSubscriptions(ctx, tx, members)
	if err != nil {
		return nil, errs.E(op, err)
	}
	var out []recipient
	for _, s := range all {
		if s.Wants(ev) {
			out = append(out, recipient{sub: s, focus: "Encounter/" + ev.EncounterID, checkTyp: "Encounter", checkID: ev.EncounterID})
		}
	}
	return out, nil
}

// rosterMembers returns the members whose roster holds the person member Patient
// patientID is linked to: none when it is linked to no person. Fan-out finds the
// recipients of an event with it, and every send checks the recipient is still one.
func (d *Dispatcher) rosterMembers(ctx context.Context, q db.Querier, patientID string) ([]string, error) {
	const op = "notify.Dispatcher.rosterMembers"
	src, err := d.persons.SourceByPatient(ctx, q, patientID)
	switch {
	case errs.CodeOf(err) == errs.NotFound:
		return nil, nil // linked to no person: nobody can have it on a roster
	case err != nil:
		return nil, errs.E(op, errs.Unavailable, "person lookup failed", err)
	}
	entries, err := d.store.RostersWithPerson(ctx, q, src.PersonID)
	if err != nil {
		return nil, errs.E(op, errs.Unavailable, "roster lookup failed", err)
	}
	members := make([]string, 0, len(entries))
	for _, e := range entries {
		members = append(members, e.MemberID)
	}
	return members, nil
}

// mayDisclose asks the enforcement point whether typ/id may be disclosed to member for
// treatment (records audits the decision under requestID): false when it is denied or
// gone, an errs.Unavailable error when it cannot be decided.
func (d *Dispatcher) mayDisclose(ctx context.Context, member, requestID, typ, id string) (bool, error) {
	switch _, err := d.records.Read(ctx, d.viewer(member, requestID), typ, id); {
	case err == nil:
		return true, nil
	case errs.CodeOf(err) == errs.NotFound:
		return false, nil // denied (or gone): records audited the denial
	default:
		return false, errs.E("notify.Dispatcher.mayDisclose", errs.Unavailable, "consent decision failed", err)
	}
}

// activeSubscriptions returns the active subscriptions of members whose end has not
// passed, by id.
func (d *Dispatcher) activeSubscriptions(ctx context.Context, tx db.Querier, members []string) ([]Subscription, error) {
	const op = "notify.Dispatcher.activeSubscriptions"
	rows, err := tx.Query(ctx, `SELECT `+subColumns+` FROM notify_subscriptions
		WHERE status = 'active' AND (ends_at IS NULL OR ends_at > now()) AND member_id = ANY($1) ORDER BY id`, members)
	if err != nil {
		return nil, errs.E(op, errs.Unavailable, "subscription lookup failed", err)
	}
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Subscription, error) { return scanSub(r) })
	if err != nil {
		return nil, errs.E(op, errs.Unavailable, "subscription lookup failed", err)
	}
	return all, nil
}

// decide asks the enforcement point, for every planned recipient, whether the resource
// that decides its notification (the Encounter; for a link event, see linkRecipients) may
// be disclosed to that member for treatment; records audits each decision. A decision
// that cannot be made marks the whole event for a retry. Every send decides again
// (mayStillSend): this decision only gives the event its number.
func (d *Dispatcher) decide(ctx context.Context, plans []plan) {
	sem := make(chan struct{}, d.cfg.Concurrency)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i := range plans {
		p := &plans[i]
		if p.err != nil {
			continue
		}
		p.permitted = make([]bool, len(p.recips))
		for j, r := range p.recips {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				ok, err := d.mayDisclose(ctx, r.sub.MemberID, fmt.Sprintf("notify-%d-%s", p.o.id, r.sub.ID), r.checkTyp, r.checkID)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					p.err = err
				}
				p.permitted[j] = ok // denied: this member hears nothing
			}()
		}
	}
	wg.Wait()
}

// viewer is who a notification discloses to: the subscription's member, as a system, for
// treatment.
func (d *Dispatcher) viewer(member, requestID string) records.Viewer {
	return records.Viewer{Client: d.cfg.ClientID, Org: member, Role: consent.RoleSystem, Purpose: consent.PurposeTreatment, RequestID: requestID}
}

// record numbers and queues the permitted notifications of p and settles its outbox row.
func (d *Dispatcher) record(ctx context.Context, tx db.Querier, p plan) error {
	const op = "notify.Dispatcher.record"
	for j, r := range p.recips {
		if !p.permitted[j] {
			continue
		}
		var lc []byte
		if r.context != nil {
			var err error
			if lc, err = json.Marshal(r.context); err != nil {
				return errs.E(op, errs.Internal, err)
			}
		}
		if _, err := tx.Exec(ctx, `WITH n AS (UPDATE notify_subscriptions SET events = events + 1, updated_at = now() WHERE id = $1 RETURNING events)
			INSERT INTO notify_deliveries (subscription_id, kind, event_number, outbox_id, focus, event_at, context, consent_ref)
			SELECT $1, 'event-notification', n.events, $2, $3, $4, $5, $6 FROM n`, r.sub.ID, p.o.id, r.focus, p.o.createdAt, lc, r.consentRef()); err != nil {
			return errs.E(op, errs.Unavailable, "could not queue a notification", err)
		}
	}
	if _, err := tx.Exec(ctx, `UPDATE outbox_events SET delivered_at = now(), attempts = attempts + 1 WHERE id = $1`, p.o.id); err != nil {
		return errs.E(op, errs.Unavailable, "could not settle the outbox event", err)
	}
	return nil
}

type claimedDelivery struct {
	id          int64
	kind        string
	eventNumber int64
	focus       string
	context     []byte // LinkContext JSON, or nil
	consentRef  string // notify_deliveries.consent_ref: "" when the focus decides consent
	topic       string // the outbox event's topic; "" for a handshake or heartbeat
	payload     []byte // the outbox event's payload (IDs and codes), or nil
	at          time.Time
	attempts    int
	sub         Subscription
}

// deliver claims due deliveries by moving their next_at a lease ahead (so a crashed
// sender's claims come back), sends each, and records the outcome: delivered, withheld,
// or due again after a backoff. A subscription whose end has passed has nothing claimed.
func (d *Dispatcher) deliver(ctx context.Context) (int, error) {
	const op = "notify.Dispatcher.deliver"
	rows, err := d.pool.Query(ctx, `UPDATE notify_deliveries d SET attempts = d.attempts + 1, next_at = now() + make_interval(secs => $2)
		FROM notify_subscriptions s
		WHERE s.id = d.subscription_id AND d.id IN (
			SELECT x.id FROM notify_deliveries x JOIN notify_subscriptions y ON y.id = x.subscription_id
			WHERE x.delivered_at IS NULL AND x.next_at <= now()
			  AND (x.kind = 'handshake' AND y.status = 'requested' OR x.kind <> 'handshake' AND y.status = 'active')
			  AND (y.ends_at IS NULL OR y.ends_at > now())
			ORDER BY x.id LIMIT $1 FOR UPDATE OF x SKIP LOCKED)
		RETURNING d.id, d.kind, d.event_number, d.focus, d.context, d.consent_ref,
			coalesce((SELECT o.topic FROM outbox_events o WHERE o.id = d.outbox_id), ''),
			(SELECT o.payload FROM outbox_events o WHERE o.id = d.outbox_id),
			d.event_at, d.attempts, `+subCols("s"),
		d.cfg.Batch, d.cfg.Lease.Seconds())
	if err != nil {
		return 0, errs.E(op, errs.Unavailable, "claim failed", err)
	}
	claimed, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (claimedDelivery, error) {
		var c claimedDelivery
		var headers []byte
		var status string
		s := &c.sub
		err := r.Scan(&c.id, &c.kind, &c.eventNumber, &c.focus, &c.context, &c.consentRef, &c.topic, &c.payload, &c.at, &c.attempts,
			&s.ID, &s.MemberID, &s.Topic, &s.Filter, &s.Endpoint, &headers, &s.Payload, &status, &s.Events, &s.Reason, &s.End)
		s.Status = Status(status)
		_ = json.Unmarshal(headers, &s.Headers)
		return c, err
	})
	if err != nil {
		return 0, errs.E(op, errs.Unavailable, "claim failed", err)
	}
	// Sends run concurrently (at most Concurrency at once); each settles on its own.
	sem := make(chan struct{}, d.cfg.Concurrency)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for _, c := range claimed {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			code, sendErr := d.send(ctx, c)
			if err := d.settle(ctx, c, code, sendErr); err != nil {
				mu.Lock()
				firstErr = cmp.Or(firstErr, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return len(claimed), firstErr
}

// errWithheld is send's answer for an event notification that mayStillSend says may no
// longer name its focus to the subscription's member: nothing was sent.
var errWithheld = errors.New("notify: event withheld at send time")

// send POSTs the notification Bundle to the subscription's endpoint with its headers.
// It returns the HTTP status (0 when there was no answer). Before an event notification
// is built, every attempt (a retry after a failure, or a resend after a crashed sender's
// lease ran out) decides again whether the member may be told (mayStillSend): if not, it
// sends nothing and returns errWithheld; if that cannot be decided, it sends nothing and
// returns an errs.Unavailable error, so the delivery is tried again later.
func (d *Dispatcher) send(ctx context.Context, c claimedDelivery) (int, error) {
	// The endpoint is re-checked at send time: the member's registered origins may have
	// changed since the subscription was made.
	if err := d.store.checkEndpoint(ctx, d.pool, c.sub.MemberID, c.sub.Endpoint); err != nil {
		return 0, err
	}
	if c.kind == TypeEvent && c.focus != "" {
		ok, err := d.mayStillSend(ctx, c)
		if err != nil {
			return 0, err
		}
		if !ok {
			return 0, errWithheld
		}
	}
	n := Notification{FHIRBase: d.cfg.FHIRBase, Sub: c.sub, Type: c.kind, At: time.Now()}
	n.Sub.Events = c.eventNumber
	if c.kind == TypeEvent {
		ev := Notified{EventNumber: c.eventNumber, Focus: c.focus, At: c.at.UTC().Format("2006-01-02T15:04:05.000Z07:00")}
		if len(c.context) > 0 {
			ev.Context = &LinkContext{}
			if err := json.Unmarshal(c.context, ev.Context); err != nil {
				return 0, errs.E("notify.send", errs.Internal, "stored link context unreadable", err)
			}
		}
		n.Events = []Notified{ev}
	}
	body, err := n.Bundle()
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.sub.Endpoint, bytes.NewReader(body))
	if err != nil {
		return 0, errs.E("notify.send", errs.Invalid, "bad endpoint", err)
	}
	for _, h := range c.sub.Headers {
		name, value, _ := strings.Cut(h, ":")
		req.Header.Set(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	req.Header.Set("Content-Type", "application/fhir+json")
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, errs.E("notify.send", errs.Unavailable, "the receiver did not accept the notification")
	}
	return resp.StatusCode, nil
}

// mayStillSend decides again, right before an attempt, whether event notification c may
// name its focus to the subscription's member, as fan-out decided when it numbered it:
//
//   - the member's roster still holds the person: for an encounter event, a live roster
//     entry of the member is linked to the person the event's Patient belongs to now; for a
//     link-changed event, the focus (the member's own Patient) is one of the event's moved
//     records, or a live roster entry of the member is linked to the focus's person;
//   - consent still permits it: records reads the resource that decided at fan-out
//     (cmp.Or(consent_ref, focus)) as the member, for treatment, and audits the decision
//     as a read, exactly as $events does.
//
// It returns false when either says no (a patient who withdrew consent or was taken off
// the roster after fan-out), and an errs.Unavailable error when the MPI, the roster, the
// consent store or the audit log cannot answer: then nothing may be sent.
func (d *Dispatcher) mayStillSend(ctx context.Context, c claimedDelivery) (bool, error) {
	var patient string
	switch c.topic {
	case OutboxTopicEncounter:
		var ev EncounterEvent
		if err := json.Unmarshal(c.payload, &ev); err != nil || ev.PatientID == "" {
			return false, nil
		}
		patient = ev.PatientID
	case mpistore.TopicLinkChanged:
		var ev mpistore.LinkChanged
		own, ok := strings.CutPrefix(c.focus, "Patient/")
		if err := json.Unmarshal(c.payload, &ev); err != nil || !ok {
			return false, nil
		}
		moved := false
		for _, m := range ev.Sources {
			moved = moved || m.Member == c.sub.MemberID && m.Patient == own
		}
		if !moved {
			patient = own
		}
	default:
		return false, nil // no outbox event vouches for the focus: name nothing
	}
	if patient != "" {
		members, err := d.rosterMembers(ctx, d.pool, patient)
		if err != nil || !slices.Contains(members, c.sub.MemberID) {
			return false, err
		}
	}
	typ, id, ok := strings.Cut(cmp.Or(c.consentRef, c.focus), "/")
	if !ok {
		return false, nil
	}
	return d.mayDisclose(ctx, c.sub.MemberID, fmt.Sprintf("notify-send-%d-%d", c.id, c.attempts), typ, id)
}

// settle records a send's outcome. A handshake that succeeds activates its
// subscription; one that keeps failing sets it to error.
//
// A withheld event notification (errWithheld) is settled, not dropped and not sent
// empty: its row is marked delivered with no status and loses its focus, link context and
// consent reference, so no later attempt, resend or $events can name the patient. Its
// number stays taken: events-since-subscription-start already counts it and later events
// carry higher numbers, so deleting the row would leave a gap that $events could never
// fill, while keeping it lets $events answer the gap as it answers for any focus the
// member may no longer see (the event number alone). Nothing is POSTed for it, because a
// notification after the withdrawal would still tell the member that something happened
// to a patient it follows, at that time.
func (d *Dispatcher) settle(ctx context.Context, c claimedDelivery, code int, sendErr error) error {
	const op = "notify.Dispatcher.settle"
	if errors.Is(sendErr, errWithheld) {
		if _, err := d.pool.Exec(ctx, `UPDATE notify_deliveries SET delivered_at = now(), last_status = NULL, focus = '', context = NULL, consent_ref = ''
			WHERE id = $1`, c.id); err != nil {
			return errs.E(op, errs.Unavailable, "could not record the withheld notification", err)
		}
		d.log.Info("notify: event withheld at send time; settled without its focus", "delivery", c.id, "subscription", c.sub.ID, "attempt", c.attempts)
		return nil
	}
	stopped := false // the failure set the subscription to error: no retry follows
	err := db.InTx(ctx, d.pool, func(tx db.Querier) error {
		stopped = false
		if sendErr == nil {
			if _, err := tx.Exec(ctx, `UPDATE notify_deliveries SET delivered_at = now(), last_status = $2 WHERE id = $1`, c.id, code); err != nil {
				return errs.E(op, errs.Unavailable, "could not record the delivery", err)
			}
			if c.kind == TypeHandshake {
				_, err := tx.Exec(ctx, `UPDATE notify_subscriptions SET status = 'active', updated_at = now() WHERE id = $1 AND status = 'requested'`, c.sub.ID)
				return err
			}
			return nil
		}
		if _, err := tx.Exec(ctx, `UPDATE notify_deliveries SET next_at = now() + make_interval(secs => $2), last_status = $3 WHERE id = $1`,
			c.id, d.backoff(c.attempts).Seconds(), code); err != nil {
			return errs.E(op, errs.Unavailable, "could not record the failure", err)
		}
		if errs.CodeOf(sendErr) == errs.Invalid {
			// The endpoint is no longer registered to the member (or no longer a valid
			// target): stop the subscription rather than retry for ever.
			_, err := tx.Exec(ctx, `UPDATE notify_subscriptions SET status = 'error', updated_at = now() WHERE id = $1`, c.sub.ID)
			stopped = err == nil
			return err
		}
		if c.kind == TypeHandshake && c.attempts >= d.cfg.MaxHandshakeAttempts {
			tag, err := tx.Exec(ctx, `UPDATE notify_subscriptions SET status = 'error', updated_at = now() WHERE id = $1 AND status = 'requested'`, c.sub.ID)
			stopped = err == nil && tag.RowsAffected() > 0
			return err
		}
		return nil
	})
	if err != nil || sendErr == nil {
		return err
	}
	// IDs and codes only: the endpoint URL and the cause's text may carry secrets.
	attrs := []any{"delivery", c.id, "subscription", c.sub.ID, "kind", c.kind, "status", code, "attempt", c.attempts, "cause", errs.CodeOf(sendErr).String()}
	if stopped {
		d.log.Warn("notify: delivery failed; subscription set to error, no further attempts", attrs...)
	} else {
		d.log.Info("notify: delivery failed; will retry", append(attrs, "retry_in", d.backoff(c.attempts).String())...)
	}
	return nil
}
