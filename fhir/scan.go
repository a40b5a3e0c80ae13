package fhir

import (
	"unicode/utf16"
	"unicode/utf8"
)

// scanner is a strict RFC 8259 JSON tokenizer over a byte slice. It never builds a tree:
// the validator in parse.go drives it member by member.
type scanner struct {
	data []byte
	pos  int
	// buf holds the unescaped text of the last string that contained escapes.
	buf []byte
	// escaped reports whether the last string read had escapes (its bytes are in buf).
	escaped bool
}

// jsonKind is the kind of the JSON value that starts at the scanner's position.
type jsonKind uint8

const (
	kindInvalid jsonKind = iota
	kindObject
	kindArray
	kindString
	kindNumber
	kindBool
	kindNull
)

func (k jsonKind) String() string {
	return [...]string{"invalid", "object", "array", "string", "number", "boolean", "null"}[k]
}

func (s *scanner) skipWS() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// peek skips whitespace and reports the kind of the next value.
func (s *scanner) peek() jsonKind {
	s.skipWS()
	if s.pos >= len(s.data) {
		return kindInvalid
	}
	switch c := s.data[s.pos]; {
	case c == '{':
		return kindObject
	case c == '[':
		return kindArray
	case c == '"':
		return kindString
	case c == '-' || c >= '0' && c <= '9':
		return kindNumber
	case c == 't' || c == 'f':
		return kindBool
	case c == 'n':
		return kindNull
	}
	return kindInvalid
}

// consume skips whitespace and consumes c, reporting whether it was there.
func (s *scanner) consume(c byte) bool {
	s.skipWS()
	if s.pos < len(s.data) && s.data[s.pos] == c {
		s.pos++
		return true
	}
	return false
}

// str reads a string at the position (after whitespace). The result aliases the input or
// s.buf and is valid until the next call to str.
func (s *scanner) str() ([]byte, bool) {
	s.skipWS()
	if s.pos >= len(s.data) || s.data[s.pos] != '"' {
		return nil, false
	}
	start := s.pos + 1
	i := start
	ascii := true
	s.escaped = false
	for i < len(s.data) {
		c := s.data[i]
		switch {
		case c == '"':
			s.pos = i + 1
			v := s.data[start:i]
			if !ascii && !utf8.Valid(v) {
				return nil, false
			}
			return v, true
		case c == '\\':
			return s.strEscaped(start)
		case c < 0x20:
			return nil, false
		case c >= 0x80:
			ascii = false
		}
		i++
	}
	return nil, false
}

func (s *scanner) strEscaped(start int) ([]byte, bool) {
	s.escaped = true
	b := s.buf[:0]
	i := start
	for i < len(s.data) {
		c := s.data[i]
		switch {
		case c == '"':
			s.pos = i + 1
			s.buf = b
			if !utf8.Valid(b) {
				return nil, false
			}
			return b, true
		case c < 0x20:
			return nil, false
		case c != '\\':
			b = append(b, c)
			i++
			continue
		}
		if i+1 >= len(s.data) {
			return nil, false
		}
		switch s.data[i+1] {
		case '"', '\\', '/':
			b = append(b, s.data[i+1])
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r, ok := hex4(s.data, i+2)
			if !ok {
				return nil, false
			}
			i += 6
			if utf16.IsSurrogate(r) {
				r2, ok2 := rune(-1), false
				if i+1 < len(s.data) && s.data[i] == '\\' && s.data[i+1] == 'u' {
					r2, ok2 = hex4(s.data, i+2)
				}
				if dec := utf16.DecodeRune(r, r2); ok2 && dec != utf8.RuneError {
					r = dec
					i += 6
				} else {
					return nil, false // lone surrogate: not a Unicode scalar value
				}
			}
			b = utf8.AppendRune(b, r)
			continue
		default:
			return nil, false
		}
		i += 2
	}
	return nil, false
}

func hex4(d []byte, i int) (rune, bool) {
	if i+4 > len(d) {
		return 0, false
	}
	var r rune
	for _, c := range d[i : i+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	return r, true
}

// number reads a JSON number and reports whether it has a fraction or exponent.
func (s *scanner) number() (num []byte, integral bool, ok bool) {
	s.skipWS()
	d, i := s.data, s.pos
	start := i
	if i < len(d) && d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && d[i] >= '1' && d[i] <= '9':
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	default:
		return nil, false, false
	}
	integral = true
	if i < len(d) && d[i] == '.' {
		integral = false
		i++
		j := i
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
		if i == j {
			return nil, false, false
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		integral = false
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		j := i
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
		if i == j {
			return nil, false, false
		}
	}
	s.pos = i
	return d[start:i], integral, true
}

// literal reads true, false or null.
func (s *scanner) literal(lit string) bool {
	s.skipWS()
	if len(s.data)-s.pos >= len(lit) && string(s.data[s.pos:s.pos+len(lit)]) == lit {
		s.pos += len(lit)
		return true
	}
	return false
}

// boolean reads true or false.
func (s *scanner) boolean() (bool, bool) {
	if s.literal("true") {
		return true, true
	}
	return false, s.literal("false")
}

// skip reads any JSON value without interpreting it, up to depth levels of nesting.
// Duplicate keys are not checked here; callers that keep the value validate it elsewhere.
func (s *scanner) skip(depth int) bool {
	if depth <= 0 {
		return false
	}
	switch s.peek() {
	case kindObject:
		s.pos++
		if s.consume('}') {
			return true
		}
		for {
			if _, ok := s.str(); !ok || !s.consume(':') || !s.skip(depth-1) {
				return false
			}
			if s.consume('}') {
				return true
			}
			if !s.consume(',') {
				return false
			}
		}
	case kindArray:
		s.pos++
		if s.consume(']') {
			return true
		}
		for {
			if !s.skip(depth - 1) {
				return false
			}
			if s.consume(']') {
				return true
			}
			if !s.consume(',') {
				return false
			}
		}
	case kindString:
		_, ok := s.str()
		return ok
	case kindNumber:
		_, _, ok := s.number()
		return ok
	case kindBool:
		_, ok := s.boolean()
		return ok
	case kindNull:
		return s.literal("null")
	}
	return false
}
