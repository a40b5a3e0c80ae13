package records_test

import (
	"context"
	"slices"
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

func TestSharedDecidesAsShareRoleAndAuditsTheUse(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	sh := records.Share{LinkID: 7, PersonID: f.person, RequestID: "r-share", SourceIP: "192.0.2.1"}
	got, err := f.svc.Shared(ctx, sh, "Observation", nil, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != f.obsA {
		t.Fatalf("all labs through a link: %d results; want only the unlabelled one (b's is PSY)", len(got))
	}
	if len(f.log.events) != 1 {
		t.Fatalf("audit: %d events; want one per use", len(f.log.events))
	}
	ev := f.log.events[0]
	if !ev.ShareLink || ev.Role != consent.RoleShare || ev.Purpose != consent.PurposePatientRequest || ev.Actor != "" ||
		ev.Patient != f.person || ev.RequestID != "r-share" || ev.TokenID != "share-link/7" || ev.Action != audit.Query ||
		ev.Outcome != audit.Permit || len(ev.Resources) != 1 {
		t.Fatalf("audit event = %+v", ev)
	}
	// With sensitive results chosen: both (right of access, no Part 2 here).
	sh.IncludeSensitive = true
	if got, err = f.svc.Shared(ctx, sh, "Observation", nil, 100); err != nil || len(got) != 2 || len(f.log.events[1].Resources) != 2 {
		t.Fatalf("all labs with sensitive ones: %d, %v", len(got), err)
	}
	// A link naming the sensitive result shows it when it was made for a sensitive result
	// (IncludeSensitive: the patient chose it as it was), and not otherwise.
	sh.ResourceID = f.obsB
	if got, err = f.svc.Shared(ctx, sh, "Observation", nil, 100); err != nil || len(got) != 1 || got[0].ID != f.obsB {
		t.Fatalf("the PSY result by name, chosen as sensitive: %d, %v", len(got), err)
	}
	sh.IncludeSensitive = false
	if got, err = f.svc.Shared(ctx, sh, "Observation", nil, 100); err != nil || len(got) != 0 {
		t.Fatalf("the PSY result by name, chosen as not sensitive: %d, %v; want none", len(got), err)
	}
	f.log.events = f.log.events[:1]

	// A link that names one result shows that one only, audited as a read.
	sh.ResourceID = f.obsA
	got, err = f.svc.Shared(ctx, sh, "Observation", nil, 100)
	if err != nil || len(got) != 1 || got[0].ID != f.obsA {
		t.Fatalf("one lab through a link: %d, %v", len(got), err)
	}
	if ev := f.log.events[1]; ev.Action != audit.Read || !ev.ShareLink || len(ev.Resources) != 1 {
		t.Fatalf("audit of a one-result link = %+v", ev)
	}
	// Another person's resource ID through this person's link: nothing.
	sh.ResourceID = "not-in-this-compartment"
	if got, err := f.svc.Shared(ctx, sh, "Observation", nil, 100); err != nil || len(got) != 0 {
		t.Fatalf("foreign resource through a link: %d, %v; want none", len(got), err)
	}
}

func TestSharedHonoursDenyAndFailsClosed(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	sh := records.Share{LinkID: 1, PersonID: f.person}
	f.dirs.dirs = append(f.dirs.dirs, consent.Directive{ID: "no-links", Kind: consent.KindPatient, PersonID: f.person,
		Status: consent.StatusActive, PolicyRule: consent.OptOut, Version: 1,
		Provision: consent.Provision{Type: consent.Deny, Actors: []consent.Actor{{Role: consent.RoleShare}}, Purposes: []string{consent.PurposePatientRequest}}})
	got, err := f.svc.Shared(ctx, sh, "Observation", nil, 100)
	if err != nil || len(got) != 0 {
		t.Fatalf("patient denied share links: %d, %v; want none", len(got), err)
	}
	if ev := f.log.events[0]; ev.Outcome != audit.Deny || !ev.ShareLink {
		t.Fatalf("denial audited as %+v", ev)
	}
	f.log.fail = true
	if got, err := f.svc.Shared(ctx, sh, "Observation", nil, 100); errs.CodeOf(err) != errs.Unavailable || got != nil {
		t.Fatalf("audit down: %d, %v; want none and Unavailable", len(got), err)
	}
}

// shareFixture is one person (one Patient at member a) with nothing stored yet but the
// Patient, over its own database, so a test can write and relabel results.
type shareFixture struct {
	svc     *records.Service
	log     *recorder
	fs      *store.Store
	pool    db.TxStarter
	person  string
	patient string
}

func newShareFixture(t *testing.T) shareFixture {
	t.Helper()
	pool := testkit.DB(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `INSERT INTO directory_members(id, name, system) VALUES ('a', 'a', 'urn:oid:1.2.3.97')`); err != nil {
		t.Fatal(err)
	}
	fs, ms := store.New(pool), mpistore.New(pool)
	f := shareFixture{log: &recorder{}, fs: fs, pool: pool}
	err := db.InTx(ctx, pool, func(tx db.Querier) error {
		p, err := fs.Put(ctx, tx, store.Write{Resource: fhir.MustParse([]byte(`{"resourceType":"Patient"}`)), MemberID: "a", At: time.Now()})
		if err != nil {
			return err
		}
		src, _, err := ms.Upsert(ctx, tx, "a", "urn:oid:1.2.3.97", "mrn-share", p.ID, map[string]string{}, "")
		f.person, f.patient = string(src.PersonID), p.ID
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	f.svc = records.New(fs, ms, &directives{dirs: consent.DefaultPolicies(consent.PolicyConfig{})}, f.log, nil)
	return f
}

// put stores an Observation of category cat (as id, a new one when id is ""), labelled
// with the v3-ActCode security label when label is not "", and returns its id.
func (f shareFixture) put(t *testing.T, id, cat, label string) string {
	t.Helper()
	ctx := context.Background()
	sec := ""
	if label != "" {
		sec = `"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"` + label + `"}]},`
	}
	var st store.Stored
	err := db.InTx(ctx, f.pool, func(tx db.Querier) (err error) {
		st, err = f.fs.Put(ctx, tx, store.Write{ID: id, Resource: fhir.MustParse([]byte(`{"resourceType":"Observation",` + sec +
			`"status":"final","category":[{"coding":[{"code":"` + cat + `"}]}],"code":{"text":"x"},"subject":{"reference":"Patient/` + f.patient + `"}}`)),
			MemberID: "a", PatientID: f.patient, At: time.Now()})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return st.ID
}

func labsOnly(st store.Stored) bool {
	_, cats, ok := fhir.ConsentCodes(st.Body)
	return ok && slices.Contains(cats, "laboratory")
}

// TestSharedOneResultBecameSensitive: a link made for one result that was not sensitive
// stops showing it once the member re-sends it with a sensitive label, as if it were gone;
// a link made for a result that was sensitive (IncludeSensitive) still shows it.
func TestSharedOneResultBecameSensitive(t *testing.T) {
	f := newShareFixture(t)
	ctx := context.Background()
	obs := f.put(t, "", "laboratory", "")
	sh := records.Share{LinkID: 3, PersonID: f.person, ResourceID: obs}
	if got, err := f.svc.Shared(ctx, sh, "Observation", nil, 100); err != nil || len(got) != 1 || got[0].ID != obs {
		t.Fatalf("before the relabel: %d, %v; want the result", len(got), err)
	}
	f.put(t, obs, "laboratory", "HIV")
	got, err := f.svc.Shared(ctx, sh, "Observation", nil, 100)
	if err != nil || len(got) != 0 {
		t.Fatalf("after the member labelled it HIV: %d, %v; want none", len(got), err)
	}
	if ev := f.log.events[len(f.log.events)-1]; ev.Action != audit.Read || !ev.ShareLink || len(ev.Resources) != 0 {
		t.Fatalf("audit of the use after the relabel = %+v; want a read naming nothing", ev)
	}
	sh.IncludeSensitive = true
	if got, err := f.svc.Shared(ctx, sh, "Observation", nil, 100); err != nil || len(got) != 1 || got[0].Version != 2 {
		t.Fatalf("a link made for a sensitive result: %d, %v; want the current version", len(got), err)
	}
}

// TestSharedLimitCountsOnlyWhatIsShown: the limit is applied to what the link shows, not
// to the rows read before the link's filters: a one-result link finds its result behind
// newer ones, and a link of all labs is not cut short by newer vital signs or hidden
// results.
func TestSharedLimitCountsOnlyWhatIsShown(t *testing.T) {
	f := newShareFixture(t)
	ctx := context.Background()
	older := f.put(t, "", "laboratory", "")
	lab2 := f.put(t, "", "laboratory", "")
	f.put(t, "", "laboratory", "PSY") // hidden from a link without sensitive results
	for range 5 {
		f.put(t, "", "vital-signs", "")
	}
	sh := records.Share{LinkID: 4, PersonID: f.person, ResourceID: older}
	if got, err := f.svc.Shared(ctx, sh, "Observation", labsOnly, 1); err != nil || len(got) != 1 || got[0].ID != older {
		t.Fatalf("one older result with limit 1: %d, %v; want it", len(got), err)
	}
	sh.ResourceID = ""
	got, err := f.svc.Shared(ctx, sh, "Observation", labsOnly, 2)
	if err != nil || len(got) != 2 || got[0].ID != lab2 || got[1].ID != older {
		t.Fatalf("all labs, limit 2, behind 5 vital signs and a PSY result: %d, %v; want the 2 unlabelled labs, newest first", len(got), err)
	}
	if ev := f.log.events[len(f.log.events)-1]; len(ev.Resources) != 2 || ev.Resources[0].ID != lab2 || ev.Resources[1].ID != older {
		t.Fatalf("audit names %+v; want exactly the 2 shown", ev.Resources)
	}
	if got, err := f.svc.Shared(ctx, sh, "Observation", labsOnly, 1); err != nil || len(got) != 1 || got[0].ID != lab2 {
		t.Fatalf("all labs, limit 1: %d, %v; want the newest lab", len(got), err)
	}
	if ev := f.log.events[len(f.log.events)-1]; len(ev.Resources) != 1 || ev.Resources[0].ID != lab2 {
		t.Fatalf("audit names %+v; want exactly the one shown", ev.Resources)
	}
	// A resource of this person that is not of the type asked for, and one deleted: nothing.
	sh.ResourceID = f.patient
	if got, err := f.svc.Shared(ctx, sh, "Observation", nil, 10); err != nil || len(got) != 0 {
		t.Fatalf("the person's Patient through a link of Observations: %d, %v; want none", len(got), err)
	}
	err = db.InTx(ctx, f.pool, func(tx db.Querier) error {
		_, err := f.fs.Delete(ctx, tx, "Observation", older, "a", time.Now())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sh.ResourceID = older
	if got, err := f.svc.Shared(ctx, sh, "Observation", nil, 10); err != nil || len(got) != 0 {
		t.Fatalf("a deleted result: %d, %v; want none", len(got), err)
	}
}
