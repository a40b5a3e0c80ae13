package main

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"time"

	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/portal"
)

// summaryLimit bounds each list of the health summary.
const summaryLimit = 200

// summaryResource is the part of a Condition, MedicationRequest, AllergyIntolerance or
// Immunization the summary shows.
type summaryResource struct {
	Code                      *codeable `json:"code"`
	MedicationCodeableConcept *codeable `json:"medicationCodeableConcept"`
	VaccineCode               *codeable `json:"vaccineCode"`
	ClinicalStatus            *codeable `json:"clinicalStatus"`
	Status                    string    `json:"status"`
	OnsetDateTime             string    `json:"onsetDateTime"`
	RecordedDate              string    `json:"recordedDate"`
	AuthoredOn                string    `json:"authoredOn"`
	OccurrenceDateTime        string    `json:"occurrenceDateTime"`
	Criticality               string    `json:"criticality"`
	DosageInstruction         []struct {
		Text string `json:"text"`
	} `json:"dosageInstruction"`
	Reaction []struct {
		Manifestation []codeable `json:"manifestation"`
	} `json:"reaction"`
}

// text is c's text, else its first coding's display, else its first code.
func (c *codeable) text() string {
	if c == nil {
		return ""
	}
	if c.Text != "" {
		return c.Text
	}
	for _, cd := range c.Coding {
		if cd.Display != "" {
			return cd.Display
		}
	}
	if len(c.Coding) > 0 {
		return c.Coding[0].Code
	}
	return ""
}

func firstDate(raws ...string) time.Time {
	for _, raw := range raws {
		if raw == "" {
			continue
		}
		if d, err := fhir.ParseDateTime(raw); err == nil {
			return d.Low
		}
	}
	return time.Time{}
}

// summaryItem turns one stored resource into its summary row.
func summaryItem(st store.Stored, memberName string) (portal.SummaryItem, bool) {
	var r summaryResource
	if json.Unmarshal(st.Body, &r) != nil {
		return portal.SummaryItem{}, false
	}
	it := portal.SummaryItem{SourceMemberName: memberName, Status: r.Status}
	switch st.Type {
	case "Condition":
		it.Display, it.Date, it.Status = r.Code.text(), firstDate(r.OnsetDateTime, r.RecordedDate), r.ClinicalStatus.text()
	case "MedicationRequest":
		it.Display, it.Date = r.MedicationCodeableConcept.text(), firstDate(r.AuthoredOn)
		if len(r.DosageInstruction) > 0 {
			it.Detail = r.DosageInstruction[0].Text
		}
	case "AllergyIntolerance":
		it.Display, it.Date, it.Status = r.Code.text(), firstDate(r.OnsetDateTime, r.RecordedDate), r.ClinicalStatus.text()
		var ms []string
		for _, re := range r.Reaction {
			for _, m := range re.Manifestation {
				if t := m.text(); t != "" {
					ms = append(ms, t)
				}
			}
		}
		if it.Detail = strings.Join(ms, ", "); r.Criticality == "high" {
			it.Detail = strings.TrimPrefix(it.Detail+"; high criticality", "; ")
		}
	case "Immunization":
		it.Display, it.Date = r.VaccineCode.text(), firstDate(r.OccurrenceDateTime)
	}
	if it.Display == "" {
		it.Display = "Not named"
	}
	return it, true
}

// Summary returns the person's problems, medications, allergies and immunizations that v
// may see (one records.CompartmentTypes read: consent decided per item, one audit event).
func (p portalRecords) Summary(ctx context.Context, v portal.Viewer, personID string) (portal.HealthSummary, error) {
	names := p.memberNames(ctx)
	var out portal.HealthSummary
	lists := map[string]*[]portal.SummaryItem{"Condition": &out.Conditions, "MedicationRequest": &out.Medications,
		"AllergyIntolerance": &out.Allergies, "Immunization": &out.Immunizations}
	sts, err := p.rec.CompartmentTypes(ctx, p.viewer(v), personID, []string{"Condition", "MedicationRequest", "AllergyIntolerance", "Immunization"},
		proxyKeep(v, nil), summaryLimit)
	if err != nil {
		return portal.HealthSummary{}, err
	}
	for _, st := range sts {
		name := names[st.MemberID]
		if name == "" {
			name = st.MemberID
		}
		if it, ok := summaryItem(st, name); ok {
			*lists[st.Type] = append(*lists[st.Type], it)
		}
	}
	for _, l := range lists {
		sort.SliceStable(*l, func(i, j int) bool { return (*l)[i].Date.After((*l)[j].Date) })
	}
	return out, nil
}
