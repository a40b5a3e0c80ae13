package exchange

import (
	"net/http"
	"slices"
	"sort"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/notify"
)

// showSMARTConfiguration serves the SMART discovery document for backend services.
func (s *Server) showSMARTConfiguration(c echo.Context) error {
	return c.JSON(http.StatusOK, struct {
		Issuer               string   `json:"issuer"`
		TokenEndpoint        string   `json:"token_endpoint"`
		AuthMethods          []string `json:"token_endpoint_auth_methods_supported"`
		AuthSigningAlgs      []string `json:"token_endpoint_auth_signing_alg_values_supported"`
		GrantTypes           []string `json:"grant_types_supported"`
		Scopes               []string `json:"scopes_supported"`
		Capabilities         []string `json:"capabilities"`
		CodeChallengeMethods []string `json:"code_challenge_methods_supported"`
	}{
		Issuer:               s.FHIRBase(),
		TokenEndpoint:        s.TokenURL(),
		AuthMethods:          []string{"private_key_jwt"},
		AuthSigningAlgs:      []string{"RS384", "ES384"},
		GrantTypes:           []string{"client_credentials"},
		Scopes:               []string{"system/*.rs", "system/*.cruds", "system/Patient.rs", "system/Observation.rs", "system/BreakGlass.c"},
		Capabilities:         []string{"client-confidential-asymmetric", "permission-v2"},
		CodeChallengeMethods: []string{"S256"},
	})
}

// supportedTypes returns the interactions implemented today, by resource type. Every R4
// type is stored as its member sent it (create, read, vread, update, patch, delete,
// history); a few types have their own rules. The CapabilityStatement lists exactly these, so it
// never promises more than the server does.
func supportedTypes() map[string][]string {
	crud := []string{"create", "read", "vread", "update", "delete", "history-instance"}
	out := map[string][]string{}
	for _, t := range fhir.ResourceTypes() {
		out[t] = crud
	}
	out["AuditEvent"] = []string{"search-type"} // written by Concord only; ITI-81
	out["Binary"] = []string{"create", "read"}  // document bytes in S3, ITI-68
	out["Subscription"] = []string{"create", "read", "delete", "search-type"}
	out["Endpoint"] = []string{"read", "search-type"} // the member directory, read-only (directory_fhir.go)
	delete(out, "Bundle")                             // Bundles are processed (transaction, batch), not stored
	for t, ops := range out {
		// JSON Patch and FHIRPath Patch (patchResource) wherever the generic update stores the type.
		if slices.Contains(ops, "update") && !ownHandlerWrite(t, http.MethodPut) {
			i := slices.Index(ops, "update") + 1
			out[t] = slices.Insert(slices.Clone(ops), i, "patch")
		}
	}
	return out
}

// typeOperations are the operations implemented per resource type (beyond $everything,
// which searchCapability adds with the search capability).
var typeOperations = map[string][]operationCap{
	"Patient": {
		{Name: "match", Definition: "http://hl7.org/fhir/OperationDefinition/Patient-match"},
		{Name: "ihe-pix", Definition: "https://profiles.ihe.net/ITI/PIXm/OperationDefinition/IHE.PIXm.pix"},
		{Name: "consent-preview", Definition: "https://concord.example/fhir/OperationDefinition/consent-preview"},
	},
	"Group": { // Bulk Data over the caller's rosters (bulk.go)
		{Name: "export", Definition: "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"},
	},
	"Subscription": {
		{Name: "status", Definition: "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status"},
		{Name: "events", Definition: "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-events"},
	},
}

// endpointSearchParams are the search parameters of the directory's Endpoints
// (directory.ParseEndpointSearch); results page with _offset.
var endpointSearchParams = []searchParamCap{
	{Name: "_id", Definition: "http://hl7.org/fhir/SearchParameter/Resource-id", Type: "token"},
	{Name: "connection-type", Definition: "http://hl7.org/fhir/SearchParameter/Endpoint-connection-type", Type: "token",
		Documentation: "hl7-fhir-rest (a member's Subscriptions rest-hook origin, the exchange's FHIR base), hl7v2-mllp, direct-project"},
	{Name: "identifier", Definition: "http://hl7.org/fhir/SearchParameter/Endpoint-identifier", Type: "token",
		Documentation: "Directory endpoints carry no identifier today"},
	{Name: "organization", Definition: "http://hl7.org/fhir/SearchParameter/Endpoint-organization", Type: "reference",
		Documentation: "The managing Organization: member-{member id}, or concord for the exchange itself"},
	{Name: "status", Definition: "http://hl7.org/fhir/SearchParameter/Endpoint-status", Type: "token"},
}

// extSubscriptionTopic lists, on the CapabilityStatement's Subscription entry, a topic the
// server supports (Subscriptions R5 Backport IG).
const extSubscriptionTopic = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/capabilitystatement-subscriptiontopic-canonical"

