package directory

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/concord-hie/concord/internal/db"
)

// Listings returns the Listing of each member whose ID is in memberIDs (every member when
// memberIDs is nil), by member ID, with the identifier systems it registered, its NPI and
// the endpoints it publishes. HookOrigins are left empty: notify keeps them
// (notify.Store.EndpointOrigins). Unknown IDs are left out, not an error.
func (s *Store) Listings(ctx context.Context, memberIDs []string) ([]Listing, error) {
	const op = "directory.Store.Listings"
	rows, err := s.db.Query(ctx, `SELECT m.id, m.name, m.system, m.part2_program, coalesce(m.npi, ''),
			coalesce(array_agg(a.system ORDER BY a.system) FILTER (WHERE a.system IS NOT NULL), '{}')
		FROM directory_members m LEFT JOIN directory_authorities a ON a.member_id = m.id
		WHERE $1::text[] IS NULL OR m.id = ANY($1)
		GROUP BY m.id ORDER BY m.id`, memberIDs)
	if err != nil {
		return nil, db.Map(op, err)
	}
	ls, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Listing, error) {
		var l Listing
		return l, r.Scan(&l.Member.ID, &l.Member.Name, &l.Member.System, &l.Member.Part2, &l.NPI, &l.Systems)
	})
	if err != nil || len(ls) == 0 {
		return ls, db.Map(op, err)
	}
	ids := make([]string, len(ls))
	for i, l := range ls {
		ids[i] = l.Member.ID
	}
	eps, err := publishedEndpoints(ctx, s.db, ids)
	if err != nil {
		return nil, db.Map(op, err)
	}
	for i := range ls {
		ls[i].Endpoints = eps[ls[i].Member.ID]
	}
	return ls, nil
}
