package mpi

import "strings"

// DoubleMetaphone returns the primary and alternate Double Metaphone codes (at most four
// characters each) of word, written from Lawrence Philips' published description (C/C++
// Users Journal, June 2000). word should be upper-case ASCII letters, as produced by the
// name normalizer; other bytes are skipped. An empty word gives two empty codes.
func DoubleMetaphone(word string) (primary, alternate string) {
	if word == "" {
		return "", ""
	}
	d := dm{s: word + "     ", n: len(word), last: len(word) - 1}
	d.slavo = strings.Contains(word, "W") || strings.Contains(word, "K") ||
		strings.Contains(word, "CZ") || strings.Contains(word, "WITZ")
	d.run()
	p, a := d.pri, d.alt
	if len(p) > 4 {
		p = p[:4]
	}
	if len(a) > 4 {
		a = a[:4]
	}
	return string(p), string(a)
}

type dm struct {
	s        string // word padded with spaces so look-ahead never runs off the end
	n, last  int
	slavo    bool
	pri, alt []byte
}

func (d *dm) at(i int) byte {
	if i < 0 || i >= len(d.s) {
		return 0
	}
	return d.s[i]
}

// is reports whether the substring at start of the given length equals any option.
func (d *dm) is(start, length int, opts ...string) bool {
	if start < 0 || start+length > len(d.s) {
		return false
	}
	sub := d.s[start : start+length]
	for _, o := range opts {
		if sub == o {
			return true
		}
	}
	return false
}

func (d *dm) vowel(i int) bool {
	if i < 0 || i >= d.n {
		return false
	}
	switch d.s[i] {
	case 'A', 'E', 'I', 'O', 'U', 'Y':
		return true
	}
	return false
}

func (d *dm) add(s string) { d.pri = append(d.pri, s...); d.alt = append(d.alt, s...) }
func (d *dm) add2(p, a string) {
	d.pri = append(d.pri, p...)
	d.alt = append(d.alt, a...)
}

func (d *dm) germanic() bool { return d.is(0, 4, "VAN ", "VON ") || d.is(0, 3, "SCH") }

func (d *dm) run() {
	cur := 0
	if d.is(0, 2, "GN", "KN", "PN", "WR", "PS") {
		cur++
	}
	if d.at(0) == 'X' {
		d.add("S")
		cur++
	}
	for (len(d.pri) < 4 || len(d.alt) < 4) && cur < d.n {
		c := d.at(cur)
		switch c {
		case 'A', 'E', 'I', 'O', 'U', 'Y':
			if cur == 0 {
				d.add("A")
			}
			cur++
		case 'B':
			d.add("P")
			if d.at(cur+1) == 'B' {
				cur += 2
			} else {
				cur++
			}
		case 'C':
			cur = d.c(cur)
		case 'D':
			if d.is(cur, 2, "DG") {
				if d.is(cur+2, 1, "I", "E", "Y") {
					d.add("J")
					cur += 3
				} else {
					d.add("TK")
					cur += 2
				}
			} else if d.is(cur, 2, "DT", "DD") {
				d.add("T")
				cur += 2
			} else {
				d.add("T")
				cur++
			}
		case 'F', 'K', 'N', 'Q', 'V':
			if d.at(cur+1) == c {
				cur += 2
			} else {
				cur++
			}
			switch c {
			case 'Q':
				d.add("K")
			case 'V':
				d.add("F")
			default:
				d.add(string(c))
			}
		case 'G':
			cur = d.g(cur)
		case 'H':
			if (cur == 0 || d.vowel(cur-1)) && d.vowel(cur+1) {
				d.add("H")
				cur += 2
			} else {
				cur++
			}
		case 'J':
			cur = d.j(cur)
		case 'L':
			if d.at(cur+1) == 'L' {
				if (cur == d.n-3 && d.is(cur-1, 4, "ILLO", "ILLA", "ALLE")) ||
					((d.is(d.last-1, 2, "AS", "OS") || d.is(d.last, 1, "A", "O")) && d.is(cur-1, 4, "ALLE")) {
					d.add2("L", "")
					cur += 2
					continue
				}
				cur += 2
			} else {
				cur++
			}
			d.add("L")
		case 'M':
			if (d.is(cur-1, 3, "UMB") && (cur+1 == d.last || d.is(cur+2, 2, "ER"))) || d.at(cur+1) == 'M' {
				cur += 2
			} else {
				cur++
			}
			d.add("M")
		case 'P':
			if d.at(cur+1) == 'H' {
				d.add("F")
				cur += 2
				continue
			}
			if d.is(cur+1, 1, "P", "B") {
				cur += 2
			} else {
				cur++
			}
			d.add("P")
		case 'R':
			if cur == d.last && !d.slavo && d.is(cur-2, 2, "IE") && !d.is(cur-4, 2, "ME", "MA") {
				d.add2("", "R")
			} else {
				d.add("R")
			}
			if d.at(cur+1) == 'R' {
				cur += 2
			} else {
				cur++
			}
		case 'S':
			cur = d.sc(cur)
		case 'T':
			switch {
			case d.is(cur, 4, "TION"), d.is(cur, 3, "TIA", "TCH"):
				d.add("X")
				cur += 3
			case d.is(cur, 2, "TH"), d.is(cur, 3, "TTH"):
				if d.is(cur+2, 2, "OM", "AM") || d.germanic() {
					d.add("T")
				} else {
					d.add2("0", "T")
				}
				cur += 2
			default:
				if d.is(cur+1, 1, "T", "D") {
					cur += 2
				} else {
					cur++
				}
				d.add("T")
			}
		case 'W':
			if d.is(cur, 2, "WR") {
				d.add("R")
				cur += 2
				continue
			}
			if cur == 0 && (d.vowel(cur+1) || d.is(cur, 2, "WH")) {
				if d.vowel(cur + 1) {
					d.add2("A", "F")
				} else {
					d.add("A")
				}
			}
			if (cur == d.last && d.vowel(cur-1)) || d.is(cur-1, 5, "EWSKI", "EWSKY", "OWSKI", "OWSKY") || d.is(0, 3, "SCH") {
				d.add2("", "F")
				cur++
				continue
			}
			if d.is(cur, 4, "WICZ", "WITZ") {
				d.add2("TS", "FX")
				cur += 4
				continue
			}
			cur++
		case 'X':
			if !(cur == d.last && (d.is(cur-3, 3, "IAU", "EAU") || d.is(cur-2, 2, "AU", "OU"))) {
				d.add("KS")
			}
			if d.is(cur+1, 1, "C", "X") {
				cur += 2
			} else {
				cur++
			}
		case 'Z':
			if d.at(cur+1) == 'H' {
				d.add("J")
				cur += 2
				continue
			}
			if d.is(cur+1, 2, "ZO", "ZI", "ZA") || (d.slavo && cur > 0 && d.at(cur-1) != 'T') {
				d.add2("S", "TS")
			} else {
				d.add("S")
			}
			if d.at(cur+1) == 'Z' {
				cur += 2
			} else {
				cur++
			}
		default:
			cur++
		}
	}
}

