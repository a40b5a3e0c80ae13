package consent

// Code systems used by the FHIR Consent mapping.
const (
	SystemConsentScope      = "http://terminology.hl7.org/CodeSystem/consentscope"
	SystemLOINC             = "http://loinc.org"
	SystemActCode           = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
	SystemConfidentiality   = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
	SystemActReason         = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
	SystemActReasonOID      = "urn:oid:2.16.840.1.113883.5.8"
	SystemParticipationType = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
	SystemConsentAction     = "http://terminology.hl7.org/CodeSystem/consentaction"
	SystemResourceTypes     = "http://hl7.org/fhir/resource-types"
	// SystemActorRole is Concord's code system for role-only actors ("any clinician").
	SystemActorRole = "https://github.com/concord-hie/concord/fhir/CodeSystem/actor-role"

	ScopePatientPrivacy = "patient-privacy"
	// CategoryPrivacyConsent is LOINC 59284-0 "Patient Consent".
	CategoryPrivacyConsent = "59284-0"
)

// categorySystems maps each category code Concord understands to its code system, so a
// provision class can hold the bare code.
var categorySystems = map[string]string{
	"laboratory":          "http://terminology.hl7.org/CodeSystem/observation-category",
	"vital-signs":         "http://terminology.hl7.org/CodeSystem/observation-category",
	"social-history":      "http://terminology.hl7.org/CodeSystem/observation-category",
	"imaging":             "http://terminology.hl7.org/CodeSystem/observation-category",
	"exam":                "http://terminology.hl7.org/CodeSystem/observation-category",
	"survey":              "http://terminology.hl7.org/CodeSystem/observation-category",
	"procedure":           "http://terminology.hl7.org/CodeSystem/observation-category",
	"therapy":             "http://terminology.hl7.org/CodeSystem/observation-category",
	"activity":            "http://terminology.hl7.org/CodeSystem/observation-category",
	"problem-list-item":   "http://terminology.hl7.org/CodeSystem/condition-category",
	"encounter-diagnosis": "http://terminology.hl7.org/CodeSystem/condition-category",
	"health-concern":      "http://hl7.org/fhir/us/core/CodeSystem/condition-category",
	"clinical-note":       "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category",
	"inpatient":           "http://terminology.hl7.org/CodeSystem/medicationrequest-category",
	"outpatient":          "http://terminology.hl7.org/CodeSystem/medicationrequest-category",
	"community":           "http://terminology.hl7.org/CodeSystem/medicationrequest-category",
	"discharge":           "http://terminology.hl7.org/CodeSystem/medicationrequest-category",
}

// resourceTypeList holds the R4 resource types a provision class may name: the patient
// compartment's clinical and administrative types.
var resourceTypeList = []string{
	"Account", "AdverseEvent", "AllergyIntolerance", "Appointment", "AppointmentResponse",
	"AuditEvent", "Basic", "BodyStructure", "CarePlan", "CareTeam", "ChargeItem", "Claim",
	"ClaimResponse", "ClinicalImpression", "Communication", "CommunicationRequest",
	"Composition", "Condition", "Consent", "Coverage", "DetectedIssue", "DeviceRequest",
	"DeviceUseStatement", "DiagnosticReport", "DocumentManifest", "DocumentReference",
	"Encounter", "EpisodeOfCare", "ExplanationOfBenefit", "FamilyMemberHistory", "Flag",
	"Goal", "ImagingStudy", "Immunization", "ImmunizationEvaluation",
	"ImmunizationRecommendation", "Invoice", "List", "MeasureReport", "Media",
	"MedicationAdministration", "MedicationDispense", "MedicationRequest",
	"MedicationStatement", "MolecularSequence", "NutritionOrder", "Observation", "Patient",
	"Procedure", "Provenance", "QuestionnaireResponse", "RelatedPerson", "RequestGroup",
	"ResearchSubject", "RiskAssessment", "Schedule", "ServiceRequest", "Specimen",
	"SupplyDelivery", "SupplyRequest", "VisionPrescription",
}

// KnownResourceType reports whether t is a resource type a provision class may name.
func KnownResourceType(t string) bool {
	for _, x := range resourceTypeList {
		if x == t {
			return true
		}
	}
	return false
}

// KnownCategory reports whether c is a category code a provision class may name.
func KnownCategory(c string) bool { _, ok := categorySystems[c]; return ok }

func labelSystem(l string) string {
	if l == LabelRestricted || l == LabelVeryRestrict {
		return SystemConfidentiality
	}
	return SystemActCode
}

func knownRole(r string) bool {
	switch r {
	case RolePatient, RoleProxy, RoleClinician, RoleOfficer, RoleSystem, RoleShare:
		return true
	}
	return false
}

func knownAction(a string) bool {
	switch a {
	case "collect", "access", "use", "disclose", "correct":
		return true
	}
	return false
}
