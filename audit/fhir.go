package audit

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// Code systems used by ToFHIR.
const (
	sysDCM        = "http://dicom.nema.org/resources/ontology/DCM"
	sysEventType  = "http://terminology.hl7.org/CodeSystem/audit-event-type"
	sysRestful    = "http://hl7.org/fhir/restful-interaction"
	sysLifecycle  = "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle"
	sysAuthZ      = "https://profiles.ihe.net/ITI/BALP/CodeSystem/AuthZsubType"
	sysUserAgent  = "https://profiles.ihe.net/ITI/BALP/CodeSystem/UserAgentTypes"
	sysBALPEntity = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"
	sysEntityType = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
	sysObjectRole = "http://terminology.hl7.org/CodeSystem/object-role"
	sysActReason  = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
	sysRoleClass  = "http://terminology.hl7.org/CodeSystem/v3-RoleClass"
	sysSourceType = "http://terminology.hl7.org/CodeSystem/security-source-type"
	sysAction     = "urn:concord:audit-action"
	sysMember     = "urn:concord:member"
	sysRole       = "urn:concord:role"
	sysClientID   = "urn:ietf:params:oauth:client-id"
)

type fCoding struct {
	System  string `json:"system,omitempty"`
	Code    string `json:"code"`
	Display string `json:"display,omitempty"`
}

type fCC struct {
	Coding []fCoding `json:"coding"`
}

type fIdentifier struct {
	System string `json:"system,omitempty"`
	Value  string `json:"value"`
}

type fRef struct {
	Reference  string       `json:"reference,omitempty"`
	Identifier *fIdentifier `json:"identifier,omitempty"`
	Display    string       `json:"display,omitempty"`
}

type fNetwork struct {
	Address string `json:"address"`
	Type    string `json:"type"`
}

type fAgent struct {
	Type         *fCC      `json:"type,omitempty"`
	Role         []fCC     `json:"role,omitempty"`
	Who          *fRef     `json:"who,omitempty"`
	Requestor    bool      `json:"requestor"`
	Policy       []string  `json:"policy,omitempty"`
	Network      *fNetwork `json:"network,omitempty"`
	PurposeOfUse []fCC     `json:"purposeOfUse,omitempty"`
}

type fSource struct {
	Site     string    `json:"site,omitempty"`
	Observer fRef      `json:"observer"`
	Type     []fCoding `json:"type"`
}

type fDetail struct {
	Type        string `json:"type"`
	ValueString string `json:"valueString"`
}

type fEntity struct {
	What        *fRef     `json:"what,omitempty"`
	Type        *fCoding  `json:"type,omitempty"`
	Role        *fCoding  `json:"role,omitempty"`
	Description string    `json:"description,omitempty"`
	Query       string    `json:"query,omitempty"`
	Detail      []fDetail `json:"detail,omitempty"`
}

type fMeta struct {
	Profile []string `json:"profile,omitempty"`
}

type fAuditEvent struct {
	ResourceType   string    `json:"resourceType"`
	ID             string    `json:"id"`
	Meta           *fMeta    `json:"meta,omitempty"`
	Type           fCoding   `json:"type"`
	Subtype        []fCoding `json:"subtype,omitempty"`
	Action         string    `json:"action,omitempty"`
	Recorded       string    `json:"recorded"`
	Outcome        string    `json:"outcome"`
	OutcomeDesc    string    `json:"outcomeDesc,omitempty"`
	PurposeOfEvent []fCC     `json:"purposeOfEvent,omitempty"`
	Agent          []fAgent  `json:"agent"`
	Source         fSource   `json:"source"`
	Entity         []fEntity `json:"entity,omitempty"`
}

const balpProfile = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/"

