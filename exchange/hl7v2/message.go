// Package hl7v2 is Concord's HL7 v2 transport: an ER7 parser and writer, MLLP framing, a
// TCP/TLS listener that answers every message with exactly one ACK, the ACK builder, and
// the mapping of ADT, ORU and MDM messages to FHIR R4 resources. It stores nothing: the
// exchange implements Handler, commits, and only then returns AA.
//
// Parsing is cheap: a Message keeps each segment as one string and fields, repetitions,
// components and subcomponents are sliced out of it on access, without building a tree.
package hl7v2

import (
	"bytes"
	"crypto/sha256"
	"iter"
	"strings"
)

// Delimiters are the encoding characters of a message, read from MSH-1 and MSH-2.
// Truncation is 0 when MSH-2 does not declare one (versions before 2.7).
type Delimiters struct {
	Field, Component, Repetition, Escape, Subcomponent, Truncation byte
}

// StandardDelimiters returns `|^~\&`, the delimiters nearly every sender uses.
func StandardDelimiters() Delimiters {
	return Delimiters{Field: '|', Component: '^', Repetition: '~', Escape: '\\', Subcomponent: '&'}
}

// encodingChars renders MSH-2.
func (d Delimiters) encodingChars() string {
	b := []byte{d.Component, d.Repetition, d.Escape, d.Subcomponent}
	if d.Truncation != 0 {
		b = append(b, d.Truncation)
	}
	return string(b)
}

// isSpecial reports whether c is one of the delimiters (or the truncation char).
func (d Delimiters) isSpecial(c byte) bool {
	return c == d.Field || c == d.Component || c == d.Repetition || c == d.Escape ||
		c == d.Subcomponent || (d.Truncation != 0 && c == d.Truncation)
}

// Message is a parsed ER7 message. The zero Message is empty; build one with NewMessage
// and AddSegment, or with Parse.
//
// A parsed message keeps its bytes in the character set its MSH-18 declares (Bytes writes
// them back unchanged); every accessor that returns text (Field.String, Field.Raw,
// Segment.Raw, Get, Header) returns UTF-8. A message built with NewMessage is UTF-8 and
// its MSH-18, if set, is not interpreted.
type Message struct {
	Delims   Delimiters
	Segments []Segment
	cs       charset
}

// Segment is one segment: its three-character name and its raw ER7 text (escaped, without
// the segment terminator). It is a small value; copying it is cheap.
type Segment struct {
	Name string
	raw  string
	d    Delimiters
	cs   charset
}

// Raw returns the segment's ER7 text without its terminator, in UTF-8.
func (s Segment) Raw() string { return s.cs.text(s.raw) }

// NewMessage returns an empty message using d.
func NewMessage(d Delimiters) *Message { return &Message{Delims: d} }

const maxSegments = 100000

