package fhir

// ConsentCodes reads, from the JSON of a stored resource, the two things a consent decision
// needs besides its type: the codes of meta.security (its security labels) and its
// category codes. It scans the bytes once and decodes nothing else, because it runs for
// every resource a search or an export may disclose.
//
// category is read in each R4 shape: an array of CodeableConcepts (Observation,
// Condition), a single CodeableConcept (Procedure, MedicationStatement), an array of
// codes (AllergyIntolerance) and one code (MessageDefinition); a CodeableConcept
// contributes the code of each coding.
// Codings without a code contribute nothing. ok is false when data is not a well-formed
// JSON object or one of these elements has another shape: the caller must then not
// disclose the resource, since its labels are unknown. Member names are matched exactly,
// as JSON and FHIR define them; this is safe because Parse, the only way a Resource is
// made, refuses unknown, repeated and case-variant names, so none is stored.
func ConsentCodes(data []byte) (security, categories []string, ok bool) {
	s := scanner{data: data}
	ok = s.members(maxDepth, func(key []byte, depth int) bool {
		switch string(key) {
		case "meta":
			return s.members(depth, func(key []byte, depth int) bool {
				if string(key) != "security" {
					return s.skip(depth)
				}
				return s.items(depth, func(depth int) bool {
					return s.codingCode(depth, &security)
				})
			})
		case "category":
			switch s.peek() {
			case kindObject:
				return s.conceptCodes(depth, &categories)
			case kindString:
				return s.code(&categories)
			}
			return s.items(depth, func(depth int) bool {
				switch s.peek() {
				case kindString:
					return s.code(&categories)
				case kindNull: // a code with only an extension (_category)
					return s.literal("null")
				}
				return s.conceptCodes(depth, &categories)
			})
		}
		return s.skip(depth)
	})
	if s.skipWS(); s.pos != len(data) {
		ok = false
	}
	if !ok {
		return nil, nil, false
	}
	return security, categories, true
}

// members reads the object at the position, calling member for each key with the
// scanner at the key's value; member must consume the value, with at most depth-1
// further levels of nesting.
func (s *scanner) members(depth int, member func(key []byte, depth int) bool) bool {
	if depth <= 0 || !s.consume('{') {
		return false
	}
	if s.consume('}') {
		return true
	}
	for {
		k, ok := s.str()
		if !ok || !s.consume(':') || !member(k, depth-1) {
			return false
		}
		if s.consume('}') {
			return true
		}
		if !s.consume(',') {
			return false
		}
	}
}

// items reads the array at the position, calling item with the scanner at each element.
func (s *scanner) items(depth int, item func(depth int) bool) bool {
	if depth <= 0 || !s.consume('[') {
		return false
	}
	if s.consume(']') {
		return true
	}
	for {
		if !item(depth - 1) {
			return false
		}
		if s.consume(']') {
			return true
		}
		if !s.consume(',') {
			return false
		}
	}
}

// conceptCodes reads a CodeableConcept, appending the code of each of its codings.
func (s *scanner) conceptCodes(depth int, out *[]string) bool {
	return s.members(depth, func(key []byte, depth int) bool {
		if string(key) != "coding" {
			return s.skip(depth)
		}
		return s.items(depth, func(depth int) bool { return s.codingCode(depth, out) })
	})
}

// codingCode reads a Coding, appending its code when it has one.
func (s *scanner) codingCode(depth int, out *[]string) bool {
	return s.members(depth, func(key []byte, depth int) bool {
		if string(key) != "code" {
			return s.skip(depth)
		}
		return s.code(out)
	})
}

// code reads a string, appending it when it is not empty.
func (s *scanner) code(out *[]string) bool {
	c, ok := s.str()
	if ok && len(c) > 0 {
		*out = append(*out, string(c))
	}
	return ok
}
