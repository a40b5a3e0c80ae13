package consent

// DataClass is a class of data a patient or officer previews: a name, the class as a
// request would carry it, and the labels such items carry.
type DataClass struct {
	Name   string // stable key, e.g. "labs", "mental-health"
	Title  string // display title, e.g. "Lab results"
	Class  Class
	Labels []string
}

// StandardClasses returns the data classes the portal previews, in display order.
func StandardClasses() []DataClass {
	return []DataClass{
		{Name: "labs", Title: "Lab results", Class: Class{ResourceType: "Observation", Categories: []string{"laboratory"}}},
		{Name: "vitals", Title: "Vital signs", Class: Class{ResourceType: "Observation", Categories: []string{"vital-signs"}}},
		{Name: "problems", Title: "Problems and diagnoses", Class: Class{ResourceType: "Condition", Categories: []string{"problem-list-item"}}},
		{Name: "medications", Title: "Medications", Class: Class{ResourceType: "MedicationRequest"}},
		{Name: "allergies", Title: "Allergies", Class: Class{ResourceType: "AllergyIntolerance"}},
		{Name: "immunizations", Title: "Immunizations", Class: Class{ResourceType: "Immunization"}},
		{Name: "notes", Title: "Clinical notes and documents", Class: Class{ResourceType: "DocumentReference", Categories: []string{"clinical-note"}}},
		{Name: "mental-health", Title: "Mental health", Class: Class{ResourceType: "Condition"}, Labels: []string{LabelMentalHealth, LabelRestricted}},
		{Name: "substance-use", Title: "Substance use", Class: Class{ResourceType: "Condition"}, Labels: []string{LabelSubstanceUse, LabelRestricted}},
		{Name: "substance-use-program", Title: "Substance-use treatment program records (42 CFR Part 2)", Class: Class{ResourceType: "DocumentReference"}, Labels: []string{LabelSubstanceUse, LabelRestricted, LabelPart2, RefrainRedisclose}},
		{Name: "hiv", Title: "HIV", Class: Class{ResourceType: "Observation", Categories: []string{"laboratory"}}, Labels: []string{LabelHIV, LabelRestricted}},
		{Name: "sexual-health", Title: "Sexual and reproductive health", Class: Class{ResourceType: "Condition"}, Labels: []string{LabelSexualHealth, LabelRestricted}},
		{Name: "violence", Title: "Sexual or domestic violence", Class: Class{ResourceType: "Condition"}, Labels: []string{LabelViolence, LabelRestricted}},
	}
}

// ClassDecision is the decision for one data class.
type ClassDecision struct {
	Class    DataClass
	Decision Decision
}

// Preview answers "what would this actor see for this purpose at this time?": it
// decides req once per class, with req's Class and Labels replaced by the class's. It is
// as pure as Decide. For an as-of preview pass InForce(versions, req.At) as dirs.
func Preview(dirs []Directive, req Request, classes []DataClass) []ClassDecision {
	out := make([]ClassDecision, len(classes))
	for i, c := range classes {
		r := req
		r.Class, r.Labels = c.Class, c.Labels
		out[i] = ClassDecision{Class: c, Decision: Decide(dirs, r)}
	}
	return out
}
