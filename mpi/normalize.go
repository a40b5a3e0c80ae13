package mpi

import (
	"bufio"
	_ "embed"
	"io"
	"slices"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"

	"github.com/concord-hie/concord/internal/errs"
)

// Identifier is an identifier issued by an assigning authority: a member's MRN, a payer ID.
// The same (System, Value) seen again is an update of one source record, not a match.
type Identifier struct {
	System string // assigning authority (a FHIR identifier system URI or OID)
	Value  string
}

// SSNSystem is the FHIR identifier system of US Social Security numbers.
const SSNSystem = "http://hl7.org/fhir/sid/us-ssn"

// Input is one source registration as a member sent it. Every field may be empty.
type Input struct {
	Source      Identifier   // the member's record: assigning authority + MRN
	Given       []string     // given names in order (first, then middle names)
	Family      string       // surname, possibly compound ("Garcia-Lopez")
	Suffix      string       // "Jr", "III", ...; also recognised inside Given/Family
	Sex         string       // "male", "female", "M", "F", "other", "unknown"
	BirthDate   string       // "YYYY-MM-DD" or "YYYYMMDD"
	SSN         string       // 9 digits (punctuation ignored) or only the last 4
	Phone       string       // any US format
	Lines       []string     // street address lines
	City        string       // city or suburb
	State       string       // state code
	PostalCode  string       // ZIP or ZIP+4
	Identifiers []Identifier // other identifiers (not the Source, not the SSN)
}

// Sex is an administrative sex code: 0 (unknown), 'M', 'F' or 'O'.
type Sex byte

// Generation is a name suffix moved out of the name: 0 none, 1 JR, 2 SR, 3 II, 4 III, 5 IV.
type Generation uint8

// Flags mark values that must not drive an automatic link.
type Flags uint16

const (
	FlagPlaceholderName Flags = 1 << iota // BABY BOY, UNKNOWN, JOHN DOE, TRAUMA ...
	FlagPlaceholderDOB                    // 1900-01-01 and similar
	FlagInvalidDOB                        // not a calendar date
	FlagInvalidSSN                        // SSN present but impossible; dropped
	FlagInvalidPhone                      // phone present but not a US number; dropped
	FlagKnownGiven                        // the given name is in the nickname list (so not a typo)
)

// Record is a normalized registration with every matching feature computed once. Strings
// are upper-case ASCII. The zero value is a record with every field missing.
type Record struct {
	Source Identifier
	Given  string // first given name
	Middle string // further given names, space-separated
	Family string // surname tokens joined without spaces ("GARCIALOPEZ")
	// FamilyParts holds the tokens of a compound surname (nil when there is one token).
	FamilyParts []string
	Generation  Generation
	// GivenGroups are the nickname groups of Given (sorted IDs); two given names sharing a
	// group are nickname-equivalent.
	GivenGroups []uint32
	// GivenHead is the group Given heads as a formal name (0 if none).
	GivenHead uint32
	GivenDM   [2]string // Double Metaphone primary, alternate
	FamilyDM  [2]string
	GivenNY   string // NYSIIS
	FamilyNY  string
	NameKey   string // all name tokens sorted, for swapped names

	DOB     string // "YYYYMMDD" when 8 digits were given (even if not a valid date)
	Year    int16
	Month   uint8
	Day     uint8
	Sex     Sex
	SSN     string // 9 digits when valid (any length under Normalizer.LenientSSN)
	SSNLast string // last 4 digits
	Phone   string // E.164
	House   string
	Street  string
	Unit    string
	City    string
	State   string
	ZIP     string // ZIP5 (or the leading digits of a shorter postcode)
	AddrKey string // HOUSE|STREET|ZIP, empty unless all three are present
	IDs     []Identifier
	Flags   Flags

	// Term-frequency weights filled by Model.Prepare (log2 of the value's frequency,
	// negative); 0 means unknown and disables the adjustment.
	tfGiven, tfFamily, tfZIP, tfPhone float32
}

// Nicknames maps a name to the canonical names it may stand for. Build it with
// ParseNicknames or DefaultNicknames; it is read-only afterwards and safe to share.
type Nicknames struct {
	groups map[string][]uint32
	formal map[string]bool // true: heads a group and is nobody's nickname
	head   map[string]uint32
}

