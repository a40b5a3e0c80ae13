package documents

// CheckContent is checkContent, for the tests in documents_test.
var CheckContent = checkContent

// FindContainer reports the kind and offset of the first container findContainer finds.
func FindContainer(body []byte) (kind string, at int, found bool) {
	c, ok := findContainer(body)
	return c.Kind, c.At, ok
}

// HasTypeCheck reports whether mt has a built-in signature check.
func HasTypeCheck(mt string) bool {
	_, ok := typeChecks[mt]
	return ok
}
