package consent

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/testkit"
)

// planNode is the part of an EXPLAIN (FORMAT JSON) node the plan test reads.
type planNode struct {
	NodeType      string     `json:"Node Type"`
	Relation      string     `json:"Relation Name"`
	Index         string     `json:"Index Name"`
	RemovedFilter float64    `json:"Rows Removed by Filter"`
	Plans         []planNode `json:"Plans"`
}

// walk calls f for n and every node below it.
func (n planNode) walk(f func(planNode)) {
	f(n)
	for _, k := range n.Plans {
		k.walk(f)
	}
}

// TestStoreLoadUsesIndexes checks that Load, LoadAt and History, which every consent
// decision missing the cache, every preview and every simulation runs, look a merge
// family's directives up by index (consent_directives_person, and the default policies by
// consent_directives_defaults) instead of filtering every directive of every patient: with
// person_id IN (SELECT ... mpi_person_family($1)) OR person_id IS NULL, PostgreSQL cannot
// make a semi-join under the OR and scans the whole table, so each Load grew with the
// region (consent review R3). It seeds 20,000 other patients' directives, EXPLAINs the
// three statements for a person with a merged-in person, and checks they still return
// exactly the family's directives and the defaults.
func TestStoreLoadUsesIndexes(t *testing.T) {
	ctx := context.Background()
	pool := testkit.DB(t)
	s := NewStore()
	var kept, lost string
	if err := pool.QueryRow(ctx, `SELECT gen_random_uuid()::text, gen_random_uuid()::text`).Scan(&kept, &lost); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO mpi_persons (id) VALUES ($1), ($2)`, kept, lost); err != nil {
		t.Fatal(err)
	}
	deny := func(person, id string) Directive {
		return Directive{ID: DirectiveID(id), PersonID: person, Kind: KindPatient, PolicyRule: OptOut, Status: StatusActive,
			DateTime:  time.Date(2026, 3, 12, 0, 0, 0, 0, time.UTC),
			Provision: Provision{Type: Deny, Actors: []Actor{{Role: ParticipationRecipient, Reference: "Organization/org-x"}}}}
	}
	err := db.InTx(ctx, pool, func(tx db.Querier) error {
		if _, err := s.EnsureDefaults(ctx, tx, DefaultPolicies(PolicyConfig{}), "concord"); err != nil {
			return err
		}
		for _, d := range []Directive{deny(kept, "kept-1"), deny(lost, "lost-1"), deny(lost, "lost-2")} {
			if _, _, err := s.Save(ctx, tx, d, "officer-1"); err != nil {
				return err
			}
		}
		// A second version of lost-2, so History has a closed version to return.
		_, _, err := s.Save(ctx, tx, deny(lost, "lost-2"), "officer-1")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE mpi_persons SET retired_into = $1 WHERE id = $2`, kept, lost); err != nil {
		t.Fatal(err)
	}
	// 20,000 other persons, one current and one closed directive each (the stored
	// resource is never read here).
	if _, err := pool.Exec(ctx, `
		WITH ps AS (INSERT INTO mpi_persons (id) SELECT gen_random_uuid() FROM generate_series(1, 20000) RETURNING id)
		INSERT INTO consent_directives (directive_id, version, person_id, kind, status, resource, valid_from, valid_to, saved_by)
		SELECT 'seed-' || id::text, v, id, 'patient', 'active', '{}'::jsonb, now() - interval '1 day',
			CASE WHEN v = 1 THEN now() - interval '1 hour' END, 'seed'
		FROM ps, generate_series(1, 2) v`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `ANALYZE consent_directives; ANALYZE mpi_persons; ANALYZE mpi_person_redirects`); err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		name string
		sql  string
		args []any
	}{
		{"Load", loadSQL, []any{kept}},
		{"Load of the lost person", loadSQL, []any{lost}},
		{"LoadAt", loadAtSQL, []any{kept, time.Now()}},
		{"History", historySQL, []any{kept}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var raw []byte
			if err := pool.QueryRow(ctx, `EXPLAIN (ANALYZE, FORMAT JSON) `+tt.sql, tt.args...).Scan(&raw); err != nil {
				t.Fatal(err)
			}
			var plan []struct{ Plan planNode }
			if err := json.Unmarshal(raw, &plan); err != nil {
				t.Fatal(err)
			}
			var seq, byPerson bool
			var removed float64
			plan[0].Plan.walk(func(n planNode) {
				seq = seq || (n.NodeType == "Seq Scan" && n.Relation == "consent_directives")
				byPerson = byPerson || n.Index == "consent_directives_person"
				removed += n.RemovedFilter
			})
			if seq || !byPerson || removed > 100 {
				t.Errorf("%s scans consent_directives (seq scan %v, consent_directives_person used %v, %v rows removed by filter); want index lookups by merge family:\n%s",
					tt.name, seq, byPerson, removed, raw)
			}
		})
	}

	ids := func(dirs []Directive) []string {
		var out []string
		for _, d := range dirs {
			if d.Kind == KindPatient {
				out = append(out, string(d.ID)+"@"+d.AppliesTo)
			}
		}
		slices.Sort(out)
		return out
	}
	want := []string{"kept-1@", "lost-1@" + kept, "lost-2@" + kept}
	now, err := s.Load(ctx, pool, kept)
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(now); !slices.Equal(got, want) {
		t.Errorf("Load(kept) patient directives = %v; want %v", got, want)
	}
	if n := len(now) - len(want); n != len(DefaultPolicies(PolicyConfig{})) {
		t.Errorf("Load(kept) returned %d default policies; want %d", n, len(DefaultPolicies(PolicyConfig{})))
	}
	at, err := s.LoadAt(ctx, pool, kept, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(at); !slices.Equal(got, want) || len(at) != len(now) {
		t.Errorf("LoadAt(kept, now) = %v (%d); want %v (%d)", got, len(at), want, len(now))
	}
	hist, err := s.History(ctx, pool, kept)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i, v := range hist {
		if i > 0 && v.ValidFrom.Before(hist[i-1].ValidFrom) {
			t.Errorf("History is not oldest first at %d", i)
		}
		if v.Directive.Kind == KindPatient {
			got = append(got, string(v.Directive.ID))
		}
	}
	slices.Sort(got)
	if want := []string{"kept-1", "lost-1", "lost-2", "lost-2"}; !slices.Equal(got, want) {
		t.Errorf("History(kept) patient versions = %v; want %v", strings.Join(got, " "), want)
	}
}
