package eval

import (
	"bufio"
	"encoding/json"
	"io"

	"github.com/concord-hie/concord/mpi"
)

type fhirIdentifier struct {
	System string `json:"system"`
	Value  string `json:"value"`
}

type fhirName struct {
	Family string   `json:"family,omitempty"`
	Given  []string `json:"given,omitempty"`
	Suffix []string `json:"suffix,omitempty"`
}

type fhirAddress struct {
	Line       []string `json:"line,omitempty"`
	City       string   `json:"city,omitempty"`
	State      string   `json:"state,omitempty"`
	PostalCode string   `json:"postalCode,omitempty"`
}

type fhirTelecom struct {
	System string `json:"system"`
	Value  string `json:"value"`
}

type fhirPatient struct {
	ResourceType string           `json:"resourceType"`
	Identifier   []fhirIdentifier `json:"identifier,omitempty"`
	Name         []fhirName       `json:"name,omitempty"`
	Gender       string           `json:"gender,omitempty"`
	BirthDate    string           `json:"birthDate,omitempty"`
	Address      []fhirAddress    `json:"address,omitempty"`
	Telecom      []fhirTelecom    `json:"telecom,omitempty"`
}

// PatientJSON renders an Input as a FHIR R4 Patient the way `concord mpi link` reads it.
func PatientJSON(in mpi.Input) ([]byte, error) {
	p := fhirPatient{ResourceType: "Patient", Gender: in.Sex, BirthDate: in.BirthDate}
	p.Identifier = append(p.Identifier, fhirIdentifier{in.Source.System, in.Source.Value})
	if in.SSN != "" {
		p.Identifier = append(p.Identifier, fhirIdentifier{mpi.SSNSystem, in.SSN})
	}
	n := fhirName{Family: in.Family, Given: in.Given}
	if in.Suffix != "" {
		n.Suffix = []string{in.Suffix}
	}
	p.Name = []fhirName{n}
	if len(in.Lines) > 0 || in.PostalCode != "" {
		p.Address = []fhirAddress{{Line: in.Lines, City: in.City, State: in.State, PostalCode: in.PostalCode}}
	}
	if in.Phone != "" {
		p.Telecom = []fhirTelecom{{"phone", in.Phone}}
	}
	return json.Marshal(p)
}

// WriteNDJSON writes every input of ds as one Patient per line.
func WriteNDJSON(w io.Writer, ds *Dataset) error {
	bw := bufio.NewWriter(w)
	for _, in := range ds.Inputs {
		b, err := PatientJSON(in)
		if err != nil {
			return err
		}
		bw.Write(b)
		bw.WriteByte('\n')
	}
	return bw.Flush()
}
