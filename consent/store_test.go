package consent_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/internal/testkit"
)

// newPerson inserts a person into the MPI table the consent tables reference.
func newPerson(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	var id string
	if err := pool.QueryRow(context.Background(), `INSERT INTO mpi_persons (id) VALUES (gen_random_uuid()) RETURNING id::text`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

func denyOrg(person, id, org string) consent.Directive {
	return consent.Directive{ID: consent.DirectiveID(id), PersonID: person, Kind: consent.KindPatient,
		PolicyRule: consent.OptOut, Status: consent.StatusActive, DateTime: time.Date(2026, 3, 12, 0, 0, 0, 0, time.UTC),
		Provision: consent.Provision{Type: consent.Deny, Actors: []consent.Actor{{Role: consent.ParticipationRecipient, Reference: "Organization/" + org}}}}
}

func save(t *testing.T, pool *pgxpool.Pool, s *consent.Store, d consent.Directive) (consent.Directive, consent.Versions) {
	t.Helper()
	var got consent.Directive
	var vs consent.Versions
	err := db.InTx(context.Background(), pool, func(tx db.Querier) error {
		var err error
		got, vs, err = s.Save(context.Background(), tx, d, "officer-1")
		return err
	})
	if err != nil {
		t.Fatalf("Save %s: %v", d.ID, err)
	}
	return got, vs
}

func labRead(person, org string, at time.Time) consent.Request {
	return consent.Request{Actor: "Practitioner/x", ActorRole: consent.RoleClinician, Org: org, Purpose: consent.PurposeTreatment,
		PersonID: person, Class: consent.Class{ResourceType: "Observation", Categories: []string{"laboratory"}}, At: at}
}

func TestStoreVersionsAndAsOf(t *testing.T) {
	ctx := context.Background()
	pool := testkit.DB(t)
	s := consent.NewStore()
	p := newPerson(t, pool)

	var seeded int
	if err := db.InTx(ctx, pool, func(tx db.Querier) error {
		var err error
		seeded, err = s.EnsureDefaults(ctx, tx, consent.DefaultPolicies(consent.PolicyConfig{}), "system")
		return err
	}); err != nil || seeded != 2 {
		t.Fatalf("EnsureDefaults = %d, %v", seeded, err)
	}
	if err := db.InTx(ctx, pool, func(tx db.Querier) error {
		seeded, _ = s.EnsureDefaults(ctx, tx, consent.DefaultPolicies(consent.PolicyConfig{}), "system")
		return nil
	}); err != nil || seeded != 0 {
		t.Fatalf("second EnsureDefaults saved %d", seeded)
	}

	vs0, err := s.Versions(ctx, pool, p)
	if err != nil || vs0.Person != 0 || vs0.Policy != 2 {
		t.Fatalf("Versions before save = %+v, %v", vs0, err)
	}
	before := time.Now()
	time.Sleep(5 * time.Millisecond)

	d1, vs1 := save(t, pool, s, denyOrg(p, "dissent-1", "org-b"))
	if d1.Version != 1 || vs1.Person != 1 || vs1.Policy != 2 {
		t.Fatalf("first save: version %d, versions %+v", d1.Version, vs1)
	}
	time.Sleep(5 * time.Millisecond)
	afterV1 := time.Now()
	time.Sleep(5 * time.Millisecond)

	// Version 2 withdraws the dissent.
	v2 := d1
	v2.Status, v2.Version = consent.StatusInactive, 2
	d2, vs2 := save(t, pool, s, v2)
	if d2.Version != 2 || vs2.Person != 2 {
		t.Fatalf("second save: version %d, versions %+v", d2.Version, vs2)
	}

	// A stale edit (expects to create version 2 again) loses.
	err = db.InTx(ctx, pool, func(tx db.Querier) error {
		_, _, err := s.Save(ctx, tx, v2, "officer-2")
		return err
	})
	if !errs.Is(err, errs.Conflict) {
		t.Fatalf("stale save: %v, want Conflict", err)
	}
	if vs, _ := s.Versions(ctx, pool, p); vs.Person != 2 {
		t.Fatalf("failed save bumped the version: %+v", vs)
	}

	now, err := s.Load(ctx, pool, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(now) != 3 {
		t.Fatalf("Load: %d directives, want 2 defaults + 1", len(now))
	}
	decide := func(dirs []consent.Directive, at time.Time) consent.Decision {
		return consent.Decide(dirs, labRead(p, "org-b", at))
	}
	if d := decide(now, time.Now()); !d.Allow {
		t.Errorf("after withdrawal: %v by %s", d.Reason, d.By)
	}
	then, err := s.LoadAt(ctx, pool, p, afterV1)
	if err != nil {
		t.Fatal(err)
	}
	if d := decide(then, afterV1); d.Allow || d.Reason != consent.Denied || d.By != "dissent-1" {
		t.Errorf("as of version 1: %v by %s, want Denied by dissent-1", d.Reason, d.By)
	}
	if d := decide(mustLoadAt(t, s, pool, p, before), before); !d.Allow || d.By != consent.PolicyTreatmentID {
		t.Errorf("before any dissent: %v by %s", d.Reason, d.By)
	}
	// The default policy titles survive storage, so explanations can name them.
	for _, d := range now {
		if d.Kind == consent.KindDefault && d.Title == "" {
			t.Errorf("default %s lost its title", d.ID)
		}
	}

	hist, err := s.History(ctx, pool, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 4 {
		t.Fatalf("History: %d versions, want 4", len(hist))
	}
	if d := consent.DecideAsOf(hist, labRead(p, "org-b", afterV1)); d.Reason != consent.Denied {
		t.Errorf("DecideAsOf over history: %v", d.Reason)
	}

	// Another person's directives never load for p.
	q := newPerson(t, pool)
	save(t, pool, s, denyOrg(q, "dissent-q", "org-a"))
	for _, d := range mustLoadAt(t, s, pool, p, time.Now()) {
		if d.PersonID == q {
			t.Fatal("loaded another person's directive")
		}
	}
	// Reusing p's directive ID for q is refused.
	err = db.InTx(ctx, pool, func(tx db.Querier) error {
		_, _, err := s.Save(ctx, tx, denyOrg(q, "dissent-1", "org-a"), "officer-1")
		return err
	})
	if !errs.Is(err, errs.Conflict) {
		t.Errorf("ID reuse across persons: %v, want Conflict", err)
	}
}

func mustLoadAt(t *testing.T, s *consent.Store, pool *pgxpool.Pool, p string, at time.Time) []consent.Directive {
	t.Helper()
	ds, err := s.LoadAt(context.Background(), pool, p, at)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func TestStoreRejects(t *testing.T) {
	ctx := context.Background()
	pool := testkit.DB(t)
	s := consent.NewStore()
	p := newPerson(t, pool)
	tests := []struct {
		name string
		d    consent.Directive
		code errs.Code
	}{
		{"invalid directive", func() consent.Directive {
			d := denyOrg(p, "x1", "org-b")
			d.Provision.Purposes = []string{"HMARKT"}
			return d
		}(), errs.Invalid},
		{"unknown person", denyOrg("00000000-0000-0000-0000-000000000001", "x2", "org-b"), errs.Invalid},
		{"person not a uuid", denyOrg("not-a-uuid", "x3", "org-b"), errs.Invalid},
	}
	for _, tt := range tests {
		err := db.InTx(ctx, pool, func(tx db.Querier) error {
			_, _, err := s.Save(ctx, tx, tt.d, "officer-1")
			return err
		})
		if !errs.Is(err, tt.code) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.code)
		}
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM consent_directives`).Scan(&n); err != nil || n != 0 {
		t.Errorf("rejected saves left %d rows (%v)", n, err)
	}
}

// TestStoreConcurrentSaves races saves for one person: the person's version counts every
// save exactly once and every directive keeps a gapless version sequence.
func TestStoreConcurrentSaves(t *testing.T) {
	ctx := context.Background()
	pool := testkit.DB(t)
	s := consent.NewStore()
	p := newPerson(t, pool)
	const workers, each = 4, 5
	var wg sync.WaitGroup
	errc := make(chan error, workers*each)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				// Two directives shared by all workers, saved with "next version".
				d := denyOrg(p, fmt.Sprintf("d%d", (w+i)%2), "org-b")
				errc <- db.InTx(ctx, pool, func(tx db.Querier) error {
					_, _, err := s.Save(ctx, tx, d, "officer-1")
					return err
				})
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			t.Fatal(err)
		}
	}
	vs, err := s.Versions(ctx, pool, p)
	if err != nil || vs.Person != workers*each {
		t.Fatalf("person version %d (%v), want %d", vs.Person, err, workers*each)
	}
	var rows, current int
	var gapless bool
	err = pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE valid_to IS NULL),
		bool_and(max_v = n) FROM (SELECT directive_id, valid_to, max(version) OVER w AS max_v, count(*) OVER w AS n
		FROM consent_directives WHERE person_id = $1 WINDOW w AS (PARTITION BY directive_id)) x`, p).Scan(&rows, &current, &gapless)
	if err != nil || rows != workers*each || current != 2 || !gapless {
		t.Fatalf("rows %d current %d gapless %v (%v)", rows, current, gapless, err)
	}
}

// TestStoreUnavailable: when the store cannot answer, Load fails with Unavailable,
// never an empty (deny-by-default but "no consent") success.
func TestStoreUnavailable(t *testing.T) {
	pool := testkit.DB(t)
	s := consent.NewStore()
	p := newPerson(t, pool)
	ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel()
	time.Sleep(time.Millisecond)
	if _, err := s.Load(ctx, pool, p); !errs.Is(err, errs.Unavailable) {
		t.Errorf("Load on an expired context: %v, want Unavailable", err)
	}
	pool.Close()
	if _, err := s.Load(context.Background(), pool, p); err == nil {
		t.Error("Load on a closed pool succeeded")
	}
}

// TestStoreRevocationIsImmediate races decisions (Load + Decide) against a revocation:
// no decision that starts after the revoking transaction commits may permit.
func TestStoreRevocationIsImmediate(t *testing.T) {
	ctx := context.Background()
	pool := testkit.DB(t)
	s := consent.NewStore()
	p := newPerson(t, pool)
	// An OPTIN permit for payment, the only thing that allows org-b's HPAYMT request.
	grant := consent.Directive{ID: "pay-b", PersonID: p, Kind: consent.KindPatient, PolicyRule: consent.OptIn,
		Status: consent.StatusActive, Provision: consent.Provision{Type: consent.Permit,
			Purposes: []string{consent.PurposePayment}, Actors: []consent.Actor{{Reference: "Organization/org-b"}}}}
	grant, _ = save(t, pool, s, grant)

	type obs struct {
		start time.Time
		allow bool
	}
	var (
		mu      sync.Mutex
		seen    []obs
		stop    = make(chan struct{})
		wg      sync.WaitGroup
		permits int
	)
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				dirs, err := s.Load(ctx, pool, p)
				if err != nil {
					t.Error(err)
					return
				}
				req := labRead(p, "org-b", time.Now())
				req.Purpose = consent.PurposePayment
				d := consent.Decide(dirs, req)
				mu.Lock()
				seen = append(seen, obs{start, d.Allow})
				mu.Unlock()
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	revoke := grant
	revoke.Status = consent.StatusInactive
	revoke.Version = 0
	save(t, pool, s, revoke)
	committed := time.Now()
	time.Sleep(50 * time.Millisecond)
	close(stop)
	wg.Wait()
	var before, after int
	for _, o := range seen {
		if o.start.After(committed) {
			after++
			if o.allow {
				t.Errorf("permit for a decision that started %v after the revocation committed", o.start.Sub(committed))
			}
		} else {
			before++
			if o.allow {
				permits++
			}
		}
	}
	if after == 0 || permits == 0 {
		t.Fatalf("race not exercised: %d decisions before (%d permits), %d after", before, permits, after)
	}
	t.Logf("%d decisions before the revocation (%d permits), %d after (0 permits)", before, permits, after)
}

func TestStoreDecideFailsClosed(t *testing.T) {
	pool := testkit.DB(t)
	s := consent.NewStore()
	p := newPerson(t, pool)
	req := labRead(p, "org-b", time.Now())
	d, err := s.Decide(context.Background(), pool, req)
	if err != nil || d.Reason != consent.NoDirective {
		t.Fatalf("nothing on file: %v, %v; want NoDirective and no error", d.Reason, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d, err = s.Decide(ctx, pool, req)
	if !errs.Is(err, errs.Unavailable) || d.Allow || d.Reason != consent.ConsentUnavailable || d.Exception == "" {
		t.Fatalf("store unreachable: %+v, %v; want a ConsentUnavailable denial and Unavailable", d, err)
	}
}

func TestStoreFiledBy(t *testing.T) {
	ctx := context.Background()
	pool := testkit.DB(t)
	s := consent.NewStore()
	p := newPerson(t, pool)
	save(t, pool, s, denyOrg(p, "by-officer", "org-x"))
	err := db.InTx(ctx, pool, func(tx db.Querier) error {
		_, _, err := s.SaveFiled(ctx, tx, denyOrg(p, "by-member", "org-x"), "client-a", "member-a")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]string{"by-officer": "", "by-member": "member-a"} {
		if got, err := s.FiledBy(ctx, pool, consent.DirectiveID(id)); err != nil || got != want {
			t.Fatalf("FiledBy(%s) = %q, %v; want %q", id, got, err, want)
		}
	}
	if _, err := s.FiledBy(ctx, pool, "never"); errs.CodeOf(err) != errs.NotFound {
		t.Fatalf("FiledBy(unknown): %v; want NotFound", err)
	}
}

// TestEnsureDefaultsUpgrades: a default as an earlier release saved it (the right-of-access
// policy without the share-link role) is brought up to date, once; one an officer edited
// is kept.
func TestEnsureDefaultsUpgrades(t *testing.T) {
	ctx := context.Background()
	pool := testkit.DB(t)
	s := consent.NewStore()
	p := newPerson(t, pool)
	ensure := func(cfg consent.PolicyConfig) int {
		t.Helper()
		var n int
		if err := db.InTx(ctx, pool, func(tx db.Querier) (err error) {
			n, err = s.EnsureDefaults(ctx, tx, consent.DefaultPolicies(cfg), "system")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := ensure(consent.PolicyConfig{}); n != 2 {
		t.Fatalf("first EnsureDefaults saved %d, want 2", n)
	}
	access := consent.DefaultPolicies(consent.PolicyConfig{})[1]
	old := access
	old.Provision.Actors = old.Provision.Actors[:2]
	old.Version = 2
	if err := db.InTx(ctx, pool, func(tx db.Querier) error {
		_, _, err := s.Save(ctx, tx, old, "system")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if n := ensure(consent.PolicyConfig{}); n != 1 {
		t.Fatalf("EnsureDefaults after an older default saved %d, want 1", n)
	}
	if n := ensure(consent.PolicyConfig{}); n != 0 {
		t.Fatalf("EnsureDefaults again saved %d, want 0", n)
	}
	if err := db.InTx(ctx, pool, func(tx db.Querier) error {
		edited := access
		edited.Provision.Actors, edited.Version = edited.Provision.Actors[:1], 4
		_, _, err := s.Save(ctx, tx, edited, "officer-1")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if n := ensure(consent.PolicyConfig{}); n != 0 {
		t.Fatalf("EnsureDefaults over an officer's edit saved %d, want 0", n)
	}
	loaded, err := s.Load(ctx, pool, p)
	var cur consent.Directive
	for _, d := range loaded {
		if d.ID == access.ID {
			cur = d
		}
	}
	if err != nil || cur.Version != 4 || len(cur.Provision.Actors) != 1 {
		t.Fatalf("right-of-access after an officer's edit: v%d %v, %v", cur.Version, cur.Provision.Actors, err)
	}
	// A changed configuration takes effect once on the unedited policy, and only once,
	// whatever the time zone of its effective date.
	cfg := consent.PolicyConfig{TreatmentLabels: []string{"PSY"}, Effective: time.Date(2026, 3, 1, 9, 0, 0, 0, time.FixedZone("PST", -8*3600))}
	if n := ensure(cfg); n != 1 {
		t.Fatalf("EnsureDefaults with a new configuration saved %d, want 1", n)
	}
	if n := ensure(cfg); n != 0 {
		t.Fatalf("EnsureDefaults with the same configuration again saved %d, want 0", n)
	}
}