// ToFHIR renders ev as an R4 AuditEvent (JSON) after IHE BALP, with references absolute under
// base (e.g. "https://hie.example/fhir"). The id is the event's seq. Type and subtype follow
// the BALP pattern for the action (RESTful interactions, PrivacyDisclosure, AuthZconsent,
// login, export), and a subtype in urn:concord:audit-action always names Concord's own action
// code. Outcome is 0 (permit), 4 (deny) or 8 (failure) with the reason code as outcomeDesc.
// The user agent carries the who identifier (issuer as system, subject as value), requestor
// true, the role, the token jti as policy and the source address; the patient is an entity
// with role 1, each resource one with role 4, the query one with role 24 and the query
// base64; the request ID is an XrequestId entity.
func ToFHIR(ev Event, base string) []byte {
	base = strings.TrimRight(base, "/")
	a := fAuditEvent{
		ResourceType: "AuditEvent",
		ID:           strconv.FormatInt(ev.Seq, 10),
		Recorded:     ev.Time.UTC().Format(time.RFC3339Nano),
		OutcomeDesc:  ev.Reason,
		Source: fSource{
			Site:     base,
			Observer: fRef{Identifier: &fIdentifier{System: "urn:ietf:rfc:3986", Value: base}, Display: "Concord"},
			Type:     []fCoding{{System: sysSourceType, Code: "4", Display: "Application Server"}},
		},
	}
	switch ev.Outcome {
	case Permit:
		a.Outcome = "0"
	case Deny:
		a.Outcome = "4"
	default:
		a.Outcome = "8"
	}
	profile := ""
	switch ev.Action {
	case Read, Query, Create, Update, Delete, ConsentChange:
		sub := map[Action]string{Read: "read", Query: "search-type", Create: "create", Update: "update", Delete: "delete", ConsentChange: "update"}[ev.Action]
		a.Type = fCoding{System: sysEventType, Code: "rest", Display: "RESTful Operation"}
		a.Subtype = []fCoding{{System: sysRestful, Code: sub}}
		a.Action = map[Action]string{Read: "R", Query: "E", Create: "C", Update: "U", Delete: "D", ConsentChange: "U"}[ev.Action]
		if ev.Patient != "" {
			profile = map[Action]string{Read: "IHE.BasicAudit.PatientRead", Query: "IHE.BasicAudit.PatientQuery",
				Create: "IHE.BasicAudit.PatientCreate", Update: "IHE.BasicAudit.PatientUpdate",
				Delete: "IHE.BasicAudit.PatientDelete", ConsentChange: "IHE.BasicAudit.PatientUpdate"}[ev.Action]
		}
	case Disclosure:
		a.Type = fCoding{System: sysLifecycle, Code: "disclose", Display: "Disclose Record Lifecycle Event"}
		a.Action = "R"
		profile = "IHE.BasicAudit.PrivacyDisclosure.Source"
	case ConsentDecision:
		a.Type = fCoding{System: sysDCM, Code: "110113", Display: "Security Alert"}
		a.Subtype = []fCoding{{System: sysAuthZ, Code: "AuthZ-Consent", Display: "Authorization Decision by Consent"}}
		a.Action = "E"
		profile = "IHE.BasicAudit.AuthZconsent"
	case Login, Logout:
		a.Type = fCoding{System: sysDCM, Code: "110114", Display: "User Authentication"}
		if ev.Action == Login {
			a.Subtype = []fCoding{{System: sysDCM, Code: "110122", Display: "Login"}}
		} else {
			a.Subtype = []fCoding{{System: sysDCM, Code: "110123", Display: "Logout"}}
		}
		a.Action = "E"
	case BreakGlass:
		a.Type = fCoding{System: sysDCM, Code: "110113", Display: "Security Alert"}
		a.Subtype = []fCoding{{System: sysActReason, Code: "BTG", Display: "break the glass"}}
		a.Action = "E"
	case Export:
		a.Type = fCoding{System: sysDCM, Code: "110106", Display: "Export"}
		a.Action = "R"
	case Merge, Unmerge, Link, Unlink:
		code := map[Action]string{Merge: "merge", Unmerge: "unmerge", Link: "link", Unlink: "unlink"}[ev.Action]
		a.Type = fCoding{System: sysLifecycle, Code: code}
		a.Action = "U"
	default:
		a.Type = fCoding{System: sysEventType, Code: "rest"}
	}
	a.Subtype = append(a.Subtype, fCoding{System: sysAction, Code: string(ev.Action)})
	if profile != "" {
		a.Meta = &fMeta{Profile: []string{balpProfile + profile}}
	}
	var purposes []fCC
	if ev.Purpose != "" {
		purposes = append(purposes, fCC{Coding: []fCoding{{System: sysActReason, Code: ev.Purpose}}})
	}
	if ev.BreakGlass && ev.Purpose != "BTG" {
		purposes = append(purposes, fCC{Coding: []fCoding{{System: sysActReason, Code: "BTG"}}})
	}
	a.PurposeOfEvent = purposes

	if ev.Actor != "" {
		iss, sub, ok := strings.Cut(ev.Actor, "|")
		if !ok {
			iss, sub = "", ev.Actor
		}
		ag := fAgent{
			Type:         &fCC{Coding: []fCoding{{System: sysUserAgent, Code: "UserOauthAgent"}}},
			Who:          &fRef{Identifier: &fIdentifier{System: iss, Value: sub}},
			Requestor:    true,
			PurposeOfUse: purposes,
		}
		if ev.Role != "" {
			ag.Role = []fCC{{Coding: []fCoding{{System: sysRole, Code: ev.Role}}}}
		}
		if ev.TokenID != "" {
			ag.Policy = []string{"urn:ietf:params:oauth:jti:" + ev.TokenID}
		}
		if ev.SourceIP != "" {
			ag.Network = &fNetwork{Address: ev.SourceIP, Type: "2"}
		}
		a.Agent = append(a.Agent, ag)
	}
	if ev.Client != "" {
		ag := fAgent{
			Type:      &fCC{Coding: []fCoding{{System: sysDCM, Code: "110150", Display: "Application"}}},
			Who:       &fRef{Identifier: &fIdentifier{System: sysClientID, Value: ev.Client}},
			Requestor: ev.Actor == "",
		}
		if ev.Actor == "" {
			if ev.TokenID != "" {
				ag.Policy = []string{"urn:ietf:params:oauth:jti:" + ev.TokenID}
			}
			if ev.SourceIP != "" {
				ag.Network = &fNetwork{Address: ev.SourceIP, Type: "2"}
			}
			ag.PurposeOfUse = purposes
		}
		a.Agent = append(a.Agent, ag)
	}
	if ev.Org != "" {
		a.Agent = append(a.Agent, fAgent{
			Type: &fCC{Coding: []fCoding{{System: sysRoleClass, Code: "PROV", Display: "healthcare provider"}}},
			Who:  &fRef{Identifier: &fIdentifier{System: sysMember, Value: ev.Org}},
		})
	}
	a.Agent = append(a.Agent, fAgent{
		Type: &fCC{Coding: []fCoding{{System: sysDCM, Code: "110152", Display: "Destination Role ID"}}},
		Who:  &fRef{Display: "Concord", Identifier: &fIdentifier{System: "urn:ietf:rfc:3986", Value: base}},
	})

	if ev.Patient != "" {
		e := fEntity{
			What: &fRef{Reference: base + "/Patient/" + ev.Patient},
			Type: &fCoding{System: sysEntityType, Code: "1", Display: "Person"},
			Role: &fCoding{System: sysObjectRole, Code: "1", Display: "Patient"},
		}
		if ev.ShareLink {
			e.Detail = append(e.Detail, fDetail{Type: "share-link", ValueString: "true"})
		}
		if ev.BreakGlass {
			e.Detail = append(e.Detail, fDetail{Type: "break-the-glass", ValueString: "true"})
		}
		a.Entity = append(a.Entity, e)
	}
	for _, r := range ev.Resources {
		a.Entity = append(a.Entity, fEntity{
			What: &fRef{Reference: base + "/" + r.Type + "/" + r.ID},
			Type: &fCoding{System: sysEntityType, Code: "2", Display: "System Object"},
			Role: &fCoding{System: sysObjectRole, Code: "4", Display: "Domain Resource"},
		})
	}
	if ev.Query != "" || ev.Action == Query {
		a.Entity = append(a.Entity, fEntity{
			Type:  &fCoding{System: sysEntityType, Code: "2", Display: "System Object"},
			Role:  &fCoding{System: sysObjectRole, Code: "24", Display: "Query"},
			Query: base64.StdEncoding.EncodeToString([]byte(ev.Query)),
		})
	}
	if ev.Consent != "" {
		ref := base + "/Consent/" + ev.Consent
		if ev.ConsentVersion > 0 {
			ref += "/_history/" + strconv.FormatInt(ev.ConsentVersion, 10)
		}
		a.Entity = append(a.Entity, fEntity{
			What:        &fRef{Reference: ref},
			Type:        &fCoding{System: sysEntityType, Code: "2", Display: "System Object"},
			Role:        &fCoding{System: sysObjectRole, Code: "4", Display: "Domain Resource"},
			Description: "deciding consent directive",
		})
	}
	if ev.RequestID != "" {
		a.Entity = append(a.Entity, fEntity{
			What: &fRef{Identifier: &fIdentifier{Value: ev.RequestID}},
			Type: &fCoding{System: sysBALPEntity, Code: "XrequestId", Display: "X-Request-Id"},
		})
	}
	b, err := json.Marshal(a)
	if err != nil {
		// Only strings, bools and slices of typed structs: Marshal cannot fail.
		panic("audit: marshal AuditEvent: " + err.Error())
	}
	return b
}
