package notify

import (
	"context"
	"encoding/json"
	"sort"

	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
	mpistore "github.com/concord-hie/concord/mpi/store"
)

// SystemPerson is the identifier system of Concord's regional person ids (the MPI's
// person UUIDs) in link-changed notifications. The ids are not resolvable resources: they
// let a member correlate notifications about the same regional person.
const SystemPerson = "https://concord.example/fhir/person"

// LinkContext is what a link-changed notification says about the recipient's Patient
// (the focus): the MPI action, and the regional person the Patient belonged to before and
// after it. Retired and Revived name the person a merge retired or an unmerge restored.
// IDs and codes only; never another member's Patient ids.
type LinkContext struct {
	Action  string `json:"action"`
	Before  string `json:"before"`
	After   string `json:"after"`
	Retired string `json:"retired,omitempty"`
	Revived string `json:"revived,omitempty"`
}

// parts renders c as notification-event parts. The Backport's R4 status profile slices
// notification-event.part by name with open slicing, so parts beyond event-number,
// timestamp, focus and additional-context are allowed; these are Concord's.
func (c *LinkContext) parts() []parameter {
	id := func(name, person string) parameter {
		return parameter{Name: name, ValueIdentifier: &identifier{System: SystemPerson, Value: person}}
	}
	out := []parameter{{Name: "link-action", ValueCode: c.Action}, id("person-before", c.Before), id("person-after", c.After)}
	if c.Retired != "" {
		out = append(out, id("person-retired", c.Retired))
	}
	if c.Revived != "" {
		out = append(out, id("person-revived", c.Revived))
	}
	return out
}

// linkRecipients finds the subscriptions that want an MPI link event (payload
// mpistore.LinkChanged): active subscriptions on TopicLinkChanged of every member that owns
// one of the moved source records or has a roster entry for any person the event names
// (each move's from and to, the retired, kept and revived person). Each member hears once
// per event, about one of its own Patients (the focus): its first moved record, else its
// first roster entry on the first person named.
//
// Consent is decided, through the same records read as encounter events, on a Patient of
// another member linked to the person the focus now belongs to (one that moved, when one
// did): a member that may not see that person hears nothing. When the person holds only
// the recipient's own records, nothing of another member is told, and the focus itself is
// read (records permits a member its own records, and audits it).
func (d *Dispatcher) linkRecipients(ctx context.Context, tx db.Querier, o outboxRow) ([]recipient, error) {
	const op = "notify.Dispatcher.linkRecipients"
	var ev mpistore.LinkChanged
	if err := json.Unmarshal(o.payload, &ev); err != nil {
		d.log.Error("notify: malformed outbox payload; event dropped", "outbox_id", o.id)
		return nil, nil
	}
	moves := append([]mpistore.Moved(nil), ev.Sources...)
	sort.Slice(moves, func(i, j int) bool { return moves[i].Source < moves[j].Source })
	type target struct {
		patient string
		before  string
		after   string
	}
	chosen := map[string]target{}
	var members []string
	pick := func(member string, t target) {
		if _, ok := chosen[member]; !ok && member != "" && t.patient != "" {
			chosen[member] = t
			members = append(members, member)
		}
	}
	for _, m := range moves {
		pick(m.Member, target{patient: m.Patient, before: m.From, after: m.To})
	}
	var named []string
	seen := map[string]bool{}
	for _, m := range moves {
		named = append(named, m.From, m.To)
	}
	named = append(named, ev.Retired, ev.Into, ev.Revived)
	for _, p := range named {
		if p == "" || seen[p] {
			continue
		}
		seen[p] = true
		entries, err := d.store.RostersWithPerson(ctx, tx, mpistore.PersonID(p))
		if err != nil {
			return nil, errs.E(op, err)
		}
		for _, e := range entries {
			pick(e.MemberID, target{patient: e.PatientID, before: p, after: p})
		}
	}
	if len(members) == 0 {
		return nil, nil
	}
	subs, err := d.activeSubscriptions(ctx, tx, members)
	if err != nil {
		return nil, errs.E(op, err)
	}
	checks := map[string]string{} // member → Patient id read to decide consent
	var out []recipient
	for _, s := range subs {
		if s.Topic != TopicLinkChanged {
			continue
		}
		t := chosen[s.MemberID]
		check, ok := checks[s.MemberID]
		if !ok {
			if check, err = d.consentPatient(ctx, tx, s.MemberID, t.after, moves); err != nil {
				return nil, errs.E(op, err)
			}
			if check == "" {
				check = t.patient
			}
			checks[s.MemberID] = check
		}
		out = append(out, recipient{sub: s, focus: "Patient/" + t.patient, checkTyp: "Patient", checkID: check,
			context: &LinkContext{Action: ev.Action, Before: t.before, After: t.after, Retired: ev.Retired, Revived: ev.Revived}})
	}
	return out, nil
}

// consentPatient returns a Patient of a member other than member that is linked to person
// now: a moved one when there is one, else the lowest source record's; "" when the person
// holds only member's records.
func (d *Dispatcher) consentPatient(ctx context.Context, tx db.Querier, member, person string, moves []mpistore.Moved) (string, error) {
	moved := []string{}
	for _, m := range moves {
		if m.Member != member && m.To == person {
			moved = append(moved, m.Patient)
		}
	}
	var patient string
	err := tx.QueryRow(ctx, `SELECT patient_id FROM mpi_source_records WHERE person_id = $1 AND member_id <> $2
		ORDER BY patient_id = ANY($3) DESC, id LIMIT 1`, person, member, moved).Scan(&patient)
	if errs.CodeOf(db.Map("notify.consentPatient", err)) == errs.NotFound {
		return "", nil
	}
	if err != nil {
		return "", errs.E("notify.Dispatcher.consentPatient", errs.Unavailable, "person lookup failed", err)
	}
	return patient, nil
}
