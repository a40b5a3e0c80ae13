package store

import (
	"context"
	"sort"

	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/mpi"
)

// Scored is a candidate person for a record: its best edge, the outcome that edge alone
// would have, and the posterior match probability of the weight.
type Scored struct {
	Person PersonID
	// Weight is the Fellegi–Sunter weight (log2 m/u, summed over fields) of the best edge.
	Weight float64
	// Probability is Model.Probability(Weight): the posterior under the model's prior
	// λ, p = λ·2^w / (1 − λ + λ·2^w). Monotone in Weight, 0..1.
	Probability float64
	// Band is the engine's decision for this person alone: AutoLink at or above the link
	// threshold with no guard; Review in the band or when a guard fired; NoLink below.
	Band   mpi.Outcome
	Guards mpi.Guard
	// Certain is set on the best person only, when the engine would auto-link the record
	// to it: Band AutoLink and a lead of at least the model's margin over the runner-up.
	Certain bool
	// Upper reports whether the weight is in the upper half of the review band (or above
	// the link threshold with a guard): a "probable" rather than "possible" match.
	Upper bool
	// Edges holds the weight of the edge to each of the person's source records Score
	// compared, by the record's member Patient id (EdgeProbability).
	Edges map[string]float64
}

// Score rates r against every person that shares a blocking key with it, best first (ties
// by person ID). It reads only; nothing is created. A person below the review band is
// included with Band NoLink; callers decide whether to show it.
func (m *Matcher) Score(ctx context.Context, q db.Querier, r *mpi.Record) ([]Scored, error) {
	patients := map[*mpi.Record]string{}
	byPerson, err := m.candidatesOf(ctx, q, r, patients)
	if err != nil {
		return nil, err
	}
	out := make([]Scored, 0, len(byPerson))
	for p, recs := range byPerson {
		s := Scored{Person: PersonID(p), Weight: -1e9, Edges: make(map[string]float64, len(recs))}
		for _, o := range recs {
			w, ev := m.model.Score(r, o)
			s.Edges[patients[o]] = w
			s.Guards |= m.model.Guard(r, o, ev.Levels)
			if w > s.Weight {
				s.Weight = w
			}
		}
		s.Probability = m.model.Probability(s.Weight)
		s.Band = m.model.Decide(s.Weight, s.Guards)
		s.Upper = s.Weight >= m.model.Link || s.Weight >= (m.model.Review+m.model.Link)/2
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Weight != out[j].Weight {
			return out[i].Weight > out[j].Weight
		}
		return out[i].Person < out[j].Person
	})
	if len(out) > 0 && out[0].Band == mpi.AutoLink && (len(out) == 1 || out[0].Weight-out[1].Weight >= m.model.Margin) {
		out[0].Certain = true
	}
	return out, nil
}

// CertainAmong reports whether scored[i] (Score's answer, best first) is a certain match
// among the persons visible says a caller may see: the engine would auto-link to it (Band
// AutoLink) and it leads every later person the caller may see by at least the model's
// margin. Persons the caller may not see do not count, so the answer says nothing about
// them; the earlier ones are taken to be such persons (the caller skipped them). visible
// is asked only about persons within the margin, usually none.
func (m *Matcher) CertainAmong(scored []Scored, i int, visible func(PersonID) (bool, error)) (bool, error) {
	if i < 0 || i >= len(scored) || scored[i].Band != mpi.AutoLink {
		return false, nil
	}
	for _, next := range scored[i+1:] {
		if scored[i].Weight-next.Weight >= m.model.Margin {
			break // sorted by weight: every later person is further behind
		}
		ok, err := visible(next.Person)
		if err != nil || ok {
			return false, err
		}
	}
	return true, nil
}

// EdgeProbability returns the posterior match probability of the edge from Score's record
// to the source record of member Patient patientID alone, and whether Score compared that
// record (else ScoreSource reads it).
func (m *Matcher) EdgeProbability(sc Scored, patientID string) (float64, bool) {
	w, ok := sc.Edges[patientID]
	if !ok {
		return 0, false
	}
	return m.model.Probability(w), true
}

// ScoreSource rates r against the source record of member Patient patientID alone and
// returns the posterior match probability of that one edge (Model.Probability of its
// weight): the score of an answer that names that Patient and must say nothing about the
// person's other records, which the caller may not see. errs.NotFound when the Patient has
// no source record; a record the engine cannot read scores 0.
func (m *Matcher) ScoreSource(ctx context.Context, q db.Querier, r *mpi.Record, patientID string) (float64, error) {
	var features, demo []byte
	err := q.QueryRow(ctx, `SELECT features,
			CASE WHEN features IS NULL OR length(features) = 0 OR get_byte(features, 0) <> $2 THEN demographics END
		FROM mpi_source_records WHERE patient_id = $1`, patientID, featuresVersion).Scan(&features, &demo)
	if err != nil {
		return 0, db.Map("mpi.store.Matcher.ScoreSource", err)
	}
	rec, ok := m.storedRecord(features, demo)
	if !ok {
		return 0, nil
	}
	w, _ := m.model.Score(r, rec)
	return m.model.Probability(w), nil
}
