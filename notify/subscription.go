package notify

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/concord-hie/concord/internal/errs"
)

// Backport and topic canonicals.
const (
	ExtFilterCriteria  = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria"
	ExtPayloadContent  = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content"
	ProfileBackportSub = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription"

	// TopicAdmission: an encounter started (A01/A04, or an Encounter arrived/in-progress).
	TopicAdmission = "https://concord.example/fhir/SubscriptionTopic/encounter-admission"
	// TopicDischarge: an encounter ended (A03, or an Encounter finished).
	TopicDischarge = "https://concord.example/fhir/SubscriptionTopic/encounter-discharge"
	// TopicEncounter: any encounter event, updates included.
	TopicEncounter = "https://concord.example/fhir/SubscriptionTopic/encounter"
	// TopicLinkChanged: the MPI changed which regional person one of the member's Patients
	// belongs to, or what records its person holds (link, unlink, merge, unmerge,
	// keep-apart, source-retired). No filter criteria are supported.
	TopicLinkChanged = "https://concord.example/fhir/SubscriptionTopic/patient-link-changed"
)

// topicKinds maps each accepted topic canonical to the encounter event kinds it carries.
// The us-core-style patient-admission/-discharge canonicals are accepted as aliases.
// TopicLinkChanged carries no encounter event: the dispatcher fans MPI link events out to
// it (see linkRecipients).
var topicKinds = map[string][]EventKind{
	TopicLinkChanged: nil,
	TopicAdmission:   {KindAdmission},
	TopicDischarge:   {KindDischarge},
	TopicEncounter:   {KindAdmission, KindDischarge, KindUpdate},
	"http://hl7.org/fhir/us/core/SubscriptionTopic/patient-admission": {KindAdmission},
	"http://hl7.org/fhir/us/core/SubscriptionTopic/patient-discharge": {KindDischarge},
}

// FocusType returns the resource type a topic's notifications name as their focus:
// Encounter for the encounter topics, Patient for TopicLinkChanged, "" for a topic
// Concord does not serve. A subscriber must be allowed to read it (the notification names
// it, as $events does).
func FocusType(topic string) string {
	kinds, ok := topicKinds[topic]
	switch {
	case !ok:
		return ""
	case kinds == nil:
		return "Patient"
	}
	return "Encounter"
}

// Topics returns the topic canonicals Concord serves.
func Topics() []string {
	return []string{TopicAdmission, TopicDischarge, TopicEncounter,
		"http://hl7.org/fhir/us/core/SubscriptionTopic/patient-admission",
		"http://hl7.org/fhir/us/core/SubscriptionTopic/patient-discharge",
		TopicLinkChanged}
}

// Status is a Subscription's status.
type Status string

const (
	StatusRequested Status = "requested" // accepted; the handshake has not succeeded yet
	StatusActive    Status = "active"    // the handshake succeeded; events are sent
	StatusError     Status = "error"     // the handshake failed for good
	StatusOff       Status = "off"       // its end passed (or it was turned off): nothing is sent
)

// Payload content codes.
const (
	PayloadIDOnly = "id-only"
	PayloadEmpty  = "empty"
)

// Filter is a parsed backport-filter-criteria: "Encounter?class=IMP,EMER" (the only
// parameter supported). The zero Filter matches every event.
type Filter struct {
	Classes []string
}

// Matches reports whether ev passes the filter.
func (f Filter) Matches(ev EncounterEvent) bool {
	if len(f.Classes) == 0 {
		return true
	}
	for _, c := range f.Classes {
		if c == ev.Class {
			return true
		}
	}
	return false
}

// ParseFilter parses backport-filter-criteria; "" is no filter.
func ParseFilter(s string) (Filter, error) {
	const op = "notify.ParseFilter"
	if s == "" {
		return Filter{}, nil
	}
	q, ok := strings.CutPrefix(s, "Encounter?")
	if !ok {
		return Filter{}, errs.E(op, errs.Invalid, "filter criteria must be Encounter?class=...")
	}
	v, err := url.ParseQuery(q)
	if err != nil {
		return Filter{}, errs.E(op, errs.Invalid, "malformed filter criteria")
	}
	var f Filter
	for k, vals := range v {
		if k != "class" || len(vals) != 1 || vals[0] == "" {
			return Filter{}, errs.E(op, errs.Invalid, "the only supported filter is one class=code[,code]")
		}
		f.Classes = strings.Split(vals[0], ",")
	}
	return f, nil
}

