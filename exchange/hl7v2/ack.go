package hl7v2

import (
	"strings"
	"time"

	"github.com/concord-hie/concord/internal/errs"
)

// AckCode is MSA-1 in original acknowledgment mode.
type AckCode string

// Original-mode acknowledgment codes.
const (
	AA AckCode = "AA" // accepted: the message is committed
	AE AckCode = "AE" // content error: fix, do not resend as is
	AR AckCode = "AR" // rejected: unsupported, or cannot process now; resend later
)

// Ack is a handler's answer to one message. The zero Ack is not valid; use Accept,
// Reject or AckFromError. Text goes to MSA-3 and ERR and must not contain PHI: use fixed
// sentences and locations, never field values.
type Ack struct {
	Code AckCode
	Err  ErrCode // table 0357; NoError with AA
	Loc  string  // location of the error, e.g. "PID-7"; "" when none
	Text string  // safe text for MSA-3
}

// Accept is the AA answer.
func Accept() Ack { return Ack{Code: AA} }

// AckFromError turns an error into the ACK the sender gets: a Problem with a 1xx code →
// AE, with a 2xx code (unsupported type, event, version) → AR; errs.Unavailable →
// AR 207 (resend later); anything else → AR 207. A nil error is AA. The text is the
// error's safe message only.
func AckFromError(err error) Ack {
	if err == nil {
		return Accept()
	}
	if p := ProblemOf(err); p != nil {
		code := AE
		if p.Code >= 200 {
			code = AR
		}
		text := errs.MessageOf(err)
		if text == "" {
			text = p.Code.Text()
		}
		return Ack{Code: code, Err: p.Code, Loc: p.Loc, Text: text}
	}
	switch errs.CodeOf(err) {
	case errs.Invalid:
		return Ack{Code: AE, Err: ApplicationInternal, Text: safeText(errs.MessageOf(err), "Invalid message")}
	case errs.Unavailable:
		return Ack{Code: AR, Err: ApplicationInternal, Text: "Temporarily unable to process; resend later"}
	}
	return Ack{Code: AR, Err: ApplicationInternal, Text: "Application internal error"}
}

