package records

import (
	"context"
	"slices"
	"strings"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
	mpistore "github.com/concord-hie/concord/mpi/store"
)

// TxAuditLog is an AuditLog that can also append inside the caller's transaction, so an
// event commits or rolls back with the write it records (*audit.Log implements it).
type TxAuditLog interface {
	AuditLog
	AppendTx(ctx context.Context, tx db.Querier, evs ...audit.Event) error
}

var _ TxAuditLog = (*audit.Log)(nil)

// Writes collects what one request or message did to members' records inside its
// transaction, for AuditWrites: writes (Add, Stored), writes the caller files under a
// person itself (File), and updates or deletes it refused as if the id were absent
// (Refuse). Make a new one inside the transaction's function, so a retried transaction
// does not record its first attempt's writes. The zero value is ready to use; it is not
// safe for concurrent use.
type Writes struct {
	items   []writeItem
	filed   []Filed
	refused []WriteRefusal
}

type writeItem struct {
	action  audit.Action
	patient string // the member Patient whose compartment holds res; "" for none
	res     audit.Resource
}

// Add records that action (audit.Create, audit.Update, audit.Delete, or audit.Read for a
// stored resource returned without a write) was done to typ/id, which lies in the
// compartment of the member's Patient patient ("" when it is in none; a Patient is in its
// own).
func (w *Writes) Add(action audit.Action, typ, id, patient string) {
	if typ == "Patient" {
		patient = id
	}
	w.items = append(w.items, writeItem{action: action, patient: patient, res: audit.Resource{Type: typ, ID: id}})
}

// Stored is Add for a resource as the store returned it.
func (w *Writes) Stored(action audit.Action, st store.Stored) {
	w.Add(action, st.Type, st.ID, st.PatientID)
}

// File records a write the caller files under a person itself: one whose member Patient
// an MPI change earlier in the transaction moved away from the person it was about, which
// AuditWrites, asking the MPI when it is called, would file under the Patient's new person
// instead (an HL7 merge's retired record). It joins the event of its action and person.
func (w *Writes) File(f Filed) { w.filed = append(w.filed, f) }

// Refuse records an update or delete refused as if the id were absent: AuditWrites
// appends its Deny event (as AuditWriteRefusal makes it) with the writes, so the refusal
// is on record exactly when the transaction's answer is given.
func (w *Writes) Refuse(r WriteRefusal) { w.refused = append(w.refused, r) }

// Refusals returns what Refuse recorded: after the transaction rolled back, taking their
// events with it, the caller commits them on their own (AuditWriteRefusals).
func (w *Writes) Refusals() []WriteRefusal { return w.refused }

// Len reports how many writes, filed writes and refusals were recorded.
func (w *Writes) Len() int { return len(w.items) + len(w.filed) + len(w.refused) }

// maxWriteResources is the most resources one write event lists (audit.Event allows 1000);
// a bundle that touches more of one person with one action gets several events.
const maxWriteResources = 1000

// AuditWrites appends, inside tx, the BALP events of the writes in ws done for v (a member
// system: its org, client, purpose, token, request ID and address): one event per person
// and action (create, update, delete; read for a stored resource returned instead of
// written, e.g. a conditional create that found its match), naming the resource types and
// ids, with outcome permit. The person is the MPI's person of the member Patient whose
// compartment holds the resource (a Patient's own), read in tx so Patients linked by this
// transaction are found.
//
// Resources in no patient compartment (Organization, Practitioner, Location, …), and
// resources of a Patient the MPI has no source record for, are recorded too: one event per
// action with no patient (BALP's plain Create/Update/Delete pattern; audit.Event allows an
// empty Patient), so every write request leaves an event, and none is filed under a person
// it may not be about. An event never lists more than 1000 resources: more of one person
// and action are split over several events.
//
// Call it last in the transaction, right before commit: audit.Log.AppendTx holds the
// chain-head lock until tx ends. Nothing recorded appends nothing (and takes no lock). Any
// failure is errs.Unavailable: the caller rolls tx back and answers 503 (or an HL7 AR), so
// no write commits without its event.
//
// Filed writes (Writes.File) join the event of their action and person, or start one, each
// resource listed once. Refusals (Writes.Refuse) get one Deny event each, its person looked
// up in tx.
func (s *Service) AuditWrites(ctx context.Context, tx db.Querier, v Viewer, ws *Writes) error {
	const op = "records.AuditWrites"
	if ws == nil || ws.Len() == 0 {
		return nil
	}
	var evs []audit.Event
	if len(ws.items) > 0 {
		var err error
		if evs, err = s.writeEvents(ctx, tx, v, ws); err != nil {
			return errs.E(op, errs.Unavailable, "audit log unavailable", err)
		}
	}
	at := s.now()
	for _, f := range ws.filed {
		evs = fileWrite(evs, v, f, at)
	}
	revs, err := s.refusalEvents(ctx, tx, v, ws.refused)
	if err != nil {
		return errs.E(op, errs.Unavailable, "audit log unavailable", err)
	}
	return s.appendTx(ctx, tx, op, append(evs, revs...)...)
}