// Subscription is a member's subscription as stored.
type Subscription struct {
	ID       string
	MemberID string
	Topic    string
	Filter   string   // backport-filter-criteria as sent
	Endpoint string   // channel.endpoint
	Headers  []string // channel.header lines ("Name: value"); sent only to Endpoint
	Payload  string   // id-only or empty
	Status   Status
	Events   int64 // events-since-subscription-start
	Reason   string
	End      string // instant after which nothing is sent (the status becomes off); "" for none
}

// Extension is a FHIR extension with the value types this package reads and writes.
type Extension struct {
	URL         string `json:"url"`
	ValueString string `json:"valueString,omitempty"`
	ValueCode   string `json:"valueCode,omitempty"`
}

type elementExt struct {
	Extension []Extension `json:"extension,omitempty"`
}

// subscriptionJSON is the R4 Subscription with the Backport extensions.
type subscriptionJSON struct {
	ResourceType string      `json:"resourceType"`
	ID           string      `json:"id,omitempty"`
	Meta         *metaJSON   `json:"meta,omitempty"`
	Status       string      `json:"status"`
	End          string      `json:"end,omitempty"`
	Reason       string      `json:"reason"`
	Criteria     string      `json:"criteria"`
	CriteriaExt  *elementExt `json:"_criteria,omitempty"`
	Channel      channelJSON `json:"channel"`
}

type metaJSON struct {
	Profile []string `json:"profile,omitempty"`
}

type channelJSON struct {
	Type       string      `json:"type"`
	Endpoint   string      `json:"endpoint,omitempty"`
	Payload    string      `json:"payload,omitempty"`
	PayloadExt *elementExt `json:"_payload,omitempty"`
	Header     []string    `json:"header,omitempty"`
}