//go:embed nicknames/names.csv
var nicknamesCSV string

// DefaultNicknames returns the nickname list embedded in the package (carltonnorthern/
// nicknames, Apache-2.0).
func DefaultNicknames() *Nicknames {
	n, err := ParseNicknames(strings.NewReader(nicknamesCSV))
	if err != nil {
		panic("mpi: embedded nickname list: " + err.Error()) // the file is part of the build
	}
	return n
}

// ParseNicknames reads a CSV of `name1,relationship,name2` rows (a header row is skipped,
// CRLF accepted). Each name1 defines a group holding itself and its nicknames. It returns
// errs.Invalid when a row does not have three fields.
func ParseNicknames(r io.Reader) (*Nicknames, error) {
	n := &Nicknames{groups: map[string][]uint32{}, formal: map[string]bool{}, head: map[string]uint32{}}
	ids := map[string]uint32{}
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		t := strings.TrimSpace(sc.Text())
		if t == "" || (line == 1 && strings.HasPrefix(t, "name1")) {
			continue
		}
		f := strings.Split(t, ",")
		if len(f) != 3 {
			return nil, errs.E("mpi.ParseNicknames", errs.Invalid, "nickname list: a row does not have 3 fields")
		}
		canon, nick := foldWord(f[0]), foldWord(f[2])
		if canon == "" || nick == "" {
			continue
		}
		if _, seen := n.formal[canon]; !seen {
			n.formal[canon] = true
		}
		n.formal[nick] = false // a nickname of something is not a formal name
		id, ok := ids[canon]
		if !ok {
			id = uint32(len(ids) + 1)
			ids[canon] = id
			n.head[canon] = id
		}
		for _, w := range []string{canon, nick} {
			g := n.groups[w]
			if !slices.Contains(g, id) {
				g = append(g, id)
				slices.Sort(g)
				n.groups[w] = g
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, errs.E("mpi.ParseNicknames", errs.Invalid, "nickname list unreadable", err)
	}
	return n, nil
}

// Groups returns the sorted group IDs of an upper-case name, or nil.
func (n *Nicknames) Groups(name string) []uint32 {
	if n == nil {
		return nil
	}
	return n.groups[name]
}

func foldWord(s string) string {
	t := tokens(s)
	return strings.Join(t, "")
}

// Normalizer turns Inputs into Records. It is immutable after construction and safe for
// concurrent use.
type Normalizer struct {
	nick *Nicknames
	// LenientSSN accepts any 5–11 digit national identifier without the US validity
	// rules (for test data such as FEBRL, whose "SSN" has 7 digits).
	LenientSSN bool
}

// NewNormalizer returns a Normalizer using the given nickname list (nil disables
// nickname equivalence).
func NewNormalizer(nick *Nicknames) *Normalizer { return &Normalizer{nick: nick} }

// tokens folds s (NFKD, marks dropped, upper-case) and splits it into ASCII letter/digit
// tokens. Apostrophes and periods join ("O'Brien" → OBRIEN); other punctuation splits.
func tokens(s string) []string {
	var out []string
	var cur []byte
	flush := func() {
		if len(cur) > 0 {
			out = append(out, string(cur))
			cur = cur[:0]
		}
	}
	for _, r := range norm.NFKD.String(s) {
		switch {
		case unicode.Is(unicode.Mn, r):
		case r == '\'' || r == '’' || r == '.':
		case r < 128 && (unicode.IsLetter(r) || unicode.IsDigit(r)):
			cur = append(cur, byte(unicode.ToUpper(r)))
		case r == 'ß':
			cur = append(cur, 'S', 'S')
		case r == 'Ø' || r == 'ø':
			cur = append(cur, 'O')
		case r == 'Æ' || r == 'æ':
			cur = append(cur, 'A', 'E')
		case r == 'Ł' || r == 'ł':
			cur = append(cur, 'L')
		default:
			flush()
		}
	}
	flush()
	return out
}

var generations = map[string]Generation{"JR": 1, "JNR": 1, "JUNIOR": 1, "SR": 2, "SNR": 2, "SENIOR": 2,
	"II": 3, "2ND": 3, "III": 4, "3RD": 4, "IV": 5, "4TH": 5}

var honorifics = map[string]bool{"MR": true, "MRS": true, "MS": true, "MISS": true, "DR": true, "PROF": true}

// Normalize computes a Record from in. It never fails: unusable values are dropped and
// flagged.
func (n *Normalizer) Normalize(in Input) Record {
	r := Record{Source: in.Source}
	var gen Generation
	strip := func(ts []string) []string {
		out := ts[:0]
		for _, t := range ts {
			if g, ok := generations[t]; ok {
				gen = g
				continue
			}
			if honorifics[t] {
				continue
			}
			out = append(out, t)
		}
		return out
	}
	var given []string
	for _, g := range in.Given {
		given = append(given, tokens(g)...)
	}
	given = strip(given)
	fam := strip(tokens(in.Family))
	if g, ok := generations[foldWord(in.Suffix)]; ok {
		gen = g
	}
	r.Generation = gen
	if len(given) > 0 {
		r.Given = given[0]
		r.Middle = strings.Join(given[1:], " ")
	}
	r.Family = strings.Join(fam, "")
	if len(fam) > 1 {
		r.FamilyParts = fam
	}
	if placeholderName(given, fam) {
		r.Flags |= FlagPlaceholderName
	}
	r.GivenGroups = n.nick.Groups(r.Given)
	if n.nick != nil {
		r.GivenHead = n.nick.head[r.Given]
	}
	if n.nick != nil {
		if _, ok := n.nick.formal[r.Given]; ok {
			r.Flags |= FlagKnownGiven
		}
	}
	r.GivenDM[0], r.GivenDM[1] = DoubleMetaphone(r.Given)
	r.FamilyDM[0], r.FamilyDM[1] = DoubleMetaphone(r.Family)
	r.GivenNY, r.FamilyNY = NYSIIS(r.Given), NYSIIS(r.Family)
	if r.Given != "" || r.Family != "" {
		all := append(append([]string{}, given...), fam...)
		slices.Sort(all)
		r.NameKey = strings.Join(all, " ")
	}

	n.dob(&r, in.BirthDate)
	switch strings.ToUpper(strings.TrimSpace(in.Sex)) {
	case "M", "MALE":
		r.Sex = 'M'
	case "F", "FEMALE":
		r.Sex = 'F'
	case "O", "OTHER":
		r.Sex = 'O'
	}
	n.ssn(&r, in.SSN)
	if in.Phone != "" {
		if p, ok := PhoneE164(in.Phone); ok {
			r.Phone = p
		} else {
			r.Flags |= FlagInvalidPhone
		}
	}
	addr := ParseAddress(in.Lines)
	r.House, r.Street, r.Unit = addr.House, addr.Street, addr.Unit
	r.City = strings.Join(tokens(in.City), " ")
	r.State = strings.Join(tokens(in.State), "")
	r.ZIP = zip5(in.PostalCode)
	if r.House != "" && r.Street != "" && r.ZIP != "" {
		r.AddrKey = r.House + "|" + r.Street + "|" + r.ZIP
	}
	for _, id := range in.Identifiers {
		s, v := strings.TrimSpace(id.System), strings.TrimSpace(id.Value)
		if v == "" {
			continue
		}
		r.IDs = append(r.IDs, Identifier{System: s, Value: v})
	}
	return r
}

func placeholderName(given, fam []string) bool {
	all := append(append([]string{}, given...), fam...)
	if len(all) == 0 {
		return false
	}
	for _, t := range all {
		switch t {
		case "UNKNOWN", "UNK", "NONAME", "TRAUMA", "BABYBOY", "BABYGIRL", "UNIDENTIFIED":
			return true
		}
	}
	g := ""
	if len(given) > 0 {
		g = given[0]
	}
	f := strings.Join(fam, "")
	if (g == "JOHN" || g == "JANE") && f == "DOE" {
		return true
	}
	if g == "BABY" || f == "BABY" || (len(given) > 1 && given[0] == "BABY") {
		return true
	}
	if (g == "BOY" || g == "GIRL") && len(given) == 1 {
		return true
	}
	return false
}

func digits(s string) string {
	var b [32]byte
	d := b[:0]
	for i := 0; i < len(s) && len(d) < len(b); i++ {
		if s[i] >= '0' && s[i] <= '9' {
			d = append(d, s[i])
		}
	}
	return string(d)
}

func (n *Normalizer) dob(r *Record, s string) {
	d := digits(s)
	if d == "" {
		return
	}
	if len(d) != 8 {
		r.Flags |= FlagInvalidDOB
		return
	}
	r.DOB = d
	y := atoi(d[:4])
	m := atoi(d[4:6])
	dd := atoi(d[6:8])
	r.Year, r.Month, r.Day = int16(y), uint8(m), uint8(dd)
	if !validDate(y, m, dd) {
		r.Flags |= FlagInvalidDOB
	}
	if y < 1880 || (m == 1 && dd == 1 && (y == 1900 || y == 1901 || y == 1800)) || y == 9999 {
		r.Flags |= FlagPlaceholderDOB
	}
}

func atoi(s string) int {
	v := 0
	for i := 0; i < len(s); i++ {
		v = v*10 + int(s[i]-'0')
	}
	return v
}

func validDate(y, m, d int) bool {
	if m < 1 || m > 12 || d < 1 || y < 1 {
		return false
	}
	days := [...]int{31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}[m-1]
	if m == 2 && (y%4 == 0 && (y%100 != 0 || y%400 == 0)) {
		days = 29
	}
	return d <= days
}

// ValidSSN reports whether a 9-digit string is a possible SSN: not area 000, 666 or 9xx,
// not group 00 or serial 0000, not 123456789, not one repeated digit.
func ValidSSN(d string) bool {
	if len(d) != 9 {
		return false
	}
	for i := 0; i < 9; i++ {
		if d[i] < '0' || d[i] > '9' {
			return false
		}
	}
	area := d[:3]
	if area == "000" || area == "666" || d[0] == '9' || d[3:5] == "00" || d[5:] == "0000" ||
		d == "123456789" || d == "078051120" || strings.Count(d, d[:1]) == 9 {
		return false
	}
	return true
}

func (n *Normalizer) ssn(r *Record, s string) {
	d := digits(s)
	switch {
	case d == "":
	case n.LenientSSN && len(d) >= 5 && len(d) <= 11:
		r.SSN, r.SSNLast = d, d[len(d)-4:]
	case len(d) == 4:
		if d != "0000" {
			r.SSNLast = d
		} else {
			r.Flags |= FlagInvalidSSN
		}
	case ValidSSN(d):
		r.SSN, r.SSNLast = d, d[5:]
	default:
		r.Flags |= FlagInvalidSSN
	}
}

// PhoneE164 returns a US phone number in E.164 form ("+15555550123"). It accepts 10 digits
// or 11 starting with 1, with any punctuation; the area code and exchange must not start
// with 0 or 1. ok is false for anything else.
func PhoneE164(s string) (string, bool) {
	if i := strings.IndexAny(strings.ToLower(s), "xe"); i > 0 { // extension
		s = s[:i]
	}
	d := digits(s)
	if len(d) == 11 && d[0] == '1' {
		d = d[1:]
	}
	if len(d) != 10 || d[0] < '2' || d[3] < '2' {
		return "", false
	}
	if strings.Count(d, d[:1]) == 10 {
		return "", false
	}
	return "+1" + d, true
}

func zip5(s string) string {
	d := digits(strings.SplitN(strings.TrimSpace(s), "-", 2)[0])
	if len(d) > 5 {
		d = d[:5]
	}
	return d
}

// Address is a parsed US street address.
type Address struct {
	House  string // house number ("123", "123A")
	Street string // directionals and street type abbreviated per USPS Pub. 28
	Unit   string // "APT 4B", "STE 100"
}

var streetSuffix = map[string]string{
	"ALLEY": "ALY", "AVENUE": "AVE", "AV": "AVE", "AVEN": "AVE", "BOULEVARD": "BLVD", "BOUL": "BLVD",
	"CIRCLE": "CIR", "CIRC": "CIR", "COURT": "CT", "CRT": "CT", "CRESCENT": "CRES", "CRESENT": "CRES",
	"DRIVE": "DR", "DRV": "DR", "EXPRESSWAY": "EXPY", "FREEWAY": "FWY", "HIGHWAY": "HWY", "HIWAY": "HWY",
	"LANE": "LN", "LOOP": "LOOP", "PARKWAY": "PKWY", "PARKWY": "PKWY", "PLACE": "PL", "PLAZA": "PLZ",
	"ROAD": "RD", "ROUTE": "RTE", "SQUARE": "SQ", "STREET": "ST", "STR": "ST", "STRT": "ST",
	"TERRACE": "TER", "TERR": "TER", "TRAIL": "TRL", "TURNPIKE": "TPKE", "WAY": "WAY", "POINT": "PT",
	"RIDGE": "RDG", "HEIGHTS": "HTS", "CREEK": "CRK", "GARDENS": "GDNS", "GROVE": "GRV", "HILL": "HL",
	"CLOSE": "CL", "PARADE": "PDE", "ESPLANADE": "ESP", "CROSSING": "XING", "COVE": "CV", "MOUNT": "MT",
}

var directional = map[string]string{"NORTH": "N", "SOUTH": "S", "EAST": "E", "WEST": "W",
	"NORTHEAST": "NE", "NORTHWEST": "NW", "SOUTHEAST": "SE", "SOUTHWEST": "SW"}

var unitDesignator = map[string]string{"APARTMENT": "APT", "APT": "APT", "UNIT": "UNIT", "SUITE": "STE",
	"STE": "STE", "FLOOR": "FL", "FL": "FL", "ROOM": "RM", "RM": "RM", "BUILDING": "BLDG", "BLDG": "BLDG",
	"LOT": "LOT", "TRAILER": "TRLR", "TRLR": "TRLR", "SPACE": "SPC", "SPC": "SPC", "DEPARTMENT": "DEPT",
	"DEPT": "DEPT", "BASEMENT": "BSMT", "PENTHOUSE": "PH", "FLAT": "UNIT"}

// ParseAddress standardizes street lines: the first line with a leading number gives the
// house number and street; a unit designator ("Apt 4", "#4", "Suite 100") is split off.
func ParseAddress(lines []string) Address {
	var a Address
	for _, l := range lines {
		l = strings.ReplaceAll(l, "#", " # ")
		ts := tokens(l)
		if len(ts) == 0 {
			continue
		}
		// unit at any position
		for i := 0; i < len(ts); i++ {
			u, ok := unitDesignator[ts[i]]
			if !ok && strings.Contains(l, "#") && i > 0 && i == len(ts)-1 && a.Unit == "" && isNumLike(ts[i]) && len(ts) > 2 {
				// "123 Main St # 4": tokens() drops '#', so a trailing bare number after a suffix is a unit
				if _, suf := streetSuffix[ts[i-1]]; suf || isSuffixAbbrev(ts[i-1]) {
					a.Unit = "UNIT " + ts[i]
					ts = ts[:i]
					break
				}
			}
			if ok && i+1 < len(ts) && (i > 0 || len(ts) == 2) {
				a.Unit = u + " " + ts[i+1]
				ts = append(ts[:i:i], ts[i+2:]...)
				break
			}
		}
		if a.House == "" && len(ts) > 1 && isNumLike(ts[0]) {
			a.House = ts[0]
			st := make([]string, 0, len(ts)-1)
			for j, t := range ts[1:] {
				if d, ok := directional[t]; ok {
					t = d
				} else if s, ok := streetSuffix[t]; ok && j > 0 {
					t = s
				}
				st = append(st, t)
			}
			a.Street = strings.Join(st, " ")
		} else if a.Street == "" && a.House == "" && len(ts) > 0 && a.Unit == "" {
			// no house number: keep as street so a PO box or rural route still compares
			a.Street = strings.Join(ts, " ")
		}
	}
	return a
}

func isSuffixAbbrev(t string) bool {
	for _, v := range streetSuffix {
		if v == t {
			return true
		}
	}
	return false
}

func isNumLike(t string) bool { return t != "" && t[0] >= '0' && t[0] <= '9' }

// sharesGroup reports whether two sorted group lists intersect.
func sharesGroup(a, b []uint32) bool {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i] == b[j]:
			return true
		case a[i] < b[j]:
			i++
		default:
			j++
		}
	}
	return false
}
