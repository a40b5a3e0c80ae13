package exchange

import "github.com/labstack/echo/v4"

// routes is the exchange's one route table.
func (s *Server) routes(e *echo.Echo) {
	e.POST("/token", s.issueToken)

	f := e.Group("/fhir", s.fhirMedia)
	f.GET("/metadata", s.showMetadata)
	f.GET("/.well-known/smart-configuration", s.showSMARTConfiguration)

	a := f.Group("", s.authenticate)
	a.GET("/AuditEvent", s.searchAuditEvents)
	a.POST("/:type", s.createResource)
	a.GET("/:type/:id", s.readResource)
}