// Parse parses an ER7 message. Segments may end in CR, LF or CRLF; a UTF-8 BOM, trailing
// whitespace and empty lines are ignored. The first segment must be MSH with a valid
// MSH-1 and MSH-2 (else errs.Invalid with Problem 100 or 102 at MSH-1/MSH-2: delimiters
// are distinct printable ASCII, not letters or digits); every line must start with a
// three-character segment ID (else Problem 100 at the line's position); MSH-9 and MSH-10
// must be present (else 101). Batch headers (FHS, BHS) before the MSH are skipped, as are
// FTS/BTS trailers.
//
// The text must be readable: MSH-18 (its first repetition) must be empty, "ASCII" or
// "UNICODE UTF-8" (read as UTF-8) or "8859/1" (ISO 8859-1), else Problem 102 at MSH-18;
// and every element, decoded with its escape sequences, must be valid in that character
// set and free of control characters other than tab, CR and LF, else Problem 102 at the
// element's segment and field (e.g. "PID-5", "OBX[2]-5"). Nothing is guessed or replaced.
// Field contents are not otherwise validated here; the mapping does that. The returned
// Message does not retain b.
func Parse(b []byte) (*Message, error) {
	const op = "hl7v2.Parse"
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	s := string(b) // one copy; every segment is a substring of it
	// Skip leading whitespace and batch headers.
	var lines []string
	for len(s) > 0 {
		i := strings.IndexAny(s, "\r\n")
		var line string
		if i < 0 {
			line, s = s, ""
		} else {
			line, s = s[:i], s[i+1:]
		}
		line = strings.TrimRight(line, " \t")
		if strings.TrimSpace(line) == "" {
			continue
		}
		if len(lines) > maxSegments {
			return nil, problem(op, SegmentSequenceError, "", "too many segments")
		}
		lines = append(lines, line)
	}
	for len(lines) > 0 && (strings.HasPrefix(lines[0], "FHS") || strings.HasPrefix(lines[0], "BHS")) {
		lines = lines[1:]
	}
	for len(lines) > 0 {
		last := lines[len(lines)-1]
		if strings.HasPrefix(last, "FTS") || strings.HasPrefix(last, "BTS") {
			lines = lines[:len(lines)-1]
			continue
		}
		break
	}
	if len(lines) == 0 {
		return nil, problem(op, SegmentSequenceError, "MSH", "no segments")
	}
	msh := lines[0]
	if !strings.HasPrefix(msh, "MSH") {
		return nil, problem(op, SegmentSequenceError, "MSH", "first segment is not MSH")
	}
	d, err := delimitersOf(msh)
	if err != nil {
		return nil, err
	}
	m := &Message{Delims: d, Segments: make([]Segment, 0, len(lines))}
	cs, csOK := charsetOf(Segment{Name: "MSH", raw: msh, d: d}.Field(18).Rep(1).Raw())
	m.cs = cs
	for i, line := range lines {
		name, ok := segmentName(line, d.Field)
		if !ok {
			return nil, problem(op, SegmentSequenceError, "segment "+itoa(i+1), "invalid segment ID")
		}
		if name == "MSH" && i > 0 {
			return nil, problem(op, SegmentSequenceError, "segment "+itoa(i+1), "more than one MSH")
		}
		m.Segments = append(m.Segments, Segment{Name: name, raw: line, d: d, cs: cs})
	}
	h := m.Segments[0]
	if h.Field(9).Empty() {
		return nil, problem(op, RequiredFieldMissing, "MSH-9", "")
	}
	if h.Field(10).Empty() {
		return nil, problem(op, RequiredFieldMissing, "MSH-10", "")
	}
	if !csOK {
		return nil, problem(op, DataTypeError, "MSH-18", unsupportedCharset)
	}
	if err := m.checkText(op); err != nil {
		return nil, err
	}
	return m, nil
}

// delimitersOf reads MSH-1 and MSH-2 from the MSH line.
func delimitersOf(msh string) (Delimiters, error) {
	const op = "hl7v2.Parse"
	if len(msh) < 8 {
		return Delimiters{}, problem(op, RequiredFieldMissing, "MSH-2", "")
	}
	d := Delimiters{Field: msh[3]}
	enc := msh[4:]
	if i := strings.IndexByte(enc, d.Field); i >= 0 {
		enc = enc[:i]
	} else {
		return Delimiters{}, problem(op, RequiredFieldMissing, "MSH-2", "")
	}
	if len(enc) == 0 {
		return Delimiters{}, problem(op, RequiredFieldMissing, "MSH-2", "")
	}
	if len(enc) < 4 || len(enc) > 5 {
		return Delimiters{}, problem(op, DataTypeError, "MSH-2", "")
	}
	d.Component, d.Repetition, d.Escape, d.Subcomponent = enc[0], enc[1], enc[2], enc[3]
	if len(enc) == 5 {
		d.Truncation = enc[4]
	}
	// The bytes of MSH-1 and MSH-2 as sent: a NUL among them is refused like any other
	// control byte, not taken for an absent truncation character.
	seen := map[byte]bool{}
	for _, c := range append([]byte{d.Field}, enc...) {
		if seen[c] || c <= ' ' || c > '~' || isAlnum(c) {
			return Delimiters{}, problem(op, DataTypeError, "MSH-2", "")
		}
		seen[c] = true
	}
	return d, nil
}

func isAlnum(c byte) bool {
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
}