func safeText(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Header is what an ACK needs from a message's MSH, kept as raw ER7 so it can be copied
// into the ACK unchanged. Any field may be empty when it could not be read.
type Header struct {
	Delims          Delimiters
	SendingApp      string // MSH-3, raw
	SendingFacility string // MSH-4, raw
	ReceivingApp    string // MSH-5, raw
	ReceivingFac    string // MSH-6, raw
	Type            string // MSH-9, raw
	ControlID       string // MSH-10, decoded
	ProcessingID    string // MSH-11, raw
	Version         string // MSH-12.1, decoded
}

// Header returns the message's header fields.
func (m *Message) Header() Header {
	msh := m.MSH()
	return Header{
		Delims:          m.Delims,
		SendingApp:      msh.Field(3).Raw(),
		SendingFacility: msh.Field(4).Raw(),
		ReceivingApp:    msh.Field(5).Raw(),
		ReceivingFac:    msh.Field(6).Raw(),
		Type:            msh.Field(9).Raw(),
		ControlID:       msh.Field(10).String(),
		ProcessingID:    msh.Field(11).Raw(),
		Version:         msh.Field(12).Comp(1).String(),
	}
}

// ReadHeader reads what it can of the MSH of bytes that may not parse: the first line
// starting with "MSH", with its own delimiters when MSH-2 is sane and the defaults when
// not, in the character set MSH-18 names (UTF-8 when it names none Concord supports).
// The fields are UTF-8: bytes that are not are replaced by U+FFFD. They are otherwise as
// sent, control characters included (BuildACK leaves out what it cannot copy). ok is
// false when no MSH line was found.
func ReadHeader(b []byte) (h Header, ok bool) {
	s := string(b)
	for s != "" {
		i := strings.IndexAny(s, "\r\n")
		line := s
		if i >= 0 {
			line, s = s[:i], s[i+1:]
		} else {
			s = ""
		}
		line = strings.TrimPrefix(line, "\xef\xbb\xbf")
		if !strings.HasPrefix(line, "MSH") {
			continue
		}
		d, err := delimitersOf(line)
		if err != nil {
			d = StandardDelimiters()
			if len(line) > 3 && !isAlnum(line[3]) {
				d.Field = line[3]
			}
		}
		cs, _ := charsetOf(Segment{Name: "MSH", raw: line, d: d}.Field(18).Rep(1).Raw())
		if cs == charsetUTF8 {
			line = strings.ToValidUTF8(line, "\uFFFD")
		}
		m := &Message{Delims: d, Segments: []Segment{{Name: "MSH", raw: line, d: d, cs: cs}}, cs: cs}
		h := m.Header()
		if err != nil {
			h.Delims = StandardDelimiters() // the ACK must be well-formed
			h.SendingApp, h.SendingFacility, h.ReceivingApp, h.ReceivingFac, h.Type, h.ProcessingID = "", "", "", "", "", ""
			h.Version = ""
			h.ControlID = ""
		}
		return h, true
	}
	return Header{}, false
}

// DedupeKey identifies a message for duplicate detection: (MSH-3, MSH-4, MSH-10).
type DedupeKey struct {
	SendingApp      string
	SendingFacility string
	ControlID       string
}

// Key returns the message's dedupe key (MSH-3 and MSH-4 raw, MSH-10 decoded).
func (h Header) Key() DedupeKey {
	return DedupeKey{SendingApp: h.SendingApp, SendingFacility: h.SendingFacility, ControlID: h.ControlID}
}

// KeyOf returns the dedupe key (MSH-3, MSH-4, MSH-10) of m.
func KeyOf(m *Message) DedupeKey { return m.Header().Key() }

// BuildACK builds an original-mode ACK to the message whose header is h: MSH with sender
// and receiver swapped, a new control ID, the same version (2.5.1 when h has none) and
// processing ID; MSA with the code, h's control ID and the safe text; and for an error an
// ERR segment: ERR-1 (segment^seq^field^code&text&HL70357) for 2.3/2.4, ERR-2 location,
// ERR-3 code and ERR-4 severity for 2.5 and later. The result is ER7 with CR terminators.
//
// The ACK always parses (Parse), whatever h holds: a header field that Parse would refuse
// (a control character, raw or escaped as \Xhh\, or text that is not UTF-8) is left empty
// in the ACK rather than copied. Escaping it again would not help: Parse checks the
// decoded text, as any receiver that stores it must. So a message refused for a control
// character in MSH-10 gets an AE with MSA-2 empty, which the sender matches by its place
// on the connection (one ACK per message, in order), and one with a bad MSH-3 still gets
// MSA-2 = its MSH-10. BuildACK strips no character from a field and replaces none: a
// control ID with a character dropped could name another of the sender's messages.
func BuildACK(h Header, a Ack, controlID string, now time.Time) []byte {
	d := h.Delims
	if d.Field == 0 {
		d = StandardDelimiters()
	}
	h = h.readable(d)
	version := h.Version
	if version == "" {
		version = "2.5.1"
	}
	m := NewMessage(d)
	trigger := ""
	if h.Type != "" {
		trigger = Field{s: h.Type, d: d}.Comp(2).Raw()
	}
	v25 := versionAtLeast(version, 2, 5)
	typ := "ACK"
	if trigger != "" || v25 {
		typ += string(d.Component) + trigger
	}
	if v25 {
		typ += string(d.Component) + "ACK"
	}
	proc := h.ProcessingID
	if proc == "" {
		proc = "P"
	}
	m.AddSegment("MSH", h.ReceivingApp, h.ReceivingFac, h.SendingApp, h.SendingFacility,
		now.Format("20060102150405-0700"), "", typ, d.Encode(controlID), proc, d.Encode(version))
	code := a.Code
	if code == "" {
		code = AR
	}
	text := a.Text
	if charsetUTF8.check(text) != "" || (text == "" && code != AA) {
		text = a.Err.Text()
	}
	m.AddSegment("MSA", string(code), d.Encode(h.ControlID), d.Encode(text))
	if code != AA || a.Err != NoError {
		errCode := a.Err
		if errCode == NoError {
			errCode = ApplicationInternal
		}
		seg, seq, field := splitLoc(a.Loc)
		cwe := itoa(int(errCode)) + string(d.Component) + d.Encode(errCode.Text()) + string(d.Component) + "HL70357"
		if v25 {
			erl := ""
			if seg != "" {
				erl = seg + string(d.Component) + seq + string(d.Component) + field
			}
			sev := "E"
			m.AddSegment("ERR", "", erl, cwe, sev)
		} else {
			eld := seg + string(d.Component) + seq + string(d.Component) + field + string(d.Component) +
				itoa(int(errCode)) + string(d.Subcomponent) + d.Encode(errCode.Text()) + string(d.Subcomponent) + "HL70357"
			m.AddSegment("ERR", eld)
		}
	}
	return m.Bytes()
}

// readable returns h with every field that Parse would refuse in an ACK written with the
// delimiters d emptied: a raw field (MSH-3 to MSH-6, MSH-9, MSH-11) whose text, decoded
// at any level, is not UTF-8 or holds a control character other than tab, CR and LF, or
// that holds a raw CR, LF or field separator (which would break the segment); a decoded
// one (MSH-10, MSH-12) that is not UTF-8 or holds such a control character.
func (h Header) readable(d Delimiters) Header {
	raw := func(s string) string {
		if strings.ContainsAny(s, "\r\n"+string(d.Field)) || charsetUTF8.checkField(s, d) != "" {
			return ""
		}
		return s
	}
	text := func(s string) string {
		if charsetUTF8.check(s) != "" {
			return ""
		}
		return s
	}
	h.SendingApp, h.SendingFacility = raw(h.SendingApp), raw(h.SendingFacility)
	h.ReceivingApp, h.ReceivingFac = raw(h.ReceivingApp), raw(h.ReceivingFac)
	h.Type, h.ProcessingID = raw(h.Type), raw(h.ProcessingID)
	h.ControlID, h.Version = text(h.ControlID), text(h.Version)
	return h
}

// splitLoc turns "PID-7", "OBX[3]-2" or "MSH" into segment, sequence and field texts.
func splitLoc(loc string) (seg, seq, field string) {
	l, ok := parseLoc(loc)
	if !ok {
		return "", "", ""
	}
	seq = itoa(l.segIdx)
	if l.field > 0 {
		field = itoa(l.field)
	}
	return l.seg, seq, field
}

// versionAtLeast reports whether a version text such as "2.5.1" is >= major.minor.
func versionAtLeast(v string, major, minor int) bool {
	ma, mi, ok := parseVersion(v)
	if !ok {
		return true
	}
	return ma > major || (ma == major && mi >= minor)
}

// parseVersion reads the major and minor numbers of "2.5.1".
func parseVersion(v string) (major, minor int, ok bool) {
	ma, rest, ok1 := number(v)
	if !ok1 || !strings.HasPrefix(rest, ".") {
		return 0, 0, false
	}
	mi, _, ok2 := number(rest[1:])
	return ma, mi, ok2
}