// ParseSubscription reads a Subscription body that fhir.Parse has already accepted
// (duplicate and unknown members are refused there) and checks what Concord supports:
// a served topic, a valid filter, channel rest-hook with an endpoint, payload
// application/fhir+json with content id-only (default) or empty, and well-formed header
// lines. The endpoint's origin is checked against the member's registered endpoints by
// the caller.
func ParseSubscription(body []byte) (Subscription, error) {
	const op = "notify.ParseSubscription"
	var sj subscriptionJSON
	if err := json.Unmarshal(body, &sj); err != nil {
		return Subscription{}, errs.E(op, errs.Invalid, "malformed Subscription", err)
	}
	invalid := func(msg, path string) error {
		e := errs.E(op, errs.Invalid, msg)
		e.Path = path
		return e
	}
	if _, ok := topicKinds[sj.Criteria]; !ok {
		return Subscription{}, invalid("criteria must be a topic canonical this server serves", "Subscription.criteria")
	}
	s := Subscription{Topic: sj.Criteria, Endpoint: sj.Channel.Endpoint, Payload: PayloadIDOnly, Reason: sj.Reason, End: sj.End}
	if _, err := endsAt(s.End); err != nil {
		return Subscription{}, err
	}
	if sj.CriteriaExt != nil {
		for _, x := range sj.CriteriaExt.Extension {
			if x.URL == ExtFilterCriteria {
				if s.Filter != "" {
					return Subscription{}, invalid("one filter criteria extension is supported", "Subscription.criteria")
				}
				s.Filter = x.ValueString
			}
		}
	}
	if _, err := ParseFilter(s.Filter); err != nil {
		return Subscription{}, err
	}
	if s.Topic == TopicLinkChanged && s.Filter != "" {
		return Subscription{}, invalid("the patient-link-changed topic takes no filter criteria", "Subscription.criteria")
	}
	if sj.Channel.Type != "rest-hook" {
		return Subscription{}, invalid("channel.type must be rest-hook", "Subscription.channel.type")
	}
	if s.Endpoint == "" {
		return Subscription{}, invalid("channel.endpoint is required", "Subscription.channel.endpoint")
	}
	if p := sj.Channel.Payload; p != "" && p != "application/fhir+json" && p != "application/json" {
		return Subscription{}, invalid("channel.payload must be application/fhir+json", "Subscription.channel.payload")
	}
	if sj.Channel.PayloadExt != nil {
		for _, x := range sj.Channel.PayloadExt.Extension {
			if x.URL == ExtPayloadContent {
				s.Payload = x.ValueCode
			}
		}
	}
	if s.Payload != PayloadIDOnly && s.Payload != PayloadEmpty {
		return Subscription{}, invalid("payload content must be id-only or empty (recipients read with their own token)", "Subscription.channel.payload")
	}
	for _, h := range sj.Channel.Header {
		name, value, ok := strings.Cut(h, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.TrimSpace(value) == "" || strings.ContainsAny(h, "\r\n") || !validHeaderName(name) {
			return Subscription{}, invalid("channel.header entries must be 'Name: value'", "Subscription.channel.header")
		}
		switch http.CanonicalHeaderKey(name) {
		case "Host", "Content-Length", "Content-Type", "Transfer-Encoding", "Connection":
			return Subscription{}, invalid("channel.header may not set "+http.CanonicalHeaderKey(name), "Subscription.channel.header")
		}
		s.Headers = append(s.Headers, h)
	}
	return s, nil
}

// endsAt parses a Subscription.end: nil for none, else the instant it names. Anything
// but a FHIR instant (date, time and zone) is errs.Invalid naming Subscription.end.
func endsAt(end string) (*time.Time, error) {
	if end == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339Nano, end)
	if err != nil || !strings.Contains(end, "T") {
		return nil, endInvalid("notify.endsAt", "end must be an instant (date, time and zone)")
	}
	return &t, nil
}

// endInvalid is the errs.Invalid error of an unacceptable Subscription.end.
func endInvalid(op, msg string) error {
	e := errs.E(op, errs.Invalid, msg)
	e.Path = "Subscription.end"
	return e
}

func validHeaderName(n string) bool {
	for _, r := range n {
		if !(r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

// JSON renders the Subscription as R4 + Backport. Header values are not echoed back
// (they usually hold the receiver's credential): each line shows only its name.
func (s Subscription) JSON() ([]byte, error) {
	sj := subscriptionJSON{
		ResourceType: "Subscription", ID: s.ID, Meta: &metaJSON{Profile: []string{ProfileBackportSub}},
		Status: string(s.Status), End: s.End, Reason: s.Reason, Criteria: s.Topic,
		Channel: channelJSON{Type: "rest-hook", Endpoint: s.Endpoint, Payload: "application/fhir+json",
			PayloadExt: &elementExt{Extension: []Extension{{URL: ExtPayloadContent, ValueCode: s.Payload}}}},
	}
	if sj.Reason == "" {
		sj.Reason = "notifications"
	}
	if s.Filter != "" {
		sj.CriteriaExt = &elementExt{Extension: []Extension{{URL: ExtFilterCriteria, ValueString: s.Filter}}}
	}
	for _, h := range s.Headers {
		name, _, _ := strings.Cut(h, ":")
		sj.Channel.Header = append(sj.Channel.Header, strings.TrimSpace(name)+": [redacted]")
	}
	b, err := json.Marshal(sj)
	if err != nil {
		return nil, errs.E("notify.Subscription.JSON", err)
	}
	return b, nil
}

// Wants reports whether the subscription's topic and filter select ev.
func (s Subscription) Wants(ev EncounterEvent) bool {
	ok := false
	for _, k := range topicKinds[s.Topic] {
		ok = ok || k == ev.Kind
	}
	if !ok {
		return false
	}
	f, err := ParseFilter(s.Filter)
	return err == nil && f.Matches(ev)
}
