package store

import (
	"context"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/mpi"
)

// PersonView is a person with its member records and, for each demographic field, every
// value its members sent with who sent it and when (field-level provenance). It holds PHI:
// it is for the steward console and the enforcement point, never for logs.
type PersonView struct {
	ID PersonID
	// Requested is the ID asked for; it differs from ID when a merge redirect was followed.
	Requested PersonID
	// RetiredInto is set when the person was merged into another and redirects were not
	// followed; Sources and the fields are then empty.
	RetiredInto PersonID
	Sources     []Source // by member, then source id
	Name        []FieldValue
	BirthDate   []FieldValue
	Sex         []FieldValue
	Address     []FieldValue
	Phone       []FieldValue
}

// FieldValue is one distinct value of a demographic field and the records that supply it,
// newest first. Values are ordered by their newest supplier, newest first.
type FieldValue struct {
	Value string
	From  []Supplier
}

// Supplier is a member record that supplied a value, and when it was last sent.
type Supplier struct {
	Source  int64
	Member  string
	Patient string // the member's FHIR Patient id
	Version int
	At      time.Time
}

// Person returns person id with its sources and field-level provenance. With follow, a
// person retired by a merge is followed to the person it was merged into; without it the
// retired person comes back with only RetiredInto set. Errors: errs.NotFound for an unknown
// person.
func (s *Store) Person(ctx context.Context, id PersonID, follow bool) (PersonView, error) {
	const op = "mpi.store.Store.Person"
	v := PersonView{ID: id, Requested: id}
	var into string
	err := s.db.QueryRow(ctx, `SELECT coalesce(retired_into::text, '') FROM mpi_persons WHERE id = $1`, string(id)).Scan(&into)
	if err != nil {
		return PersonView{}, db.Map(op, err)
	}
	if into != "" {
		if !follow {
			v.RetiredInto = PersonID(into)
			return v, nil
		}
		if v.ID, err = resolve(ctx, s.db, id); err != nil {
			return PersonView{}, errs.E(op, err)
		}
	}
	rows, err := s.db.Query(ctx, `SELECT id, member_id, system, value, patient_id, person_id, version, demographics, updated_at
		FROM mpi_source_records WHERE person_id = $1 ORDER BY member_id, id`, string(v.ID))
	if err != nil {
		return PersonView{}, db.Map(op, err)
	}
	type rec struct {
		src  Source
		demo []byte
		at   time.Time
	}
	recs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (rec, error) {
		var x rec
		return x, r.Scan(&x.src.ID, &x.src.MemberID, &x.src.System, &x.src.Value, &x.src.PatientID, &x.src.PersonID, &x.src.Version, &x.demo, &x.at)
	})
	if err != nil {
		return PersonView{}, db.Map(op, err)
	}
	fields := [5]map[string][]Supplier{{}, {}, {}, {}, {}}
	for _, r := range recs {
		v.Sources = append(v.Sources, r.src)
		in, err := mpi.PatientInput(r.demo)
		if err != nil {
			continue // a stored record that is not a readable Patient supplies no values
		}
		sup := Supplier{Source: r.src.ID, Member: r.src.MemberID, Patient: r.src.PatientID, Version: r.src.Version, At: r.at}
		for i, val := range [5]string{displayName(in), in.BirthDate, in.Sex, displayAddress(in), strings.TrimSpace(in.Phone)} {
			if val != "" {
				fields[i][val] = append(fields[i][val], sup)
			}
		}
	}
	v.Name, v.BirthDate, v.Sex, v.Address, v.Phone = values(fields[0]), values(fields[1]), values(fields[2]), values(fields[3]), values(fields[4])
	return v, nil
}

func values(m map[string][]Supplier) []FieldValue {
	out := make([]FieldValue, 0, len(m))
	for val, from := range m {
		sort.Slice(from, func(i, j int) bool {
			if !from[i].At.Equal(from[j].At) {
				return from[i].At.After(from[j].At)
			}
			return from[i].Source < from[j].Source
		})
		out = append(out, FieldValue{Value: val, From: from})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].From[0].At, out[j].From[0].At
		if !a.Equal(b) {
			return a.After(b)
		}
		return out[i].Value < out[j].Value
	})
	return out
}

func displayName(in mpi.Input) string {
	parts := append([]string(nil), in.Given...)
	if in.Family != "" {
		parts = append(parts, in.Family)
	}
	if in.Suffix != "" {
		parts = append(parts, in.Suffix)
	}
	return strings.Join(strings.Fields(strings.Join(parts, " ")), " ")
}

func displayAddress(in mpi.Input) string {
	var parts []string
	for _, l := range in.Lines {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	tail := strings.TrimSpace(strings.Join(strings.Fields(in.State+" "+in.PostalCode), " "))
	for _, p := range []string{strings.TrimSpace(in.City), tail} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, ", ")
}
