package hl7v2

import (
	"strings"
)

// Decode decodes the escape sequences of an ER7 text: \F\ \S\ \T\ \R\ \E\ \P\ become the
// delimiters they name, \Xhh..\ the bytes it spells (in the message's character set),
// \.br\ and \.sp\ a line feed. Sequences that carry no text are dropped: highlighting
// (\H\ \N\), the formatting commands of FT (\.fi\ \.nf\ \.ce\ \.in±n\ \.ti±n\ \.sk+n\)
// and character-set switches, only in their exact forms \Cxxyy\ and \Mxxyyzz\ (4 and 6
// hex digits). Anything else between two escape characters is kept literally, escape
// characters included: locally defined \Z..\ sequences, which Concord cannot interpret,
// and text such as a Windows path or "\Ceftriaxone\". A lone or unterminated escape
// character is kept as is. Inner delimiters are not touched.
func (d Delimiters) Decode(s string) string {
	if d.Escape == 0 || strings.IndexByte(s, d.Escape) < 0 {
		return s
	}
	var sb strings.Builder
	sb.Grow(len(s))
	for i := 0; i < len(s); {
		c := s[i]
		if c != d.Escape {
			sb.WriteByte(c)
			i++
			continue
		}
		j := strings.IndexByte(s[i+1:], d.Escape)
		if j < 0 {
			sb.WriteString(s[i:])
			break
		}
		seq := s[i+1 : i+1+j]
		next := i + j + 2
		switch {
		case seq == "F":
			sb.WriteByte(d.Field)
		case seq == "S":
			sb.WriteByte(d.Component)
		case seq == "T":
			sb.WriteByte(d.Subcomponent)
		case seq == "R":
			sb.WriteByte(d.Repetition)
		case seq == "E":
			sb.WriteByte(d.Escape)
		case seq == "P" && d.Truncation != 0:
			sb.WriteByte(d.Truncation)
		case seq == ".br" || (strings.HasPrefix(seq, ".sp") && isCount(seq[3:], false)):
			sb.WriteByte('\n')
		case seq == "H" || seq == "N" || seq == ".fi" || seq == ".nf" || seq == ".ce" ||
			((strings.HasPrefix(seq, ".in") || strings.HasPrefix(seq, ".ti")) && isCount(seq[3:], true)) ||
			(strings.HasPrefix(seq, ".sk") && isCount(seq[3:], false)) ||
			(len(seq) == 5 && seq[0] == 'C' && isHex(seq[1:])) ||
			(len(seq) == 7 && seq[0] == 'M' && isHex(seq[1:])):
			// highlighting, formatting or character-set switch: no text
		case len(seq) > 1 && seq[0] == 'X' && len(seq)%2 == 1 && isHex(seq[1:]):
			for k := 1; k+1 < len(seq); k += 2 {
				sb.WriteByte(unhex(seq[k])<<4 | unhex(seq[k+1]))
			}
		default:
			// Not an escape sequence we know: keep the text literally.
			sb.WriteString(s[i:next])
		}
		i = next
	}
	return sb.String()
}

// Encode encodes a value for ER7: delimiters become \F\ \S\ \T\ \R\ \E\ (\P\), CR and LF
// become \X0D\ and \X0A\. Decode(Encode(v)) == v for every v.
func (d Delimiters) Encode(v string) string {
	need := false
	for i := 0; i < len(v); i++ {
		if d.isSpecial(v[i]) || v[i] == '\r' || v[i] == '\n' {
			need = true
			break
		}
	}
	if !need {
		return v
	}
	var sb strings.Builder
	sb.Grow(len(v) + 8)
	e := d.Escape
	put := func(code string) {
		sb.WriteByte(e)
		sb.WriteString(code)
		sb.WriteByte(e)
	}
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == d.Field:
			put("F")
		case c == d.Component:
			put("S")
		case c == d.Subcomponent:
			put("T")
		case c == d.Repetition:
			put("R")
		case c == d.Escape:
			put("E")
		case d.Truncation != 0 && c == d.Truncation:
			put("P")
		case c == '\r':
			put("X0D")
		case c == '\n':
			put("X0A")
		default:
			sb.WriteByte(c)
		}
	}
	return sb.String()
}

// isCount reports whether s is an FT formatting count: "", or digits after an optional
// '+' (or '-' when signed).
func isCount(s string, signed bool) bool {
	if s == "" {
		return true
	}
	if s[0] == '+' || (signed && s[0] == '-') {
		s = s[1:]
	}
	return isDigits(s)
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')) {
			return false
		}
	}
	return true
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
