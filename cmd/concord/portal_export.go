package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"time"

	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/portal"
)

// exportTypes are the resource types of the patient's downloadable record.
var exportTypes = []string{"Patient", "Condition", "MedicationRequest", "AllergyIntolerance", "Immunization", "Observation",
	"DiagnosticReport", "Procedure", "Encounter", "DocumentReference"}

// exportLimit caps each type in a download (newest first).
const exportLimit = 5000

// Export implements portal.Records: one records.Export read of exportTypes (consent decided
// per item, one export audit event naming everything disclosed, committed first), written
// to w as a FHIR R4 Bundle of type collection. Each resource is as its member sent it, with
// meta.source naming that member.
func (p portalRecords) Export(ctx context.Context, v portal.Viewer, personID string, w io.Writer) error {
	sts, err := p.rec.Export(ctx, p.viewer(v), personID, exportTypes, proxyKeep(v, nil), exportLimit)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	ts, _ := json.Marshal(fhir.FormatInstant(time.Now().UTC().Truncate(time.Millisecond)))
	bw.WriteString(`{"resourceType":"Bundle","type":"collection","timestamp":`)
	bw.Write(ts)
	for i, st := range sts { // FHIR has no empty arrays: no entry at all when nothing is shared
		if i == 0 {
			bw.WriteString(`,"entry":[`)
		} else {
			bw.WriteByte(',')
		}
		bw.WriteString(`{"resource":`)
		bw.Write(st.Body)
		bw.WriteByte('}')
	}
	if len(sts) > 0 {
		bw.WriteByte(']')
	}
	bw.WriteByte('}')
	return bw.Flush()
}
