package store

import (
	"time"

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