func (d *dm) c(cur int) int {
	if cur > 1 && !d.vowel(cur-2) && d.is(cur-1, 3, "ACH") && d.at(cur+2) != 'I' &&
		(d.at(cur+2) != 'E' || d.is(cur-2, 6, "BACHER", "MACHER")) {
		d.add("K")
		return cur + 2
	}
	if cur == 0 && d.is(cur, 6, "CAESAR") {
		d.add("S")
		return cur + 2
	}
	if d.is(cur, 4, "CHIA") {
		d.add("K")
		return cur + 2
	}
	if d.is(cur, 2, "CH") {
		if cur > 0 && d.is(cur, 4, "CHAE") {
			d.add2("K", "X")
			return cur + 2
		}
		if cur == 0 && (d.is(cur+1, 5, "HARAC", "HARIS") || d.is(cur+1, 3, "HOR", "HYM", "HIA", "HEM")) && !d.is(0, 5, "CHORE") {
			d.add("K")
			return cur + 2
		}
		if d.germanic() || d.is(cur-2, 6, "ORCHES", "ARCHIT", "ORCHID") || d.is(cur+2, 1, "T", "S") ||
			((d.is(cur-1, 1, "A", "O", "U", "E") || cur == 0) && d.is(cur+2, 1, "L", "R", "N", "M", "B", "H", "F", "V", "W", " ")) {
			d.add("K")
		} else if cur > 0 {
			if d.is(0, 2, "MC") {
				d.add("K")
			} else {
				d.add2("X", "K")
			}
		} else {
			d.add("X")
		}
		return cur + 2
	}
	if d.is(cur, 2, "CZ") && !d.is(cur-2, 4, "WICZ") {
		d.add2("S", "X")
		return cur + 2
	}
	if d.is(cur+1, 3, "CIA") {
		d.add("X")
		return cur + 3
	}
	if d.is(cur, 2, "CC") && !(cur == 1 && d.at(0) == 'M') {
		if d.is(cur+2, 1, "I", "E", "H") && !d.is(cur+2, 2, "HU") {
			if (cur == 1 && d.at(cur-1) == 'A') || d.is(cur-1, 5, "UCCEE", "UCCES") {
				d.add("KS")
			} else {
				d.add("X")
			}
			return cur + 3
		}
		d.add("K")
		return cur + 2
	}
	if d.is(cur, 2, "CK", "CG", "CQ") {
		d.add("K")
		return cur + 2
	}
	if d.is(cur, 2, "CI", "CE", "CY") {
		if d.is(cur, 3, "CIO", "CIE", "CIA") {
			d.add2("S", "X")
		} else {
			d.add("S")
		}
		return cur + 2
	}
	d.add("K")
	switch {
	case d.is(cur+1, 2, " C", " Q", " G"):
		return cur + 3
	case d.is(cur+1, 1, "C", "K", "Q") && !d.is(cur+1, 2, "CE", "CI"):
		return cur + 2
	}
	return cur + 1
}

