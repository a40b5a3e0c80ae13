package exchange

import "github.com/labstack/echo/v4"

// noStore marks every response of a route Cache-Control: no-store before the handler
// runs, so no FHIR answer (a 201 create body, a roster, a Subscription, an error) can be
// kept by a shared cache, whether or not its handler remembers to say so.
func noStore(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		c.Response().Header().Set("Cache-Control", "no-store")
		return next(c)
	}
}

// routes is the exchange's one route table.
func (s *Server) routes(e *echo.Echo) {
	e.POST("/token", s.issueToken)

	f := e.Group("/fhir", s.fhirMedia, noStore)
	f.GET("/metadata", s.showMetadata)
	f.GET("/.well-known/smart-configuration", s.showSMARTConfiguration)

	if s.Documents != nil { // ITI-68: bytes in the document's own type, outside the JSON-only group
		e.GET("/fhir/Binary/:id", s.readBinary, s.authenticate)
		// A trailing :id matches the rest of the path, so history would reach readBinary
		// with the id "x/_history": answer it here.
		e.GET("/fhir/Binary/:id/_history", historyNotServed, s.authenticate)
		e.GET("/fhir/Binary/:id/_history/:vid", historyNotServed, s.authenticate)
	}

	if s.Notify != nil { // Bulk Data files: NDJSON, outside the JSON-only group
		e.GET("/fhir/$export-file/:job/:type", s.exportFile, noStore, s.authenticate)
	}

	// PATCH takes a JSON Patch (application/json-patch+json) or a FHIRPath Patch (a Parameters
	// resource in application/fhir+json), checked by patchMedia outside the JSON-only group.
	e.PATCH("/fhir/:type/:id", s.patchResource, s.patchMedia, noStore, s.authenticate)
	e.PATCH("/fhir/:type", s.conditionalPatch, s.patchMedia, noStore, s.authenticate)

	a := f.Group("", s.authenticate)
	a.GET("/AuditEvent", s.searchAuditEvents)
	if s.Notify != nil { // notifications out (notify): rosters and Backport Subscriptions
		a.POST("/Group", s.createRoster)
		a.PUT("/Group/:id", s.updateRoster)
		a.GET("/Group/:id/$export", s.exportGroup) // Bulk Data over the member's rosters
		a.GET("/$export-status/:job", s.exportStatus)
		a.DELETE("/$export-status/:job", s.cancelExport)
		a.POST("/Subscription", s.createSubscription)
		a.GET("/Subscription", s.searchSubscriptions)
		a.GET("/Subscription/:id", s.readSubscription)
		a.DELETE("/Subscription/:id", s.deleteSubscription)
		a.GET("/Subscription/:id/$status", s.subscriptionStatus)
		a.GET("/Subscription/:id/$events", s.subscriptionEvents)
	}
	// Endpoint is the directory's, read-only (directory_fhir.go; reads and searches are
	// SearchAPI's): a member's write is refused.
	a.POST("/Endpoint", s.refuseEndpointWrite)
	a.PUT("/Endpoint", s.refuseEndpointWrite)
	a.DELETE("/Endpoint", s.refuseEndpointWrite)
	a.PUT("/Endpoint/:id", s.refuseEndpointWrite)
	a.DELETE("/Endpoint/:id", s.refuseEndpointWrite)
	a.POST("/Patient/$match", s.matchPatients) // PDQm ITI-119
	a.GET("/Patient/$ihe-pix", s.pixQuery)     // PIXm ITI-83
	a.POST("", s.processBundle)
	a.POST("/", s.processBundle)
	a.POST("/:type", s.createResource)
	a.PUT("/:type", s.conditionalUpdate)
	a.DELETE("/:type", s.conditionalDelete)
	a.PUT("/:type/:id", s.updateResource)
	a.DELETE("/:type/:id", s.deleteResource)
	a.GET("/:type/:id/_history", s.historyResource)
	a.GET("/:type/:id/_history/:vid", s.vreadResource)
	a.GET("/:type/:id", s.readResource)
}