// appendTx appends evs inside tx (TxAuditLog.AppendTx), last in the transaction so they
// commit with what they record. Any failure is errs.Unavailable under op: the caller's
// transaction must roll back.
func (s *Service) appendTx(ctx context.Context, tx db.Querier, op string, evs ...audit.Event) error {
	al, ok := s.audit.(TxAuditLog)
	if !ok {
		return errs.E(op, errs.Unavailable, "the audit log cannot append inside a transaction")
	}
	if err := al.AppendTx(ctx, tx, evs...); err != nil {
		return errs.E(op, errs.Unavailable, "audit log unavailable", err)
	}
	return nil
}

// writeEvents builds AuditWrites' events, in a stable order: by action, then by person
// ("" last), resources in the order they were recorded, each once.
func (s *Service) writeEvents(ctx context.Context, tx db.Querier, v Viewer, ws *Writes) ([]audit.Event, error) {
	persons, err := personsOf(ctx, tx, ws.items)
	if err != nil {
		return nil, err
	}
	type key struct {
		action audit.Action
		person string
	}
	groups := map[key][]audit.Resource{}
	seen := map[key]map[audit.Resource]bool{}
	var keys []key
	for _, it := range ws.items {
		k := key{it.action, persons[it.patient]}
		if seen[k] == nil {
			seen[k] = map[audit.Resource]bool{}
			keys = append(keys, k)
		}
		if !seen[k][it.res] {
			seen[k][it.res] = true
			groups[k] = append(groups[k], it.res)
		}
	}
	slices.SortFunc(keys, func(a, b key) int {
		if c := strings.Compare(string(a.action), string(b.action)); c != 0 {
			return c
		}
		switch {
		case a.person == b.person:
			return 0
		case a.person == "":
			return 1
		case b.person == "":
			return -1
		}
		return strings.Compare(a.person, b.person)
	})
	at := s.now()
	evs := make([]audit.Event, 0, len(keys))
	for _, k := range keys {
		res := groups[k]
		for len(res) > 0 {
			n := min(len(res), maxWriteResources)
			ev := event(v, k.action, k.person, at)
			ev.Outcome, ev.Resources = audit.Permit, res[:n:n]
			if k.action == audit.Read {
				ev.Reason = "own-record" // a member's own stored resource, returned to it
			}
			evs = append(evs, ev)
			res = res[n:]
		}
	}
	return evs, nil
}

// personsOf maps the member Patient ids of items to their MPI persons, in one statement
// on tx (the MPI's own lookup, mpistore.PersonOfPatient). Patients without a source record,
// and "", are missing from the map.
func personsOf(ctx context.Context, tx db.Querier, items []writeItem) (map[string]string, error) {
	var ids []string
	for _, it := range items {
		if it.patient != "" {
			ids = append(ids, it.patient)
		}
	}
	out := make(map[string]string, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	rows, err := tx.Query(ctx, `SELECT p, `+mpistore.PersonOfPatient("p")+` FROM unnest($1::text[]) AS u(p)`, ids)
	if err != nil {
		return nil, db.Map("records.personsOf", err)
	}
	defer rows.Close()
	for rows.Next() {
		var pid string
		var person *string
		if err := rows.Scan(&pid, &person); err != nil {
			return nil, db.Map("records.personsOf", err)
		}
		if person != nil {
			out[pid] = *person
		}
	}
	if err := rows.Err(); err != nil {
		return nil, db.Map("records.personsOf", err)
	}
	return out, nil
}