func (d *dm) g(cur int) int {
	if d.at(cur+1) == 'H' {
		if cur > 0 && !d.vowel(cur-1) {
			d.add("K")
			return cur + 2
		}
		if cur == 0 {
			if d.at(cur+2) == 'I' {
				d.add("J")
			} else {
				d.add("K")
			}
			return cur + 2
		}
		if (cur > 1 && d.is(cur-2, 1, "B", "H", "D")) || (cur > 2 && d.is(cur-3, 1, "B", "H", "D")) || (cur > 3 && d.is(cur-4, 1, "B", "H")) {
			return cur + 2
		}
		if cur > 2 && d.at(cur-1) == 'U' && d.is(cur-3, 1, "C", "G", "L", "R", "T") {
			d.add("F")
		} else if cur > 0 && d.at(cur-1) != 'I' {
			d.add("K")
		}
		return cur + 2
	}
	if d.at(cur+1) == 'N' {
		if cur == 1 && d.vowel(0) && !d.slavo {
			d.add2("KN", "N")
		} else if !d.is(cur+2, 2, "EY") && d.at(cur+1) != 'Y' && !d.slavo {
			d.add2("N", "KN")
		} else {
			d.add("KN")
		}
		return cur + 2
	}
	if d.is(cur+1, 2, "LI") && !d.slavo {
		d.add2("KL", "L")
		return cur + 2
	}
	if cur == 0 && (d.at(cur+1) == 'Y' || d.is(cur+1, 2, "ES", "EP", "EB", "EL", "EY", "IB", "IL", "IN", "IE", "EI", "ER")) {
		d.add2("K", "J")
		return cur + 2
	}
	if (d.is(cur+1, 2, "ER") || d.at(cur+1) == 'Y') && !d.is(0, 6, "DANGER", "RANGER", "MANGER") &&
		!d.is(cur-1, 1, "E", "I") && !d.is(cur-1, 3, "RGY", "OGY") {
		d.add2("K", "J")
		return cur + 2
	}
	if d.is(cur+1, 1, "E", "I", "Y") || d.is(cur-1, 4, "AGGI", "OGGI") {
		if d.germanic() || d.is(cur+1, 2, "ET") {
			d.add("K")
		} else if d.is(cur+1, 4, "IER ") {
			d.add("J")
		} else {
			d.add2("J", "K")
		}
		return cur + 2
	}
	d.add("K")
	if d.at(cur+1) == 'G' {
		return cur + 2
	}
	return cur + 1
}

func (d *dm) j(cur int) int {
	if d.is(cur, 4, "JOSE") || d.is(0, 4, "SAN ") {
		if (cur == 0 && d.at(cur+4) == ' ') || d.is(0, 4, "SAN ") {
			d.add("H")
		} else {
			d.add2("J", "H")
		}
		return cur + 1
	}
	if cur == 0 && !d.is(cur, 4, "JOSE") {
		d.add2("J", "A")
	} else if d.vowel(cur-1) && !d.slavo && (d.at(cur+1) == 'A' || d.at(cur+1) == 'O') {
		d.add2("J", "H")
	} else if cur == d.last {
		d.add2("J", "")
	} else if !d.is(cur+1, 1, "L", "T", "K", "S", "N", "M", "B", "Z") && !d.is(cur-1, 1, "S", "K", "L") {
		d.add("J")
	}
	if d.at(cur+1) == 'J' {
		return cur + 2
	}
	return cur + 1
}

