package hl7v2

import (
	"encoding/json"
	"log/slog"
)

// The FHIR R4 types below are the minimal subset the mapping produces. Field names and
// JSON shapes follow R4; empty elements are omitted. They carry PHI: their LogValue
// redacts, so a careless slog call stays safe.

// Coding is an R4 Coding.
type Coding struct {
	System  string `json:"system,omitempty"`
	Code    string `json:"code,omitempty"`
	Display string `json:"display,omitempty"`
}

// CodeableConcept is an R4 CodeableConcept.
type CodeableConcept struct {
	Coding []Coding `json:"coding,omitempty"`
	Text   string   `json:"text,omitempty"`
}

// Identifier is an R4 Identifier.
type Identifier struct {
	Use    string           `json:"use,omitempty"`
	Type   *CodeableConcept `json:"type,omitempty"`
	System string           `json:"system,omitempty"`
	Value  string           `json:"value,omitempty"`
}

// Reference is an R4 Reference. Within one Mapped message, Reference holds the target's
// FullURL ("urn:uuid:..."), to be rewritten by the store; Identifier names the patient
// by its member identifier.
type Reference struct {
	Reference  string      `json:"reference,omitempty"`
	Identifier *Identifier `json:"identifier,omitempty"`
	Display    string      `json:"display,omitempty"`
}

// Period is an R4 Period.
type Period struct {
	Start string `json:"start,omitempty"`
	End   string `json:"end,omitempty"`
}

// HumanName is an R4 HumanName.
type HumanName struct {
	Use    string   `json:"use,omitempty"`
	Family string   `json:"family,omitempty"`
	Given  []string `json:"given,omitempty"`
	Prefix []string `json:"prefix,omitempty"`
	Suffix []string `json:"suffix,omitempty"`
}

// Address is an R4 Address.
type Address struct {
	Use        string   `json:"use,omitempty"`
	Type       string   `json:"type,omitempty"`
	Line       []string `json:"line,omitempty"`
	City       string   `json:"city,omitempty"`
	District   string   `json:"district,omitempty"`
	State      string   `json:"state,omitempty"`
	PostalCode string   `json:"postalCode,omitempty"`
	Country    string   `json:"country,omitempty"`
}

// ContactPoint is an R4 ContactPoint.
type ContactPoint struct {
	System string `json:"system,omitempty"`
	Value  string `json:"value,omitempty"`
	Use    string `json:"use,omitempty"`
}

// Quantity is an R4 Quantity; Value is kept as the decimal text it was sent with.
type Quantity struct {
	Value      json.Number `json:"value,omitempty"`
	Comparator string      `json:"comparator,omitempty"`
	Unit       string      `json:"unit,omitempty"`
	System     string      `json:"system,omitempty"`
	Code       string      `json:"code,omitempty"`
}

// Range is an R4 Range.
type Range struct {
	Low  *Quantity `json:"low,omitempty"`
	High *Quantity `json:"high,omitempty"`
}

// Ratio is an R4 Ratio.
type Ratio struct {
	Numerator   *Quantity `json:"numerator,omitempty"`
	Denominator *Quantity `json:"denominator,omitempty"`
}

// ReferenceRange is an R4 Observation.referenceRange.
type ReferenceRange struct {
	Low  *Quantity `json:"low,omitempty"`
	High *Quantity `json:"high,omitempty"`
	Text string    `json:"text,omitempty"`
}

// Patient is an R4 Patient.
type Patient struct {
	ResourceType     string         `json:"resourceType"`
	Identifier       []Identifier   `json:"identifier,omitempty"`
	Active           *bool          `json:"active,omitempty"`
	Name             []HumanName    `json:"name,omitempty"`
	Telecom          []ContactPoint `json:"telecom,omitempty"`
	Gender           string         `json:"gender,omitempty"`
	BirthDate        string         `json:"birthDate,omitempty"`
	DeceasedBoolean  *bool          `json:"deceasedBoolean,omitempty"`
	DeceasedDateTime string         `json:"deceasedDateTime,omitempty"`
	Address          []Address      `json:"address,omitempty"`
}

// LogValue redacts.
func (Patient) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// EncounterLocation is an R4 Encounter.location.
type EncounterLocation struct {
	Location Reference `json:"location"`
}

// Encounter is an R4 Encounter.
type Encounter struct {
	ResourceType string              `json:"resourceType"`
	Identifier   []Identifier        `json:"identifier,omitempty"`
	Status       string              `json:"status"`
	Class        Coding              `json:"class"`
	Subject      *Reference          `json:"subject,omitempty"`
	Period       *Period             `json:"period,omitempty"`
	Location     []EncounterLocation `json:"location,omitempty"`
}

// LogValue redacts.
func (Encounter) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// DiagnosticReport is an R4 DiagnosticReport.
type DiagnosticReport struct {
	ResourceType      string            `json:"resourceType"`
	Identifier        []Identifier      `json:"identifier,omitempty"`
	Status            string            `json:"status"`
	Category          []CodeableConcept `json:"category,omitempty"`
	Code              CodeableConcept   `json:"code"`
	Subject           *Reference        `json:"subject,omitempty"`
	EffectiveDateTime string            `json:"effectiveDateTime,omitempty"`
	Issued            string            `json:"issued,omitempty"`
	Result            []Reference       `json:"result,omitempty"`
}

// LogValue redacts.
func (DiagnosticReport) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// Annotation is an R4 Annotation (text only).
type Annotation struct {
	Text string `json:"text"`
}

// Observation is an R4 Observation. At most one Value* field is set.
type Observation struct {
	ResourceType         string            `json:"resourceType"`
	Status               string            `json:"status"`
	Category             []CodeableConcept `json:"category,omitempty"`
	Code                 CodeableConcept   `json:"code"`
	Subject              *Reference        `json:"subject,omitempty"`
	EffectiveDateTime    string            `json:"effectiveDateTime,omitempty"`
	ValueQuantity        *Quantity         `json:"valueQuantity,omitempty"`
	ValueCodeableConcept *CodeableConcept  `json:"valueCodeableConcept,omitempty"`
	ValueString          *string           `json:"valueString,omitempty"`
	ValueRange           *Range            `json:"valueRange,omitempty"`
	ValueRatio           *Ratio            `json:"valueRatio,omitempty"`
	ValueTime            string            `json:"valueTime,omitempty"`
	ValueDateTime        string            `json:"valueDateTime,omitempty"`
	DataAbsentReason     *CodeableConcept  `json:"dataAbsentReason,omitempty"`
	Interpretation       []CodeableConcept `json:"interpretation,omitempty"`
	Note                 []Annotation      `json:"note,omitempty"`
	ReferenceRange       []ReferenceRange  `json:"referenceRange,omitempty"`
}

// LogValue redacts.
func (Observation) LogValue() slog.Value { return slog.StringValue("[redacted]") }