// showMetadata serves the CapabilityStatement. It needs no authentication.
func (s *Server) showMetadata(c echo.Context) error {
	type interaction struct {
		Code string `json:"code"`
	}
	type canonicalExt struct {
		URL            string `json:"url"`
		ValueCanonical string `json:"valueCanonical"`
	}
	type resource struct {
		Extension     []canonicalExt   `json:"extension,omitempty"`
		Type          string           `json:"type"`
		Documentation string           `json:"documentation,omitempty"`
		Interaction   []interaction    `json:"interaction"`
		SearchInclude []string         `json:"searchInclude,omitempty"`
		SearchRevInc  []string         `json:"searchRevInclude,omitempty"`
		SearchParam   []searchParamCap `json:"searchParam,omitempty"`
		Operation     []operationCap   `json:"operation,omitempty"`
		// Conditional interactions on the type's search parameters (store.ParseCondition).
		ConditionalCreate bool   `json:"conditionalCreate,omitempty"`
		ConditionalUpdate bool   `json:"conditionalUpdate,omitempty"`
		ConditionalDelete string `json:"conditionalDelete,omitempty"`
	}
	var rs []resource
	for t, ops := range withSearch(supportedTypes()) {
		r := resource{Type: t}
		sc, doc := directoryCapability(t, searchCapability(t, ops)) // Endpoint and Organization: directory_fhir.go
		r.SearchParam, r.SearchInclude, r.SearchRevInc, r.Operation, r.Documentation = sc.Params, sc.Include, sc.RevInclude, sc.Ops, doc
		r.Operation = append(r.Operation, typeOperations[t]...)
		if store.Matchable(t) && !ownHandlerWrite(t, http.MethodPut) {
			r.ConditionalCreate = slices.Contains(ops, "create")
			r.ConditionalUpdate = slices.Contains(ops, "update")
			if slices.Contains(ops, "delete") {
				r.ConditionalDelete = "single"
			}
		}
		if t == "Subscription" { // the topics a Subscription may name (Subscriptions R5 Backport)
			for _, topic := range notify.Topics() {
				r.Extension = append(r.Extension, canonicalExt{URL: extSubscriptionTopic, ValueCanonical: topic})
			}
		}
		for _, op := range ops {
			r.Interaction = append(r.Interaction, interaction{op})
		}
		rs = append(rs, r)
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].Type < rs[j].Type })
	type coding struct {
		System string `json:"system"`
		Code   string `json:"code"`
	}
	type extension struct {
		URL      string `json:"url"`
		ValueURI string `json:"valueUri"`
	}
	cs := map[string]any{
		"resourceType": "CapabilityStatement",
		"status":       "active",
		"date":         "2026-11-27",
		"kind":         "instance",
		"software":     map[string]string{"name": "Concord"},
		"implementation": map[string]string{
			"description": "Concord regional health information exchange",
			"url":         s.FHIRBase(),
		},
		"instantiates": []string{"http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"},
		"fhirVersion":  "4.0.1",
		"format":       []string{"json"},
		"patchFormat":  []string{fhir.MediaTypeJSONPatch, fhir.MediaTypeFHIRPathPatch},
		"rest": []map[string]any{{
			"mode": "server",
			"documentation": "42 CFR Part 2 records (meta.security 42CFRPart2) are released only under the patient's consent naming the recipient. " +
				"Each one released carries NORDSCLCD in meta.security and the meta extension " + extPart2Disclosure +
				" (notice: the 42 CFR 2.32 text; regulation; basis; summary; consent: Reference to the permitting Consent; consentVersion). " +
				"A search Bundle holding one adds an OperationOutcome entry (search.mode outcome) with the notice; " +
				"Binary content of a Part 2 document answers with the " + headerPart2Notice + " header and Link rel=" + relPart2Notice + " and rel=" + relPart2Consent + ". " +
				"Bulk Data export (Group/[id]/$export over the caller's rosters; _type, _since, _outputFormat) leaves Part 2 records out: " +
				"an NDJSON line cannot carry their notice, so they are disclosed only by read and search.",
			"security": map[string]any{
				"service": []map[string]any{{"coding": []coding{{System: "http://terminology.hl7.org/CodeSystem/restful-security-service", Code: "SMART-on-FHIR"}}}},
				"extension": []map[string]any{{
					"url":       "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
					"extension": []extension{{URL: "token", ValueURI: s.TokenURL()}},
				}},
			},
			"resource":    rs,
			"interaction": []interaction{{"transaction"}, {"batch"}},
			"operation": []operationCap{
				{Name: "break-glass", Definition: "https://concord.example/fhir/OperationDefinition/break-glass"},
			},
		}},
	}
	c.Response().Header().Set("Content-Type", mimeFHIR)
	return c.JSON(http.StatusOK, cs)
}
