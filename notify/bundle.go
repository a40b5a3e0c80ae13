package notify

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/concord-hie/concord/internal/errs"
)

// Notification types (SubscriptionStatus.type).
const (
	TypeHandshake   = "handshake"
	TypeHeartbeat   = "heartbeat"
	TypeEvent       = "event-notification"
	TypeQueryStatus = "query-status"
	TypeQueryEvent  = "query-event"
)

// ProfileStatusR4 is the profile of the status Parameters that leads every Backport
// notification Bundle in R4.
const ProfileStatusR4 = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4"

type reference struct {
	Reference string `json:"reference"`
}

type identifier struct {
	System string `json:"system"`
	Value  string `json:"value"`
}

type parameter struct {
	Name            string      `json:"name"`
	ValueReference  *reference  `json:"valueReference,omitempty"`
	ValueIdentifier *identifier `json:"valueIdentifier,omitempty"`
	ValueCanonical  string      `json:"valueCanonical,omitempty"`
	ValueCode       string      `json:"valueCode,omitempty"`
	ValueString     string      `json:"valueString,omitempty"`
	ValueInstant    string      `json:"valueInstant,omitempty"`
	Part            []parameter `json:"part,omitempty"`
}

type parameters struct {
	ResourceType string      `json:"resourceType"`
	ID           string      `json:"id"`
	Meta         metaJSON    `json:"meta"`
	Parameter    []parameter `json:"parameter"`
}

type entryRequest struct {
	Method string `json:"method"`
	URL    string `json:"url"`
}

type entryResponse struct {
	Status string `json:"status"`
}

type bundleEntry struct {
	FullURL  string         `json:"fullUrl"`
	Resource *parameters    `json:"resource,omitempty"`
	Request  *entryRequest  `json:"request,omitempty"`
	Response *entryResponse `json:"response,omitempty"`
}

type bundle struct {
	ResourceType string        `json:"resourceType"`
	ID           string        `json:"id"`
	Type         string        `json:"type"`
	Timestamp    string        `json:"timestamp"`
	Entry        []bundleEntry `json:"entry"`
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// Notification describes one Backport notification or status answer.
type Notification struct {
	FHIRBase string       // Concord's FHIR base; references are absolute
	Sub      Subscription // the subscription (its Events is events-since-subscription-start)
	Type     string       // TypeHandshake, TypeEvent, TypeQueryStatus, ...
	Events   []Notified   // the notification events carried (event-notification, query-event)
	At       time.Time
}

// Bundle renders the R4 Backport Bundle: a history Bundle (a searchset for
// query-status) led by the SubscriptionStatus Parameters, with one notification-event
// per event. With id-only content each event names its focus and the Bundle carries an
// entry with only the focus's fullUrl, and a link-changed event adds its LinkContext as
// parts of its notification-event (link-action, person-before, person-after, and
// person-retired or person-revived); with empty content none of these appear. No resource
// content is ever included: the recipient reads it with its own token.
func (n Notification) Bundle() ([]byte, error) {
	sub := n.Sub
	subURL := n.FHIRBase + "/Subscription/" + sub.ID
	ps := []parameter{
		{Name: "subscription", ValueReference: &reference{Reference: subURL}},
		{Name: "topic", ValueCanonical: sub.Topic},
		{Name: "status", ValueCode: string(sub.Status)},
		{Name: "type", ValueCode: n.Type},
		{Name: "events-since-subscription-start", ValueString: strconv.FormatInt(sub.Events, 10)},
	}
	var focusEntries []bundleEntry
	for _, ev := range n.Events {
		part := []parameter{{Name: "event-number", ValueString: strconv.FormatInt(ev.EventNumber, 10)}}
		if ev.At != "" {
			part = append(part, parameter{Name: "timestamp", ValueInstant: ev.At})
		}
		if sub.Payload == PayloadIDOnly && ev.Focus != "" {
			part = append(part, parameter{Name: "focus", ValueReference: &reference{Reference: n.FHIRBase + "/" + ev.Focus}})
			if ev.Context != nil {
				part = append(part, ev.Context.parts()...)
			}
			focusEntries = append(focusEntries, bundleEntry{FullURL: n.FHIRBase + "/" + ev.Focus,
				Request: &entryRequest{Method: "PUT", URL: ev.Focus}, Response: &entryResponse{Status: "200"}})
		}
		ps = append(ps, parameter{Name: "notification-event", Part: part})
	}
	statusID := newUUID()
	b := bundle{ResourceType: "Bundle", ID: newUUID(), Type: "history", Timestamp: n.At.UTC().Format("2006-01-02T15:04:05.000Z07:00")}
	lead := bundleEntry{FullURL: "urn:uuid:" + statusID,
		Resource: &parameters{ResourceType: "Parameters", ID: statusID, Meta: metaJSON{Profile: []string{ProfileStatusR4}}, Parameter: ps},
		Request:  &entryRequest{Method: "GET", URL: "Subscription/" + sub.ID + "/$status"}, Response: &entryResponse{Status: "200"}}
	if n.Type == TypeQueryStatus {
		b.Type = "searchset"
		lead.Request, lead.Response = nil, nil
	}
	b.Entry = append([]bundleEntry{lead}, focusEntries...)
	out, err := json.Marshal(b)
	if err != nil {
		return nil, errs.E("notify.Notification.Bundle", err)
	}
	return out, nil
}
