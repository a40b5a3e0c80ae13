package notify

import (
	"context"

	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

// EndpointOrigins returns the rest-hook origins registered (RegisterEndpoint) and not
// removed (RemoveEndpointOrigins) for each member in memberIDs (every member when
// memberIDs is nil), in order, by member ID. A member with none is absent.
func (s *Store) EndpointOrigins(ctx context.Context, q db.Querier, memberIDs []string) (map[string][]string, error) {
	const op = "notify.Store.EndpointOrigins"
	rows, err := q.Query(ctx, `SELECT member_id, origin FROM notify_endpoints
		WHERE ($1::text[] IS NULL OR member_id = ANY($1)) AND removed_at IS NULL ORDER BY member_id, origin`, memberIDs)
	if err != nil {
		return nil, errs.E(op, errs.Unavailable, "endpoint lookup failed", err)
	}
	defer rows.Close()
	out := map[string][]string{}
	for rows.Next() {
		var m, o string
		if err := rows.Scan(&m, &o); err != nil {
			return nil, errs.E(op, errs.Unavailable, "endpoint lookup failed", err)
		}
		out[m] = append(out[m], o)
	}
	if err := rows.Err(); err != nil {
		return nil, errs.E(op, errs.Unavailable, "endpoint lookup failed", err)
	}
	return out, nil
}
