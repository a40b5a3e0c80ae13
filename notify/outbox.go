package notify

import (
	"context"
	"encoding/json"

	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

// OutboxTopicEncounter is the outbox_events.topic of encounter events. The dispatcher
// claims only this topic and the MPI's mpistore.TopicLinkChanged (whose one consumer it
// is), so other outbox consumers coexist.
const OutboxTopicEncounter = "notify.encounter"

// EventKind says what happened to an encounter.
type EventKind string

const (
	KindAdmission EventKind = "admission" // the encounter started (A01, A04; status arrived or in-progress)
	KindDischarge EventKind = "discharge" // the encounter ended (A03; status finished)
	KindUpdate    EventKind = "update"    // anything else (A08, corrections, planned)
)

// EncounterEvent is the outbox payload of an encounter event: IDs and codes only, never
// demographics or text.
type EncounterEvent struct {
	EncounterID string    `json:"encounter"`       // the stored Encounter's id
	PatientID   string    `json:"patient"`         // the sending member's Patient id
	MemberID    string    `json:"member"`          // the sending member
	Kind        EventKind `json:"kind"`            // admission, discharge or update
	Class       string    `json:"class,omitempty"` // Encounter.class code (IMP, EMER, AMB, ...)
}

// EnqueueEncounter writes ev to the outbox in tx, so the event exists exactly when the
// change that caused it commits. Call it in the same transaction as the Encounter write.
func EnqueueEncounter(ctx context.Context, tx db.Querier, ev EncounterEvent) error {
	const op = "notify.EnqueueEncounter"
	if ev.EncounterID == "" || ev.PatientID == "" || ev.MemberID == "" {
		return errs.E(op, errs.Internal, "an encounter event needs the encounter, patient and member")
	}
	switch ev.Kind {
	case KindAdmission, KindDischarge, KindUpdate:
	default:
		return errs.E(op, errs.Internal, "unknown encounter event kind")
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return errs.E(op, err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO outbox_events (topic, key, payload) VALUES ($1, $2, $3)`,
		OutboxTopicEncounter, "Encounter/"+ev.EncounterID, b); err != nil {
		return errs.E(op, errs.Unavailable, "could not write the outbox", err)
	}
	return nil
}

// encounterFields is the part of an Encounter the event needs.
type encounterFields struct {
	Status string `json:"status"`
	Class  *struct {
		Code string `json:"code"`
	} `json:"class"`
}

// EncounterEventOf derives the event for a stored Encounter version: arrived or
// in-progress is an admission, finished a discharge, anything else an update. ok is false
// for a resource that is not an Encounter in a patient compartment (nothing to notify).
func EncounterEventOf(st store.Stored) (ev EncounterEvent, ok bool) {
	if st.Type != "Encounter" || st.PatientID == "" || st.Deleted {
		return EncounterEvent{}, false
	}
	var f encounterFields
	_ = json.Unmarshal(st.Body, &f) // stored bodies were validated on the way in
	ev = EncounterEvent{EncounterID: st.ID, PatientID: st.PatientID, MemberID: st.MemberID, Kind: KindUpdate}
	switch f.Status {
	case "arrived", "in-progress":
		ev.Kind = KindAdmission
	case "finished":
		ev.Kind = KindDischarge
	}
	if f.Class != nil {
		ev.Class = f.Class.Code
	}
	return ev, true
}

// EnqueueStored enqueues the event of a stored resource version, if it has one (see
// EncounterEventOf), in tx. The exchange's Ingest calls it for every write, so FHIR
// creates, updates, bundles and HL7 v2 intake all notify.
func EnqueueStored(ctx context.Context, tx db.Querier, st store.Stored) error {
	ev, ok := EncounterEventOf(st)
	if !ok {
		return nil
	}
	return EnqueueEncounter(ctx, tx, ev)
}
