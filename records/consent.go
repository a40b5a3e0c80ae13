package records

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

// StoreDirectives serves Directives from consent.Store in PostgreSQL: the person's own
// directives plus the regional default policies, as stored (EnsureDefaults puts the
// documented defaults there at start-up). It implements consent.VersionedSource, so
// consent.Cache can decorate it.
//
// Every call runs under Timeout; a failure or timeout is errs.Unavailable and the caller
// denies with 503. "Nothing on file" is not an error: Decide then denies.
type StoreDirectives struct {
	pool    *pgxpool.Pool
	store   *consent.Store
	timeout time.Duration
	// asOfAfter: a time more than this before now is answered from history (LoadAt).
	asOfAfter time.Duration
	now       func() time.Time
}

// NewStoreDirectives returns the PostgreSQL directive source. timeout bounds each lookup
// (default 2 s); now may be nil (time.Now).
func NewStoreDirectives(pool *pgxpool.Pool, store *consent.Store, timeout time.Duration, now func() time.Time) *StoreDirectives {
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	if now == nil {
		now = time.Now
	}
	return &StoreDirectives{pool: pool, store: store, timeout: timeout, asOfAfter: time.Minute, now: now}
}

// Timeout is the bound on each lookup; a caller that reads the consent versions in its own
// statement (consent.VersionsSQL) bounds that statement by it.
func (d *StoreDirectives) Timeout() time.Duration { return d.timeout }

// unavailable makes every failure to read consent a 503: whatever went wrong, the
// decision cannot be made, and the answer is deny.
func unavailable(op string, err error) error {
	return errs.E(op, errs.Unavailable, "consent store unavailable", err)
}

// InForce returns the directives in force for person at at. For a time within the last
// minute (every live decision) these are the currently stored ones, read fresh, so a
// save committed before the call is always seen; Decide applies periods with req.At. An
// older at is an as-of question answered with consent.Store.LoadAt.
func (d *StoreDirectives) InForce(ctx context.Context, person string, at time.Time) ([]consent.Directive, error) {
	const op = "records.StoreDirectives.InForce"
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	var dirs []consent.Directive
	var err error
	if at.Before(d.now().Add(-d.asOfAfter)) {
		dirs, err = d.store.LoadAt(ctx, d.pool, person, at)
	} else {
		dirs, err = d.store.Load(ctx, d.pool, person)
	}
	if err != nil {
		return nil, unavailable(op, err)
	}
	return dirs, nil
}

// Versions returns person's consent version and the policy version (one single-row query).
func (d *StoreDirectives) Versions(ctx context.Context, person string) (consent.Versions, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	v, err := d.store.Versions(ctx, d.pool, person)
	if err != nil {
		return consent.Versions{}, unavailable("records.StoreDirectives.Versions", err)
	}
	return v, nil
}

// Current returns the current directives and the versions they belong to, read in one
// repeatable-read snapshot, so a cache entry never pairs new versions with old directives.
func (d *StoreDirectives) Current(ctx context.Context, person string) ([]consent.Directive, consent.Versions, error) {
	const op = "records.StoreDirectives.Current"
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	var dirs []consent.Directive
	var v consent.Versions
	err := db.InTxOpts(ctx, d.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx db.Querier) error {
		var err error
		if v, err = d.store.Versions(ctx, tx, person); err != nil {
			return err
		}
		dirs, err = d.store.Load(ctx, tx, person)
		return err
	})
	if err != nil {
		return nil, consent.Versions{}, unavailable(op, err)
	}
	return dirs, v, nil
}

// EnsureDefaultPolicies saves the regional default policies that were never stored (see
// consent.Store.EnsureDefaults), in one transaction; run it at start-up. Instances
// starting together are serialized by a transaction-scoped advisory lock, so only one
// saves them.
func EnsureDefaultPolicies(ctx context.Context, pool *pgxpool.Pool, store *consent.Store, cfg consent.PolicyConfig) (int, error) {
	n := 0
	err := db.InTx(ctx, pool, func(tx db.Querier) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('concord.consent.defaults'))`); err != nil {
			return err
		}
		var err error
		n, err = store.EnsureDefaults(ctx, tx, consent.DefaultPolicies(cfg), "concord")
		return err
	})
	return n, err
}

// Directive returns the current version of directive id (a patient's or a default
// policy), errs.NotFound when there is none, errs.Unavailable when it cannot be read.
func (d *StoreDirectives) Directive(ctx context.Context, q db.Querier, id consent.DirectiveID) (consent.Directive, error) {
	const op = "records.StoreDirectives.Directive"
	if q == nil {
		q = d.pool
	}
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	var res []byte
	var title string
	err := q.QueryRow(ctx, `SELECT resource, title FROM consent_directives WHERE directive_id = $1 AND valid_to IS NULL`, string(id)).Scan(&res, &title)
	if errors.Is(err, pgx.ErrNoRows) {
		return consent.Directive{}, errs.E(op, errs.NotFound, "consent not found")
	}
	if err != nil {
		return consent.Directive{}, unavailable(op, err)
	}
	dir, err := consent.ParseConsent(res, time.UTC)
	if err != nil {
		return consent.Directive{}, errs.E(op, errs.Internal, "stored directive does not parse", err)
	}
	dir.Title = title
	return dir, nil
}

// AsOf returns the directives that were stored at transaction time at, for as-of
// questions ("could Clinic B see the labs on 3 March?"): consent.Store.LoadAt.
func (d *StoreDirectives) AsOf(ctx context.Context, person string, at time.Time) ([]consent.Directive, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	dirs, err := d.store.LoadAt(ctx, d.pool, person, at)
	if err != nil {
		return nil, unavailable("records.StoreDirectives.AsOf", err)
	}
	return dirs, nil
}
