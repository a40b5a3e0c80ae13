package exchange

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/internal/errs"
)

// ownHandlerWrite reports whether writing typ with method belongs to a handler of its
// own rather than the generic create, update and delete paths (and bundle entries):
//
//   - Consent: the consent API (POST/PUT /fhir/Consent), which stores a directive the
//     enforcement point reads; stored as an ordinary resource it would silently not be in
//     force.
//   - AuditEvent: written only by the audit log; a member must not forge events.
//   - Subscription and Group: the notify handlers (POST/DELETE /Subscription, POST/PUT
//     /Group), which keep the subscription and roster tables. A roster Group is removed
//     by the generic DELETE (the roster follows the stored Group), so that one stays.
//   - Binary: created only through Ingest's documents intake (POST); an update or
//     delete would bypass the document service's own records.
//   - Endpoint: the member directory's, registered by the operator (concord member
//     endpoint) and served read-only (refuseEndpointWrite); a create or update would store
//     an Endpoint no directory search lists. DELETE stays for an Endpoint a member stored
//     before the directory view (a stored id); one of a directory id is refused by
//     refuseEndpointWrite and refuseEntry.
func ownHandlerWrite(typ, method string) bool {
	switch typ {
	case "Consent", "AuditEvent", "Subscription":
		return true
	case "Group":
		return method != http.MethodDelete
	case "Binary":
		return method != http.MethodPost
	case "Endpoint":
		return method == http.MethodPost || method == http.MethodPut
	}
	return false
}

// refuseGeneric answers a generic REST write of a type that has its own handler: 405.
func refuseGeneric(c echo.Context, typ string) error {
	method := c.Request().Method
	if !ownHandlerWrite(typ, method) {
		return nil
	}
	return echo.NewHTTPError(http.StatusMethodNotAllowed, typ+" is not written through the generic "+method)
}

// admitGenericWrite admits a generic REST write (interaction 'c', 'u' or 'd') of typ: an
// unknown type is errs.NotFound with the message unknown (under op), a type written only
// by its own handler is 405 (see refuseGeneric), and a token without the scope for the
// interaction is refused by require.
func admitGenericWrite(c echo.Context, op, typ string, interaction byte, unknown string) error {
	if !fhir.IsResourceType(typ) {
		return errs.E(op, errs.NotFound, unknown)
	}
	if err := refuseGeneric(c, typ); err != nil {
		return err
	}
	return require(c, typ, interaction)
}

// historyNotServed answers history and vread of a type whose versions are not served
// over FHIR REST (Consent, and Binary when the document service keeps the bytes): 405.
func historyNotServed(echo.Context) error {
	return echo.NewHTTPError(http.StatusMethodNotAllowed, "history is not served for this resource type")
}

// directoryEndpointDelete reports whether a DELETE of typ/id names a directory Endpoint
// (any id a member cannot have stored), which is refused like any other Endpoint write;
// an Endpoint a member stored before the directory view (a stored id) may be deleted.
func directoryEndpointDelete(typ, method, id string) bool {
	return typ == "Endpoint" && method == http.MethodDelete && !storedID(id)
}

// refuseEntry is refuseGeneric for a bundle entry of typ/id (id "" for a create):
// errs.Invalid (400 in the entry). Like the REST DELETE (refuseEndpointWrite), a DELETE
// of an Endpoint that no member can have stored (a directory id) is refused too.
func refuseEntry(typ, method, id string) error {
	if !ownHandlerWrite(typ, method) && !directoryEndpointDelete(typ, method, id) {
		return nil
	}
	return errs.E("exchange.plan", errs.Invalid, typ+" cannot be written in a Bundle; use its own endpoint")
}
