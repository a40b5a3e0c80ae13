package store

import (
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/concord-hie/concord/fhir"
)

type indexKind uint8

const (
	kindToken indexKind = iota + 1
	kindDate
	kindString
	kindRef
)

type indexRow struct {
	kind           indexKind
	param          string
	system, code   string
	lo, hi         time.Time
	str            string
	refType, refID string
}

// Open date bounds are stored as far-away instants so every range is closed in SQL.
var (
	minTime = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)
)

// extract turns a resource into its search index rows (fhir.Extract decides what is
// indexed; quantities and numbers are not searchable yet).
func extract(r *fhir.Resource) []indexRow {
	var out []indexRow
	for _, v := range fhir.Extract(r) {
		switch v.Type {
		case fhir.ParamToken, fhir.ParamURI:
			out = append(out, indexRow{kind: kindToken, param: v.Param, system: v.System, code: v.Code})
		case fhir.ParamDate:
			lo, hi := v.Low, v.High
			if lo.IsZero() {
				lo = minTime
			}
			if hi.IsZero() {
				hi = maxTime
			}
			out = append(out, indexRow{kind: kindDate, param: v.Param, lo: lo, hi: hi})
		case fhir.ParamString:
			out = append(out, indexRow{kind: kindString, param: v.Param, str: v.Norm})
		case fhir.ParamReference:
			if v.RefType != "" && v.RefID != "" {
				out = append(out, indexRow{kind: kindRef, param: v.Param, refType: v.RefType, refID: v.RefID})
			}
		}
	}
	return out
}

// indexBatch collects the index rows of several resources as one column slice per column,
// so that each index table takes them in one multi-row INSERT (unnest of arrays) instead of
// one statement per row.
type indexBatch struct {
	tok      [6][]string // type, id, param, system, code, patient_id ("" for none)
	tAt      []time.Time // the token rows' last_updated (their resource's)
	date     [3][]string // type, id, param
	dLo, dHi []time.Time
	str      [4][]string // type, id, param, value
	sAt      []time.Time // the string rows' last_updated (their resource's)
	ref      [5][]string // type, id, param, ref_type, ref_id
}

// indexTables are the tables indexBatch.queue fills. A resource's rows are deleted from each
// before its new ones are written (or none, when it is deleted).
var indexTables = [...]string{"fhir_idx_token", "fhir_idx_date", "fhir_idx_string", "fhir_idx_ref"}

// appendBatch appends the rows o collected to x.
func (x *indexBatch) appendBatch(o *indexBatch) {
	for i := range x.tok {
		x.tok[i] = append(x.tok[i], o.tok[i]...)
	}
	x.tAt = append(x.tAt, o.tAt...)
	for i := range x.date {
		x.date[i] = append(x.date[i], o.date[i]...)
	}
	x.dLo, x.dHi = append(x.dLo, o.dLo...), append(x.dHi, o.dHi...)
	for i := range x.str {
		x.str[i] = append(x.str[i], o.str[i]...)
	}
	x.sAt = append(x.sAt, o.sAt...)
	for i := range x.ref {
		x.ref[i] = append(x.ref[i], o.ref[i]...)
	}
}

// sortParam is the date search parameter whose bounds fhir_resources keeps (date_lo,
// date_hi: Unix microseconds, the earliest lo and the latest hi of its index rows, NULL
// without any), so that sorting by it reads the resource row (migration 0075).
const sortParam = "date"

// add appends the index rows of resource r, stored as typ/id in the compartment of patient
// ("" for none) at time at, and returns r's bounds of sortParam for date_lo and date_hi (nil
// when r has no such date). Token rows carry patient and at, string rows at: they must be
// the resource row's patient_id and last_updated (migrations 0096, 0100).
func (x *indexBatch) add(typ, id, patient string, at time.Time, r *fhir.Resource) (lo, hi *int64) {
	for _, v := range extract(r) {
		switch v.kind {
		case kindToken:
			push(x.tok[:], typ, id, v.param, v.system, v.code, patient)
			x.tAt = append(x.tAt, at)
		case kindDate:
			push(x.date[:], typ, id, v.param)
			x.dLo, x.dHi = append(x.dLo, v.lo), append(x.dHi, v.hi)
			if v.param == sortParam {
				l, h := v.lo.UnixMicro(), v.hi.UnixMicro()
				if lo == nil || l < *lo {
					lo = &l
				}
				if hi == nil || h > *hi {
					hi = &h
				}
			}
		case kindString:
			push(x.str[:], typ, id, v.param, v.str)
			x.sAt = append(x.sAt, at)
		case kindRef:
			push(x.ref[:], typ, id, v.param, v.refType, v.refID)
		}
	}
	return lo, hi
}

// queue adds to b one INSERT per index table that has rows.
func (x *indexBatch) queue(b *pgx.Batch) {
	if len(x.tok[0]) > 0 {
		b.Queue(`INSERT INTO fhir_idx_token(type, id, param, system, code, patient_id, last_updated)
			SELECT t, i, p, s, c, NULLIF(pt, ''), a
			FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[]) AS u(t, i, p, s, c, pt, a)`,
			x.tok[0], x.tok[1], x.tok[2], x.tok[3], x.tok[4], x.tok[5], x.tAt)
	}
	if len(x.date[0]) > 0 {
		b.Queue(`INSERT INTO fhir_idx_date(type, id, param, lo, hi) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[])`,
			x.date[0], x.date[1], x.date[2], x.dLo, x.dHi)
	}
	if len(x.str[0]) > 0 {
		b.Queue(`INSERT INTO fhir_idx_string(type, id, param, value, last_updated) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])`,
			x.str[0], x.str[1], x.str[2], x.str[3], x.sAt)
	}
	if len(x.ref[0]) > 0 {
		b.Queue(`INSERT INTO fhir_idx_ref(type, id, param, ref_type, ref_id) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])`,
			x.ref[0], x.ref[1], x.ref[2], x.ref[3], x.ref[4])
	}
}

// push appends one row's values to column slices.
func push(cols [][]string, vals ...string) {
	for i, v := range vals {
		cols[i] = append(cols[i], v)
	}
}