// segmentName returns the three-character segment ID ([A-Z][A-Z0-9]{2}) of line.
func segmentName(line string, fs byte) (string, bool) {
	if len(line) < 3 || (len(line) > 3 && line[3] != fs) {
		return "", false
	}
	if line[0] < 'A' || line[0] > 'Z' {
		return "", false
	}
	for i := 1; i < 3; i++ {
		c := line[i]
		if !((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
			return "", false
		}
	}
	return line[:3], true
}

// Bytes writes the message as ER7 with each segment terminated by CR. A parsed message is
// written exactly as read (apart from segment terminators, BOM and blank lines).
func (m *Message) Bytes() []byte {
	n := 0
	for _, s := range m.Segments {
		n += len(s.raw) + 1
	}
	b := make([]byte, 0, n)
	for _, s := range m.Segments {
		b = append(b, s.raw...)
		b = append(b, '\r')
	}
	return b
}

// Digest is the SHA-256 of the message's content: its segments as Bytes writes them, but
// with MSH-7 (the time of the message) left out and trailing empty fields, repetitions,
// components and subcomponents dropped, which HL7 v2 reads as absent. It is what a resend
// of the same message shares with the first send even when the sending engine stamps it
// again or writes it out anew. Two messages with the same digest carry the same content.
func (m *Message) Digest() [32]byte {
	d := m.Delims
	trailing := string([]byte{d.Component, d.Repetition, d.Subcomponent})
	h := sha256.New()
	for i, s := range m.Segments {
		fs := strings.Split(s.raw, string(d.Field))
		msh := i == 0 && s.Name == "MSH"
		for j := range fs {
			switch {
			case msh && j == 1:
				// MSH-2, the encoding characters, is text, not delimited content.
			case msh && j == 6:
				fs[j] = "" // MSH-1 is the separator itself, so MSH-7 is field 6 of the split line
			default:
				fs[j] = strings.TrimRight(fs[j], trailing)
			}
		}
		for len(fs) > 1 && fs[len(fs)-1] == "" {
			fs = fs[:len(fs)-1]
		}
		h.Write([]byte(strings.Join(fs, string(d.Field))))
		h.Write([]byte{'\r'})
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// Segment returns the first segment named name.
func (m *Message) Segment(name string) (Segment, bool) {
	for _, s := range m.Segments {
		if s.Name == name {
			return s, true
		}
	}
	return Segment{}, false
}

// MSH returns the header segment; the zero Segment if the message has none.
func (m *Message) MSH() Segment {
	if len(m.Segments) > 0 && m.Segments[0].Name == "MSH" {
		return m.Segments[0]
	}
	return Segment{}
}

// AddSegment appends a segment built from already-encoded ER7 field texts (fields[0] is
// field 1; for MSH, pass fields starting at MSH-3: MSH-1 and MSH-2 come from m.Delims).
// Use Delimiters.Encode to encode values, or Set after adding.
func (m *Message) AddSegment(name string, fields ...string) {
	var sb strings.Builder
	sb.WriteString(name)
	if name == "MSH" {
		sb.WriteByte(m.Delims.Field)
		sb.WriteString(m.Delims.encodingChars())
	}
	for _, f := range fields {
		sb.WriteByte(m.Delims.Field)
		sb.WriteString(f)
	}
	m.Segments = append(m.Segments, Segment{Name: name, raw: sb.String(), d: m.Delims, cs: m.cs})
}

// Field returns field n (1-based) of the segment; field 0 is the segment name. For MSH,
// field 1 is the field separator and field 2 the encoding characters, both literal.
// A field past the end is empty.
func (s Segment) Field(n int) Field {
	if s.raw == "" || n < 0 {
		return Field{}
	}
	if n == 0 {
		return Field{s: s.Name, lit: true}
	}
	if s.Name == "MSH" {
		switch n {
		case 1:
			return Field{s: string(s.d.Field), lit: true}
		case 2:
			return Field{s: s.d.encodingChars(), lit: true}
		}
		n-- // MSH-3 is the third piece after splitting on the field separator
	}
	return Field{s: piece(s.raw, s.d.Field, n), d: s.d, cs: s.cs}
}

// NumFields returns the number of fields (the highest field number present).
func (s Segment) NumFields() int {
	if s.raw == "" {
		return 0
	}
	n := strings.Count(s.raw, string(s.d.Field))
	if s.Name == "MSH" {
		n++
	}
	return n
}

// piece returns the i-th (0-based) piece of s split on sep, or "" if there is none.
func piece(s string, sep byte, i int) string {
	for ; i > 0; i-- {
		j := strings.IndexByte(s, sep)
		if j < 0 {
			return ""
		}
		s = s[j+1:]
	}
	if j := strings.IndexByte(s, sep); j >= 0 {
		return s[:j]
	}
	return s
}

// Field is a field, repetition, component or subcomponent: a slice of the raw ER7 text.
// Its methods descend one level at a time; every index is 1-based and out of range gives
// an empty Field. Nothing is allocated until String decodes escape sequences.
type Field struct {
	s   string
	d   Delimiters
	cs  charset
	lvl uint8 // 0 field, 1 repetition, 2 component, 3 subcomponent
	lit bool  // MSH-1, MSH-2: not split, not unescaped
}

// Rep returns repetition i of a field (the first is 1).
func (f Field) Rep(i int) Field {
	if f.lit || f.lvl > 0 {
		if i == 1 {
			return f
		}
		return Field{}
	}
	if i < 1 {
		return Field{}
	}
	return Field{s: piece(f.s, f.d.Repetition, i-1), d: f.d, cs: f.cs, lvl: 1}
}

// Reps returns the number of repetitions (0 for an empty field).
func (f Field) Reps() int {
	if f.s == "" {
		return 0
	}
	if f.lit || f.lvl > 0 {
		return 1
	}
	return strings.Count(f.s, string(f.d.Repetition)) + 1
}

// All yields the repetitions of a field in order, each scanned once: use it rather than
// Rep(i) in a loop, which rescans and is quadratic in the number of repetitions.
func (f Field) All() iter.Seq[Field] {
	return func(yield func(Field) bool) {
		if f.s == "" {
			return
		}
		if f.lit || f.lvl > 0 {
			yield(f)
			return
		}
		s := f.s
		for {
			i := strings.IndexByte(s, f.d.Repetition)
			if i < 0 {
				yield(Field{s: s, d: f.d, cs: f.cs, lvl: 1})
				return
			}
			if !yield(Field{s: s[:i], d: f.d, cs: f.cs, lvl: 1}) {
				return
			}
			s = s[i+1:]
		}
	}
}

// Comp returns component j (of the first repetition when called on a field).
func (f Field) Comp(j int) Field {
	if f.lit || f.lvl >= 2 {
		if j == 1 {
			return f
		}
		return Field{}
	}
	if f.lvl == 0 {
		f = f.Rep(1)
	}
	if j < 1 {
		return Field{}
	}
	return Field{s: piece(f.s, f.d.Component, j-1), d: f.d, cs: f.cs, lvl: 2}
}

// Sub returns subcomponent k (of the first component when called on a field or repetition).
func (f Field) Sub(k int) Field {
	if f.lit || f.lvl >= 3 {
		if k == 1 {
			return f
		}
		return Field{}
	}
	if f.lvl < 2 {
		f = f.Comp(1)
	}
	if k < 1 {
		return Field{}
	}
	return Field{s: piece(f.s, f.d.Subcomponent, k-1), d: f.d, cs: f.cs, lvl: 3}
}

// Raw returns the ER7 text in UTF-8, escape sequences and inner delimiters included.
func (f Field) Raw() string { return f.cs.text(f.s) }

// Empty reports whether the element is absent or empty. The HL7 null `""` is not empty.
func (f Field) Empty() bool { return f.s == "" }

// IsNull reports whether the element is the explicit HL7 null `""`.
func (f Field) IsNull() bool { return f.s == `""` }

// String returns the decoded value in UTF-8: escape sequences are replaced by the
// characters they stand for (\Xhh\ bytes are in the message's character set, like the
// rest of its text). Called on a field or component that has inner delimiters, those are
// kept. The explicit null `""` is returned as is; see IsNull.
func (f Field) String() string {
	if f.lit {
		return f.s
	}
	return f.cs.text(f.d.Decode(f.s))
}

// Value returns the element's data: String, except that the explicit HL7 null `""` gives
// "", as an absent element does. Use it wherever a value is read as data (the mapping
// reads every value through it), so `""` is never taken for a name, code or identifier;
// where the difference matters (`""` asks the receiver to delete a stored value, empty
// leaves it as it is), test IsNull first.
func (f Field) Value() string {
	if f.IsNull() {
		return ""
	}
	return f.String()
}

// Get returns the decoded value at a location such as "PID-3", "PID-3[2].4.2", "OBX[2]-5"
// or "MSH-9.2". A segment index in brackets picks the n-th segment of that name (1-based,
// default 1); a field index picks the repetition (default 1); then component and
// subcomponent. A location that does not exist gives "".
func (m *Message) Get(loc string) string {
	f, ok := m.lookup(loc)
	if !ok {
		return ""
	}
	return f.String()
}

// lookup resolves a location to its Field.
func (m *Message) lookup(loc string) (Field, bool) {
	l, ok := parseLoc(loc)
	if !ok {
		return Field{}, false
	}
	seg, ok := m.nthSegment(l.seg, l.segIdx)
	if !ok {
		return Field{}, false
	}
	f := seg.Field(l.field)
	if l.rep > 0 {
		f = f.Rep(l.rep)
	}
	if l.comp > 0 {
		f = f.Comp(l.comp)
	}
	if l.sub > 0 {
		f = f.Sub(l.sub)
	}
	return f, true
}

func (m *Message) nthSegment(name string, n int) (Segment, bool) {
	for _, s := range m.Segments {
		if s.Name == name {
			n--
			if n == 0 {
				return s, true
			}
		}
	}
	return Segment{}, false
}

type location struct {
	seg                           string
	segIdx, field, rep, comp, sub int
}

// parseLoc parses "SEG[n]-F[r].C.S"; missing parts are 0 (segIdx defaults to 1).
func parseLoc(s string) (location, bool) {
	var l location
	if len(s) < 3 {
		return l, false
	}
	l.seg, s = s[:3], s[3:]
	l.segIdx = 1
	var ok bool
	if strings.HasPrefix(s, "[") {
		if l.segIdx, s, ok = bracket(s); !ok {
			return l, false
		}
	}
	if s == "" {
		return l, true
	}
	if s[0] != '-' {
		return l, false
	}
	if l.field, s, ok = number(s[1:]); !ok {
		return l, false
	}
	if strings.HasPrefix(s, "[") {
		if l.rep, s, ok = bracket(s); !ok {
			return l, false
		}
	}
	if strings.HasPrefix(s, ".") {
		if l.comp, s, ok = number(s[1:]); !ok {
			return l, false
		}
	}
	if strings.HasPrefix(s, ".") {
		if l.sub, s, ok = number(s[1:]); !ok {
			return l, false
		}
	}
	return l, s == ""
}

func bracket(s string) (int, string, bool) {
	n, rest, ok := number(s[1:])
	if !ok || !strings.HasPrefix(rest, "]") || n < 1 {
		return 0, s, false
	}
	return n, rest[1:], true
}

func number(s string) (int, string, bool) {
	n, i := 0, 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' && i < 6 {
		n = n*10 + int(s[i]-'0')
		i++
	}
	return n, s[i:], i > 0
}

// Set stores value (encoded with escape sequences, in the message's character set) at
// loc, adding empty fields, repetitions and components as needed. The segment must exist;
// MSH-1 and MSH-2 cannot be set. It returns errs.Invalid for a bad or unsettable location,
// and with Problem 102 for a value that is not valid UTF-8 or, in an ISO 8859-1 message,
// has a character that set lacks.
func (m *Message) Set(loc, value string) error {
	const op = "hl7v2.Message.Set"
	l, ok := parseLoc(loc)
	if !ok || l.field < 1 || (l.seg == "MSH" && l.field < 3) {
		return problem(op, ApplicationInternal, loc, "bad location")
	}
	n := l.segIdx
	for i := range m.Segments {
		s := &m.Segments[i]
		if s.Name != l.seg {
			continue
		}
		if n--; n > 0 {
			continue
		}
		d := s.d
		fi := l.field
		if s.Name == "MSH" {
			fi--
		}
		field := piece(s.raw, d.Field, fi)
		enc, ok := s.cs.encode(value)
		if !ok {
			return problem(op, DataTypeError, loc, badCharset)
		}
		v := d.Encode(enc)
		if l.sub > 0 {
			rep := piece(field, d.Repetition, max(l.rep, 1)-1)
			c := piece(rep, d.Component, max(l.comp, 1)-1)
			v = setPiece(rep, d.Component, max(l.comp, 1)-1, setPiece(c, d.Subcomponent, l.sub-1, v))
			v = setPiece(field, d.Repetition, max(l.rep, 1)-1, v)
		} else if l.comp > 0 {
			rep := piece(field, d.Repetition, max(l.rep, 1)-1)
			v = setPiece(field, d.Repetition, max(l.rep, 1)-1, setPiece(rep, d.Component, l.comp-1, v))
		} else if l.rep > 0 {
			v = setPiece(field, d.Repetition, l.rep-1, v)
		}
		s.raw = setPiece(s.raw, d.Field, fi, v)
		return nil
	}
	return problem(op, ApplicationInternal, loc, "no such segment")
}

// setPiece replaces the i-th piece of s (split on sep), appending separators as needed.
func setPiece(s string, sep byte, i int, v string) string {
	var sb strings.Builder
	rest := s
	for k := 0; k < i; k++ {
		j := strings.IndexByte(rest, sep)
		if j < 0 {
			sb.WriteString(rest)
			for ; k < i; k++ {
				sb.WriteByte(sep)
			}
			sb.WriteString(v)
			return sb.String()
		}
		sb.WriteString(rest[:j+1])
		rest = rest[j+1:]
	}
	sb.WriteString(v)
	if j := strings.IndexByte(rest, sep); j >= 0 {
		sb.WriteString(rest[j:])
	}
	return sb.String()
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	neg := n < 0
	if neg {
		n = -n
	}
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}
