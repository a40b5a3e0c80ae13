package store

// BuildSelect exposes buildSelect to the package's external tests.
var BuildSelect = buildSelect
