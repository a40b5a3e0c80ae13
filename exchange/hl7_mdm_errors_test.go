package exchange

import (
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/concord-hie/concord/exchange/hl7v2"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

// TestContentError: only the document service's refusals of the content are the
// sender's content error at the OBX; a refused relatesTo is about the parent (AE 204); a
// database or mapping failure unrelated to the content is internal (AR, not remembered).
func TestContentError(t *testing.T) {
	at := func(code errs.Code, path, msg string) error {
		e := errs.E("documents.Service.ingestDocumentReference", code, msg)
		e.Path = path
		return e
	}
	_, parseErr := fhir.Parse([]byte(`{"resourceType":`))
	d := &hl7v2.Document{ContentLoc: []string{"OBX[2]-5", "OBX[3]-5"}}
	for _, tt := range []struct {
		name     string
		err      error
		ack      hl7v2.AckCode
		code     hl7v2.ErrCode
		loc      string
		remember bool
	}{
		{"bytes not their type", at(errs.Invalid, "DocumentReference.content[1].attachment", "the content does not look like its declared contentType"),
			hl7v2.AE, hl7v2.DataTypeError, "OBX[3]-5", true},
		{"too large", at(errs.TooLarge, "DocumentReference.content[0].attachment", "the document is larger than allowed"), hl7v2.AE, hl7v2.DataTypeError, "OBX[2]-5", true},
		{"archive", at(errs.Unsupported, "", "archives are not accepted as documents"), hl7v2.AE, hl7v2.TableValueNotFound, "OBX[2]-5", true},
		{"parent not the member's", at(errs.Invalid, "DocumentReference.relatesTo.target", "relatesTo.target is not one of the sending member's documents"),
			hl7v2.AE, hl7v2.UnknownKeyIdentifier, "TXA-13", true},
		{"foreign key", db.Map("documents.insertMeta", &pgconn.PgError{Code: "23503"}), hl7v2.AR, hl7v2.ApplicationInternal, "", false},
		{"mapped resource does not parse", errs.E("exchange.HL7Intake.store", errs.Invalid, "the message maps to an invalid DocumentReference", parseErr),
			hl7v2.AR, hl7v2.ApplicationInternal, "", false},
		{"object store down", errs.E("documents.S3Blobs.Put", errs.Unavailable, "object store unavailable"), hl7v2.AR, hl7v2.ApplicationInternal, "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := contentError(tt.err, d)
			a := ackFor(err)
			if a.Code != tt.ack || a.Err != tt.code || a.Loc != tt.loc {
				t.Errorf("ACK %s %d at %q, want %s %d at %q (%v)", a.Code, a.Err, a.Loc, tt.ack, tt.code, tt.loc, err)
			}
			if content(err) != tt.remember {
				t.Errorf("remembered for the MSH-10: %v, want %v", content(err), tt.remember)
			}
		})
	}
}
