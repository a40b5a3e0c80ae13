package fhir

import "sort"

// ParamType is a FHIR search parameter type.
type ParamType uint8

const (
	ParamToken ParamType = iota + 1
	ParamReference
	ParamDate
	ParamString
	ParamQuantity
	ParamURI
	ParamNumber
)

func (t ParamType) String() string {
	switch t {
	case ParamToken:
		return "token"
	case ParamReference:
		return "reference"
	case ParamDate:
		return "date"
	case ParamString:
		return "string"
	case ParamQuantity:
		return "quantity"
	case ParamURI:
		return "uri"
	case ParamNumber:
		return "number"
	}
	return "unknown"
}

// ParamDef defines one supported search parameter of a resource type.
type ParamDef struct {
	Name string
	Type ParamType
	// Paths are FHIRPath-like expressions relative to the resource, without the type name:
	// dot-separated element names, "name[x]" for a choice element (every typed variant), and
	// "where(system='phone')" to keep only objects whose member equals a string. Values of
	// all paths are indexed.
	Paths []string
	// Targets are the types a reference parameter can point at, its R4 SearchParameter's
	// target list or a part of it (Observation patient: Patient; Observation subject:
	// Group, Device, Patient, Location). References to other types are not indexed, not
	// searched for, not included and not reverse-included. Empty: any type, as R4 says of
	// List item (target Any).
	Targets []string
	// Doc is the CapabilityStatement documentation.
	Doc string
}

// commonParams apply to every resource type.
var commonParams = []ParamDef{
	{Name: "_id", Type: ParamToken, Paths: []string{"id"}, Doc: "Logical id of the resource"},
	{Name: "_lastUpdated", Type: ParamDate, Paths: []string{"meta.lastUpdated"}, Doc: "When the resource version last changed (server-assigned)"},
}

func patientRef(path string) ParamDef {
	return ParamDef{Name: "patient", Type: ParamReference, Paths: []string{path}, Targets: []string{"Patient"},
		Doc: "The patient the resource is about (" + path + " when it refers to a Patient)"}
}

// subjectRef is the subject parameter on path, with the target types of the type's R4
// SearchParameter (Observation-subject, Condition-subject, ...).
func subjectRef(path string, targets ...string) ParamDef {
	return ParamDef{Name: "subject", Type: ParamReference, Paths: []string{path}, Targets: targets, Doc: "Who or what the resource is about"}
}

func tok(name, path, doc string) ParamDef {
	return ParamDef{Name: name, Type: ParamToken, Paths: []string{path}, Doc: doc}
}

func date(name, path, doc string) ParamDef {
	return ParamDef{Name: name, Type: ParamDate, Paths: []string{path}, Doc: doc}
}

func str(name, path, doc string) ParamDef {
	return ParamDef{Name: name, Type: ParamString, Paths: []string{path}, Doc: doc}
}

func ref(name, path string, targets []string, doc string) ParamDef {
	return ParamDef{Name: name, Type: ParamReference, Paths: []string{path}, Targets: targets, Doc: doc}
}

