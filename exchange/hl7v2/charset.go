package hl7v2

import (
	"strings"
	"unicode/utf8"
)

// charset is the character set a message's bytes are in, read from the first repetition
// of MSH-18. The zero value is UTF-8.
type charset uint8

const (
	charsetUTF8   charset = iota // MSH-18 empty, "ASCII" or "UNICODE UTF-8"
	charsetLatin1                // MSH-18 "8859/1": one byte is one rune, U+0000–U+00FF
)

// charsetOf returns the character set MSH-18 names (its first repetition: the further
// ones are alternates for ISO 2022 switching, which Concord does not decode). ok is false
// for any value it does not support (other table 0211 sets, misspellings): the message
// must then be refused, not read as something it may not be.
func charsetOf(msh18 string) (cs charset, ok bool) {
	// Table 0211's names, and the spellings engines send instead of them.
	switch strings.ToUpper(strings.TrimSpace(msh18)) {
	case "", "ASCII", "US-ASCII", "UNICODE UTF-8", "UTF-8", "UTF8", "UNICODE":
		return charsetUTF8, true
	case "8859/1", "ISO-8859-1", "ISO8859-1", "ISO_8859-1", "8859-1", "LATIN1":
		return charsetLatin1, true
	}
	return charsetUTF8, false
}

// text converts s, in charset c, to UTF-8. A UTF-8 s is returned unchanged (invalid bytes
// included: Parse refuses those, so a parsed message never has any).
func (c charset) text(s string) string {
	if c != charsetLatin1 {
		return s
	}
	i := 0
	for i < len(s) && s[i] < utf8.RuneSelf {
		i++
	}
	if i == len(s) {
		return s
	}
	var sb strings.Builder
	sb.Grow(len(s) + len(s)/4)
	sb.WriteString(s[:i])
	for ; i < len(s); i++ {
		sb.WriteRune(rune(s[i]))
	}
	return sb.String()
}

// encode converts UTF-8 v to charset c. ok is false when v is not valid UTF-8 or, for
// ISO 8859-1, holds a rune above U+00FF.
func (c charset) encode(v string) (string, bool) {
	if c != charsetLatin1 {
		return v, utf8.ValidString(v)
	}
	i := 0
	for i < len(v) && v[i] < utf8.RuneSelf {
		i++
	}
	if i == len(v) {
		return v, true
	}
	b := make([]byte, 0, len(v))
	b = append(b, v[:i]...)
	for _, r := range v[i:] {
		if r > 0xFF || r == utf8.RuneError {
			return "", false
		}
		b = append(b, byte(r))
	}
	return string(b), true
}

// Reasons text can be refused; they go to MSA-3 and name no value.
const (
	badCharset         = "Not valid in the message's character set (MSH-18)"
	badControl         = "Control character"
	unsupportedCharset = "Unsupported character set"
)

// check returns "" when s, in charset c, is text Concord can store: valid in c, and no
// control character (C0, DEL, C1) other than tab, CR and LF. Else it returns the reason.
func (c charset) check(s string) string {
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if (b < 0x20 && b != '\t' && b != '\n' && b != '\r') || b == 0x7F {
				return badControl
			}
			i++
			continue
		}
		if c == charsetLatin1 {
			if b < 0xA0 {
				return badControl // C1 controls; usually windows-1252 sent as 8859/1
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			return badCharset
		}
		if r < 0xA0 {
			return badControl
		}
		i += n
	}
	return ""
}

// printable reports whether s is printable ASCII (tab allowed) without the escape
// character: text that every decoding leaves as it is and every check accepts.
func printable(s string, esc byte) bool {
	for i := 0; i < len(s); i++ {
		if b := s[i]; b == esc || b == 0x7F || (b < 0x20 && b != '\t') || b >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// checkText returns errs.Invalid with Problem 102 at the element's segment and field
// (e.g. "PID-5", "OBX[3]-5") for the first element of m whose text, decoded as String
// decodes it at any level (field, repetition, component, subcomponent: escape sequences
// pair up differently at each), is not valid in the message's character set or holds a
// control character other than tab, CR and LF. It returns nil when every element is
// valid, so a value read from m is always text that can be stored.
func (m *Message) checkText(op string) error {
	for i, s := range m.Segments {
		body, first := "", 1 // the text after the segment ID; the number of its first field
		switch {
		case s.Name == "MSH":
			// MSH-1 and MSH-2 are the delimiters, checked by Parse; text starts at MSH-3.
			if k := len("MSH|") + len(s.d.encodingChars()) + 1; k <= len(s.raw) {
				body = s.raw[k:]
			}
			first = 3
		case len(s.raw) > 4:
			body = s.raw[4:]
		}
		if printable(body, s.d.Escape) {
			continue
		}
		for n := first; ; n++ {
			f, rest, more := strings.Cut(body, string(s.d.Field))
			if why := s.cs.checkField(f, s.d); why != "" {
				return problem(op, DataTypeError, segLoc(s.Name, m.occurrence(i), n), why)
			}
			if !more {
				break
			}
			body = rest
		}
	}
	return nil
}

// occurrence returns the 1-based occurrence of segment i among the segments of its name.
func (m *Message) occurrence(i int) int {
	n := 0
	for _, s := range m.Segments[:i+1] {
		if s.Name == m.Segments[i].Name {
			n++
		}
	}
	return n
}

// checkField checks the field text f (raw ER7) at every level; see checkText.
func (c charset) checkField(f string, d Delimiters) string {
	if d.Escape == 0 || strings.IndexByte(f, d.Escape) < 0 {
		return c.check(f) // no escapes: every level decodes to a piece of f itself
	}
	if why := c.check(d.Decode(f)); why != "" {
		return why
	}
	// The repetitions, then the components of every repetition, then the subcomponents
	// of every component: splitting f on all the separators down to a level gives that
	// level's pieces.
	for _, seps := range []string{
		string(d.Repetition),
		string([]byte{d.Repetition, d.Component}),
		string([]byte{d.Repetition, d.Component, d.Subcomponent}),
	} {
		for p := f; ; {
			i := strings.IndexAny(p, seps)
			piece := p
			if i >= 0 {
				piece = p[:i]
			}
			if why := c.check(d.Decode(piece)); why != "" {
				return why
			}
			if i < 0 {
				break
			}
			p = p[i+1:]
		}
	}
	return ""
}
