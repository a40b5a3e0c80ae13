package fhir

import (
	"maps"
	"slices"
)

// referenceData are the types of shared directory and formulary data: an organization, a
// clinician and their roles, a place, a drug. They hold no patient's record and sit in no
// Patient compartment, so the exchange lets every member read and search them (records
// decides which of their resources are shared).
var referenceData = map[string]bool{"Medication": true, "Organization": true, "Practitioner": true,
	"PractitionerRole": true, "Location": true}

// IsReferenceData reports whether typ is reference data (see referenceData).
func IsReferenceData(typ string) bool { return referenceData[typ] }

// ReferenceDataTypes returns the reference data types, sorted.
func ReferenceDataTypes() []string { return slices.Sorted(maps.Keys(referenceData)) }

// revIncludable reports whether a search of target may _revinclude the resources of src
// whose reference parameter p points at the matches: p must be able to point at target
// (ParamDef.Targets; any type when it names none), and a search of reference data includes
// only reference data and the directory's Endpoints. Such a search discloses no patient's
// record, so a clinical source (Observation:performer of a Practitioner) could never be
// returned: it is refused rather than answered empty, and the CapabilityStatement does not
// list it.
func revIncludable(src string, p ParamDef, target string) bool {
	if p.Type != ParamReference || !canTarget(p, target) {
		return false
	}
	return !referenceData[target] || referenceData[src] || src == "Endpoint"
}