func (d *dm) sc(cur int) int {
	if d.is(cur-1, 3, "ISL", "YSL") {
		return cur + 1
	}
	if cur == 0 && d.is(cur, 5, "SUGAR") {
		d.add2("X", "S")
		return cur + 1
	}
	if d.is(cur, 2, "SH") {
		if d.is(cur+1, 4, "HEIM", "HOEK", "HOLM", "HOLZ") {
			d.add("S")
		} else {
			d.add("X")
		}
		return cur + 2
	}
	if d.is(cur, 3, "SIO", "SIA") || d.is(cur, 4, "SIAN") {
		if !d.slavo {
			d.add2("S", "X")
		} else {
			d.add("S")
		}
		return cur + 3
	}
	if (cur == 0 && d.is(cur+1, 1, "M", "N", "L", "W")) || d.is(cur+1, 1, "Z") {
		d.add2("S", "X")
		if d.is(cur+1, 1, "Z") {
			return cur + 2
		}
		return cur + 1
	}
	if d.is(cur, 2, "SC") {
		if d.at(cur+2) == 'H' {
			if d.is(cur+3, 2, "OO", "ER", "EN", "UY", "ED", "EM") {
				if d.is(cur+3, 2, "ER", "EN") {
					d.add2("X", "SK")
				} else {
					d.add("SK")
				}
				return cur + 3
			}
			if cur == 0 && !d.vowel(3) && d.at(3) != 'W' {
				d.add2("X", "S")
			} else {
				d.add("X")
			}
			return cur + 3
		}
		if d.is(cur+2, 1, "I", "E", "Y") {
			d.add("S")
			return cur + 3
		}
		d.add("SK")
		return cur + 3
	}
	if cur == d.last && d.is(cur-2, 2, "AI", "OI") {
		d.add2("", "S")
	} else {
		d.add("S")
	}
	if d.is(cur+1, 1, "S", "Z") {
		return cur + 2
	}
	return cur + 1
}

// NYSIIS returns the New York State Identification and Intelligence System code of an
// upper-case ASCII word, after Taft (1970), truncated to six characters. Non-letters are
// ignored; an empty word gives "".
func NYSIIS(word string) string {
	var b [64]byte
	w := b[:0]
	for i := 0; i < len(word) && len(w) < len(b); i++ {
		if c := word[i]; c >= 'A' && c <= 'Z' {
			w = append(w, c)
		}
	}
	if len(w) == 0 {
		return ""
	}
	s := string(w)
	switch {
	case strings.HasPrefix(s, "MAC"):
		s = "MCC" + s[3:]
	case strings.HasPrefix(s, "KN"):
		s = "NN" + s[2:]
	case strings.HasPrefix(s, "K"):
		s = "C" + s[1:]
	case strings.HasPrefix(s, "PH"), strings.HasPrefix(s, "PF"):
		s = "FF" + s[2:]
	case strings.HasPrefix(s, "SCH"):
		s = "SSS" + s[3:]
	}
	switch {
	case strings.HasSuffix(s, "EE"), strings.HasSuffix(s, "IE"):
		s = s[:len(s)-2] + "Y"
	case strings.HasSuffix(s, "DT"), strings.HasSuffix(s, "RT"), strings.HasSuffix(s, "RD"),
		strings.HasSuffix(s, "NT"), strings.HasSuffix(s, "ND"):
		s = s[:len(s)-2] + "D"
	}
	isV := func(c byte) bool { return c == 'A' || c == 'E' || c == 'I' || c == 'O' || c == 'U' }
	r := []byte(s)
	key := []byte{r[0]}
	for i := 1; i < len(r); i++ {
		var t []byte
		c := r[i]
		switch {
		case c == 'E' && i+1 < len(r) && r[i+1] == 'V':
			t = []byte("AF")
			r[i], r[i+1] = 'A', 'F'
			i++
		case isV(c):
			t = []byte("A")
			r[i] = 'A'
		case c == 'Q':
			t = []byte("G")
		case c == 'Z':
			t = []byte("S")
		case c == 'M':
			t = []byte("N")
		case c == 'K' && i+1 < len(r) && r[i+1] == 'N':
			t = []byte("N")
		case c == 'K':
			t = []byte("C")
		case c == 'S' && i+2 < len(r) && r[i+1] == 'C' && r[i+2] == 'H':
			t = []byte("SSS")
			i += 2
		case c == 'P' && i+1 < len(r) && r[i+1] == 'H':
			t = []byte("FF")
			i++
		case c == 'H' && (!isV(r[i-1]) || (i+1 < len(r) && !isV(r[i+1])) || i+1 == len(r)):
			t = []byte{r[i-1]}
		case c == 'W' && isV(r[i-1]):
			t = []byte{r[i-1]}
		default:
			t = []byte{c}
		}
		for _, x := range t {
			if key[len(key)-1] != x {
				key = append(key, x)
			}
		}
	}
	if len(key) > 1 && key[len(key)-1] == 'S' {
		key = key[:len(key)-1]
	}
	if len(key) > 2 && key[len(key)-2] == 'A' && key[len(key)-1] == 'Y' {
		key = append(key[:len(key)-2], 'Y')
	}
	if len(key) > 1 && key[len(key)-1] == 'A' {
		key = key[:len(key)-1]
	}
	if len(key) > 6 {
		key = key[:6]
	}
	return string(key)
}