// searchParams is the table of supported search parameters per type (US Core, IHE PDQm and
// MHD), in addition to commonParams. It is read-only.
var searchParams = map[string][]ParamDef{
	"Patient": {
		tok("identifier", "identifier", "A patient identifier (system|value)"),
		str("family", "name.family", "A portion of the family name"),
		str("given", "name.given", "A portion of a given name"),
		str("name", "name", "A portion of any part of a name (family, given, prefix, suffix, text)"),
		date("birthdate", "birthDate", "The patient's date of birth"),
		tok("gender", "gender", "Administrative gender"),
		str("address", "address", "A portion of any part of an address"),
		str("address-city", "address.city", "City of an address"),
		str("address-state", "address.state", "State of an address"),
		str("address-postalcode", "address.postalCode", "Postal code of an address"),
		tok("telecom", "telecom", "The value of any contact point (phone, email, ...)"),
		tok("phone", "telecom.where(system='phone')", "A phone number"),
		tok("email", "telecom.where(system='email')", "An email address"),
		tok("active", "active", "Whether the record is active"),
	},
	"Observation": {
		patientRef("subject"), subjectRef("subject", "Group", "Device", "Patient", "Location"),
		tok("category", "category", "Classification of the observation (e.g. laboratory, vital-signs)"),
		tok("code", "code", "The code of the observation (e.g. LOINC)"),
		date("date", "effective[x]", "Clinically relevant time or period (effective[x])"),
		tok("status", "status", "Status of the observation"),
		ref("encounter", "encounter", []string{"Encounter"}, "The encounter of the observation"),
		{Name: "value-quantity", Type: ParamQuantity, Paths: []string{"value[x]"}, Doc: "The value of the observation as a quantity ([prefix]number|system|code)"},
	},
	"DiagnosticReport": {
		patientRef("subject"), subjectRef("subject", "Group", "Device", "Patient", "Location"),
		tok("category", "category", "Service category (e.g. LAB)"),
		tok("code", "code", "The code of the report"),
		date("date", "effective[x]", "Clinically relevant time or period (effective[x])"),
		tok("status", "status", "Status of the report"),
		ref("result", "result", []string{"Observation"}, "An Observation in the report"),
		ref("encounter", "encounter", []string{"Encounter"}, "The encounter of the report"),
	},
	"Condition": {
		patientRef("subject"), subjectRef("subject", "Group", "Patient"),
		tok("category", "category", "Category (problem-list-item, encounter-diagnosis, health-concern)"),
		tok("clinical-status", "clinicalStatus", "Clinical status (active, resolved, ...)"),
		tok("verification-status", "verificationStatus", "Verification status"),
		tok("code", "code", "The code of the condition"),
		date("onset-date", "onset[x]", "Onset as a dateTime or Period"),
		ref("encounter", "encounter", []string{"Encounter"}, "The encounter of the condition"),
	},
	"AllergyIntolerance": {
		patientRef("patient"),
		tok("clinical-status", "clinicalStatus", "Clinical status (active, inactive, resolved)"),
		tok("verification-status", "verificationStatus", "Verification status"),
		tok("code", "code", "The code of the allergy or intolerance"),
	},
	"MedicationRequest": {
		patientRef("subject"), subjectRef("subject", "Group", "Patient"),
		tok("intent", "intent", "Intent (order, plan, ...)"),
		tok("status", "status", "Status (active, completed, ...)"),
		date("authoredon", "authoredOn", "When the request was written"),
		ref("medication", "medication[x]", []string{"Medication"}, "The Medication resource referenced (medicationReference)"),
		tok("code", "medication[x]", "The medication code (medicationCodeableConcept)"),
		ref("encounter", "encounter", []string{"Encounter"}, "The encounter of the request"),
	},
	"Medication": {
		tok("code", "code", "The code of the medication"),
	},
	"Immunization": {
		patientRef("patient"),
		date("date", "occurrence[x]", "Vaccination date (occurrenceDateTime)"),
		tok("status", "status", "Status (completed, entered-in-error, not-done)"),
		tok("vaccine-code", "vaccineCode", "The vaccine code"),
	},
	"Encounter": {
		patientRef("subject"), subjectRef("subject", "Group", "Patient"),
		date("date", "period", "The period of the encounter"),
		tok("status", "status", "Status of the encounter"),
		tok("class", "class", "Classification (ambulatory, inpatient, ...)"),
		tok("type", "type", "Specific type of encounter"),
		tok("identifier", "identifier", "An encounter identifier"),
	},
	"Procedure": {
		patientRef("subject"), subjectRef("subject", "Group", "Patient"),
		date("date", "performed[x]", "When the procedure was performed (performed[x])"),
		tok("code", "code", "The code of the procedure"),
		tok("status", "status", "Status of the procedure"),
	},
	"DocumentReference": {
		patientRef("subject"), subjectRef("subject", "Practitioner", "Group", "Device", "Patient"),
		tok("status", "status", "Status (current, superseded, entered-in-error)"),
		tok("category", "category", "Categorization of the document"),
		tok("type", "type", "Kind of document (e.g. LOINC)"),
		date("date", "date", "When the document reference was created"),
		date("period", "context.period", "Time of service that is being documented"),
		{Name: "identifier", Type: ParamToken, Paths: []string{"masterIdentifier", "identifier"}, Doc: "Master version specific identifier or another identifier"},
	},
	"List": {
		patientRef("subject"), subjectRef("subject", "Group", "Device", "Patient", "Location"),
		tok("code", "code", "What the list is (e.g. submissionset)"),
		tok("status", "status", "Status (current, retired, entered-in-error)"),
		tok("identifier", "identifier", "A list identifier"),
		date("date", "date", "When the list was prepared"),
		ref("item", "entry.item", nil, "An item in the list"),
	},
	"Organization": {
		tok("identifier", "identifier", "An organization identifier (e.g. NPI)"),
		{Name: "name", Type: ParamString, Paths: []string{"name", "alias"}, Doc: "A portion of the name or an alias"},
		tok("active", "active", "Whether the record is active"),
	},
	"Practitioner": {
		tok("identifier", "identifier", "A practitioner identifier (e.g. NPI)"),
		str("name", "name", "A portion of any part of a name"),
		str("family", "name.family", "A portion of the family name"),
		str("given", "name.given", "A portion of a given name"),
	},
	"PractitionerRole": {
		ref("practitioner", "practitioner", []string{"Practitioner"}, "The practitioner who has this role"),
		ref("organization", "organization", []string{"Organization"}, "The organization where the role is available"),
		ref("location", "location", []string{"Location"}, "A location where the role is performed"),
		tok("role", "code", "The role the practitioner may perform"),
		tok("specialty", "specialty", "A specialty of the practitioner in this role"),
		tok("identifier", "identifier", "A practitioner role identifier"),
	},
	"Location": {
		{Name: "name", Type: ParamString, Paths: []string{"name", "alias"}, Doc: "A portion of the name or an alias"},
		str("address", "address", "A portion of any part of the address"),
		str("address-city", "address.city", "City of the address"),
		str("address-state", "address.state", "State of the address"),
		str("address-postalcode", "address.postalCode", "Postal code of the address"),
		ref("organization", "managingOrganization", []string{"Organization"}, "The organization responsible for the location"),
		tok("identifier", "identifier", "A location identifier"),
	},
	"Endpoint": {
		ref("organization", "managingOrganization", []string{"Organization"}, "The organization that manages the endpoint"),
		tok("status", "status", "Status of the endpoint"),
		tok("identifier", "identifier", "An endpoint identifier"),
	},
	"Consent": {
		patientRef("patient"),
		tok("status", "status", "Status of the consent"),
		tok("category", "category", "Classification of the consent"),
	},
	"Group": {
		tok("identifier", "identifier", "A group identifier"),
		tok("type", "type", "The type of members"),
		ref("member", "member.entity", []string{"Practitioner", "Group", "Device", "Medication", "Patient", "Substance", "PractitionerRole"}, "A member of the group"),
	},
}

// Params returns the search parameters supported for resourceType, common ones first, then
// by name. It returns nil for a name that is not an R4 resource type.
func Params(resourceType string) []ParamDef {
	if !isResourceName(resourceType) {
		return nil
	}
	out := append([]ParamDef(nil), commonParams...)
	specific := append([]ParamDef(nil), searchParams[resourceType]...)
	sort.Slice(specific, func(i, j int) bool { return specific[i].Name < specific[j].Name })
	return append(out, specific...)
}

// param returns the definition of name for resourceType.
func param(resourceType, name string) (ParamDef, bool) {
	for _, p := range commonParams {
		if p.Name == name {
			return p, true
		}
	}
	for _, p := range searchParams[resourceType] {
		if p.Name == name {
			return p, true
		}
	}
	return ParamDef{}, false
}
