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

// extract turns a resource into its search index rows.
func extract(r *fhir.Resource) []indexRow {
	return nil
}
