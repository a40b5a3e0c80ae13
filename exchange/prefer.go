package exchange

import (
	"iter"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
)

// preferences yields the preferences of the Prefer header values (RFC 7240) in order, each
// without spaces and without its parameters (after ';').
func preferences(values []string) iter.Seq[string] {
	return func(yield func(string) bool) {
		for _, v := range values {
			for _, p := range strings.Split(v, ",") {
				p, _, _ = strings.Cut(p, ";")
				if p = strings.ReplaceAll(strings.TrimSpace(p), " ", ""); p != "" && !yield(p) {
					return
				}
			}
		}
	}
}

// preferHas reports whether the Prefer header values hold preference pref
// ("respond-async", "handling=lenient", "presigned-url"), compared without case
// (preferences).
func preferHas(values []string, pref string) bool {
	for p := range preferences(values) {
		if strings.EqualFold(p, pref) {
			return true
		}
	}
	return false
}

// returnPref is what the answer to a write carries (Prefer: return=..., FHIR R4
// http.html#ops and, for Bundles, http.html#transaction-response).
type returnPref int

const (
	returnDefault        returnPref = iota // none stated: the interaction's default
	returnRepresentation                   // the resource as stored
	returnMinimal                          // nothing but the status and headers
	returnOutcome                          // an OperationOutcome saying what was done
)

// preferReturn returns the return preference in the Prefer header values: the first
// return=... token decides (RFC 7240 §2: only the first instance of a preference counts),
// its value compared without case, spaces or parameters after ';'. None, or a value FHIR
// does not define (minimal, representation, OperationOutcome), is returnDefault.
func preferReturn(values []string) returnPref {
	for p := range preferences(values) {
		name, val, ok := strings.Cut(p, "=")
		if !ok || !strings.EqualFold(name, "return") {
			continue
		}
		switch strings.ToLower(strings.Trim(val, `"`)) {
		case "minimal":
			return returnMinimal
		case "operationoutcome":
			return returnOutcome
		case "representation":
			return returnRepresentation
		}
		return returnDefault
	}
	return returnDefault
}

// writeReply answers a write (create, update, patch and their conditional forms) that
// stored or found st: status, the version headers of st (setVersionHeaders: Location, ETag,
// Last-Modified), and as the request's Prefer asks, st's body (return=representation, and
// the default), no body (return=minimal) or an OperationOutcome of severity information
// whose diagnostics is what (return=OperationOutcome; wrote says it). A preference that
// changed the answer is named in Preference-Applied (RFC 7240 §3).
func writeReply(c echo.Context, base string, status int, st store.Stored, what string) error {
	setVersionHeaders(c, base, st)
	switch preferReturn(c.Request().Header.Values("Prefer")) {
	case returnMinimal:
		c.Response().Header().Set("Preference-Applied", "return=minimal")
		return c.NoContent(status)
	case returnOutcome:
		c.Response().Header().Set("Preference-Applied", "return=OperationOutcome")
		return c.Blob(status, mimeFHIR, writeOutcome(what))
	}
	return c.Blob(status, mimeFHIR, st.Body)
}

// writeOutcome is the OperationOutcome a write answers with under return=OperationOutcome:
// one issue of severity information saying what was done (wrote), IDs only.
func writeOutcome(what string) []byte {
	return fhir.OperationOutcome(fhir.Issue{Severity: fhir.SeverityInformation, Code: fhir.IssueInformational, Diagnostics: what})
}

// wrote says in a few words, naming IDs only, what a write that answered status with st
// did: "Created Observation/1 version 1" (201), "Updated ..." (a new version), "Unchanged
// ..." (store.Stored.Unchanged: the content was the current version's, nothing stored), or,
// when matched, that st matched a conditional create and nothing was created.
func wrote(status int, st store.Stored, matched bool) string {
	ref := st.Type + "/" + st.ID + " version " + itoa(st.Version)
	switch {
	case matched:
		return "Found " + ref + ": it matches the condition, so nothing was created"
	case status == http.StatusCreated:
		return "Created " + ref
	case st.Unchanged:
		return "Unchanged " + ref + ": the content is the current version's, so no new version was stored"
	}
	return "Updated " + ref
}

// replayed is the remembered reply to an earlier create with the same Idempotency-Key as
// the version it answered with (Type, ID and Version from its Location, LastUpdated from
// the body's meta.lastUpdated), so a retry gets the version headers and honours its own
// Prefer as the first request did. ok is false for a reply that does not read so.
func (r idempotentReply) replayed(base string) (st store.Stored, ok bool) {
	rest, ok := strings.CutPrefix(r.location, base+"/")
	if !ok {
		return store.Stored{}, false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 4 || parts[2] != "_history" {
		return store.Stored{}, false
	}
	v, err := strconv.Atoi(parts[3])
	if err != nil {
		return store.Stored{}, false
	}
	res, err := fhir.Parse(r.body)
	if err != nil {
		return store.Stored{}, false
	}
	at, err := time.Parse(time.RFC3339Nano, res.Meta.LastUpdated)
	if err != nil {
		return store.Stored{}, false
	}
	return store.Stored{Type: parts[0], ID: parts[1], Version: v, LastUpdated: at, Body: r.body}, true
}
