package records_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/internal/testkit"
	mpistore "github.com/concord-hie/concord/mpi/store"
	"github.com/concord-hie/concord/records"
)

// recorder is an in-memory audit log for this unit of the enforcement point; the real
// chained log has its own tests. fail makes every append fail, as a dead database would.
type recorder struct {
	events []audit.Event
	fail   bool
}

func (r *recorder) Append(_ context.Context, ev audit.Event) error {
	if r.fail {
		return errors.New("audit database down")
	}
	r.events = append(r.events, ev)
	return nil
}

type directives struct {
	dirs []consent.Directive
	err  error
}

func (d directives) InForce(context.Context, string, time.Time) ([]consent.Directive, error) {
	return d.dirs, d.err
}

type fixture struct {
	svc        *records.Service
	log        *recorder
	dirs       *directives
	person     string
	obsA, obsB string // lab results from member a (unlabelled) and b (labelled PSY)
}

func setup(t *testing.T) fixture {
	t.Helper()
	pool := testkit.DB(t)
	ctx := context.Background()
	for _, m := range []string{"a", "b", "c"} {
		if _, err := pool.Exec(ctx, `INSERT INTO directory_members(id, name, system) VALUES ($1, $1, 'urn:oid:1.2.3.' || ascii($1))`, m); err != nil {
			t.Fatal(err)
		}
	}
	fs, ms := store.New(pool), mpistore.New(pool)
	f := fixture{log: &recorder{}, dirs: &directives{dirs: consent.DefaultPolicies(consent.PolicyConfig{})}}
	err := db.InTx(ctx, pool, func(tx db.Querier) error {
		var person mpistore.PersonID
		for i, m := range []string{"a", "b"} {
			p, err := fs.Put(ctx, tx, store.Write{Resource: fhir.MustParse([]byte(`{"resourceType":"Patient"}`)), MemberID: m, At: time.Now()})
			if err != nil {
				return err
			}
			src, _, err := ms.Upsert(ctx, tx, m, "urn:oid:1.2.3."+fmt.Sprint(97+i), "mrn1", p.ID, map[string]string{}, person)
			if err != nil {
				return err
			}
			person = src.PersonID
			sec := ""
			if m == "b" {
				sec = `"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY"}]},`
			}
			o, err := fs.Put(ctx, tx, store.Write{Resource: fhir.MustParse([]byte(`{"resourceType":"Observation",` + sec + `"status":"final","category":[{"coding":[{"code":"laboratory"}]}],"code":{"text":"x"},"subject":{"reference":"Patient/` + p.ID + `"}}`)),
				MemberID: m, PatientID: p.ID, At: time.Now()})
			if err != nil {
				return err
			}
			if m == "a" {
				f.obsA = o.ID
			} else {
				f.obsB = o.ID
			}
		}
		f.person = string(person)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	f.svc = records.New(fs, ms, f.dirs, f.log, nil)
	return f
}

func TestCompartmentFiltersLabelsAndAuditsFirst(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	clinicianC := records.Viewer{Client: "c1", Org: "c", Role: consent.RoleSystem, Purpose: consent.PurposeTreatment, RequestID: "r1"}
	got, err := f.svc.Compartment(ctx, clinicianC, f.person, "Observation", nil, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != f.obsA {
		t.Fatalf("treatment view of member c: %d results; want only the unlabelled one", len(got))
	}
	if len(f.log.events) != 1 || f.log.events[0].Patient != f.person || f.log.events[0].RequestID != "r1" || len(f.log.events[0].Resources) != 1 {
		t.Fatalf("audit = %+v; want one event for the person naming the one disclosed resource", f.log.events)
	}
	// The patient sees everything of their own, labels included (right of access).
	patient := records.Viewer{Actor: "iss|sub", Role: consent.RolePatient, Purpose: consent.PurposePatientRequest, PersonID: f.person}
	if got, err := f.svc.Compartment(ctx, patient, f.person, "Observation", nil, 100); err != nil || len(got) != 2 {
		t.Fatalf("patient's own view: %d, %v; want 2", len(got), err)
	}
	// Payment is denied by default: nothing, and the denial is audited.
	payer := clinicianC
	payer.Purpose = consent.PurposePayment
	if got, err := f.svc.Compartment(ctx, payer, f.person, "Observation", nil, 100); err != nil || len(got) != 0 {
		t.Fatalf("payment view: %d, %v; want none", len(got), err)
	}
	if last := f.log.events[len(f.log.events)-1]; last.Outcome != audit.Deny {
		t.Fatalf("payment denial audited as %q", last.Outcome)
	}
}

func TestReadForbiddenLooksAbsent(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	c := records.Viewer{Client: "c1", Org: "c", Role: consent.RoleSystem, Purpose: consent.PurposeTreatment}
	if _, err := f.svc.Read(ctx, c, "Observation", f.obsA); err != nil {
		t.Fatalf("treatment read of an unlabelled result: %v", err)
	}
	_, errLabelled := f.svc.Read(ctx, c, "Observation", f.obsB)
	_, errMissing := f.svc.Read(ctx, c, "Observation", "does-not-exist")
	if errs.CodeOf(errLabelled) != errs.NotFound || errs.CodeOf(errMissing) != errs.NotFound || errs.MessageOf(errLabelled) != errs.MessageOf(errMissing) {
		t.Fatalf("labelled = %v, missing = %v; want the same NotFound", errLabelled, errMissing)
	}
	// The member that sent the labelled result still reads its own record.
	b := c
	b.Org = "b"
	if _, err := f.svc.Read(ctx, b, "Observation", f.obsB); err != nil {
		t.Fatalf("own record: %v", err)
	}
}

func TestFailClosed(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	c := records.Viewer{Client: "c1", Org: "c", Role: consent.RoleSystem, Purpose: consent.PurposeTreatment}
	f.log.fail = true
	if got, err := f.svc.Compartment(ctx, c, f.person, "Observation", nil, 100); errs.CodeOf(err) != errs.Unavailable || got != nil {
		t.Fatalf("audit down: %d results, %v; want none and Unavailable", len(got), err)
	}
	if _, err := f.svc.Read(ctx, c, "Observation", f.obsA); errs.CodeOf(err) != errs.Unavailable {
		t.Fatalf("audit down read: %v; want Unavailable", err)
	}
	f.log.fail = false
	f.dirs.err = errors.New("consent store down")
	if got, err := f.svc.Compartment(ctx, c, f.person, "Observation", nil, 100); errs.CodeOf(err) != errs.Unavailable || got != nil {
		t.Fatalf("consent down: %d results, %v; want none and Unavailable", len(got), err)
	}
}

// TestPatientReadsOnlyTheirOwnPerson: the right-of-access policy permits "the patient";
// a patient viewer is that patient only for their own person's record. Another person's
// resource is NotFound (audited as a denial) and their compartment is empty.
func TestPatientReadsOnlyTheirOwnPerson(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	own := records.Viewer{Actor: "iss|p", Role: consent.RolePatient, Purpose: consent.PurposePatientRequest, PersonID: f.person}
	if _, err := f.svc.Read(ctx, own, "Observation", f.obsA); err != nil {
		t.Fatalf("own record: %v", err)
	}
	other := own
	other.Actor, other.PersonID = "iss|q", "00000000-0000-4000-8000-000000000001"
	if _, err := f.svc.Read(ctx, other, "Observation", f.obsA); errs.CodeOf(err) != errs.NotFound {
		t.Fatalf("another person's record: %v; want NotFound", err)
	}
	if ev := f.log.events[len(f.log.events)-1]; ev.Outcome != audit.Deny || ev.Actor != "iss|q" {
		t.Fatalf("the refused read's audit event = %+v", ev)
	}
	if got, err := f.svc.Compartment(ctx, other, f.person, "Observation", nil, 100); err != nil || len(got) != 0 {
		t.Fatalf("another person's compartment: %d, %v; want none", len(got), err)
	}
}

// TestReadPendingIfRecordsWhatWasNotShown: a read that consent permits and the caller's
// own rule hides is NotFound like a denial, and its one audit event is a deny with reason
// ViewerFiltered, not a disclosure.
func TestReadPendingIfRecordsWhatWasNotShown(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	c := records.Viewer{Client: "c1", Org: "c", Role: consent.RoleSystem, Purpose: consent.PurposeTreatment}
	_, err := f.svc.ReadPendingIf(ctx, c, "Observation", f.obsA, func(store.Stored) bool { return false })
	if errs.CodeOf(err) != errs.NotFound {
		t.Fatalf("hidden read: %v; want NotFound", err)
	}
	if len(f.log.events) != 1 || f.log.events[0].Outcome != audit.Deny || f.log.events[0].Reason != records.ViewerFiltered {
		t.Fatalf("events %+v; want one deny %s", f.log.events, records.ViewerFiltered)
	}
	d, err := f.svc.ReadPendingIf(ctx, c, "Observation", f.obsA, func(st store.Stored) bool { return st.ID == f.obsA })
	if err != nil || d.Wait() != nil || d.Stored.ID != f.obsA {
		t.Fatalf("shown read: %v", err)
	}
	if len(f.log.events) != 2 || f.log.events[1].Outcome != audit.Permit {
		t.Fatalf("events %+v; want a permit second", f.log.events)
	}
}
