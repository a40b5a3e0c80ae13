package mpi

import "unsafe"

// Field numbers of a comparison vector.
const (
	FieldGiven = iota
	FieldFamily
	FieldDOB
	FieldSSN
	FieldPhone
	FieldAddress
	FieldCity
	FieldSex
	NumFields
)

// FieldNames names the fields of a Vector, for evidence and reports.
var FieldNames = [NumFields]string{"given", "family", "birthDate", "ssn", "phone", "address", "city", "sex"}

// Name comparison levels. Level 0 is always "null" (a value missing on either side).
const (
	NameNull = iota
	NameExact
	NameNickname
	NameJW92
	NameJW88
	NameMetaphone
	NameJW70
	NameInitial
	NameSwapped
	NameElse
)

// Birth date levels.
const (
	DOBNull = iota
	DOBExact
	DOBDayMonthSwapped
	DOBOneEdit
	DOBYearMonth
	DOBYearOff
	DOBElse
)

// SSN levels.
const (
	SSNNull = iota
	SSNExact
	SSNLast4
	SSNOneEdit
	SSNElse
)

// Address levels.
const (
	AddrNull    = iota
	AddrStreet  // same house number and street
	AddrNearZIP // same ZIP and house number or similar street
	AddrZIP     // same ZIP only
	AddrElse
)

// Levels is the number of levels of each field (level 0 is null).
var Levels = [NumFields]int{10, 10, 7, 5, 3, 5, 4, 3}

// Vector is a comparison vector: one level per field.
type Vector [NumFields]uint8

// Compare computes the comparison vector of two records. It allocates nothing.
func Compare(a, b *Record) Vector {
	var v Vector
	compareCheap(a, b, &v)
	compareNames(a, b, &v)
	return v
}

// compareNames fills the given name, surname and city levels of v: the fields that need
// Jaro-Winkler, hence the costly part of Compare.
func compareNames(a, b *Record, v *Vector) {
	v[FieldGiven] = nameLevel(a.Given, b.Given, a.GivenGroups, b.GivenGroups, &a.GivenDM, &b.GivenDM, nil, nil)
	v[FieldFamily] = nameLevel(a.Family, b.Family, nil, nil, &a.FamilyDM, &b.FamilyDM, a.FamilyParts, b.FamilyParts)
	if v[FieldGiven] >= NameJW70 && v[FieldFamily] >= NameJW70 && a.Given != "" && a.Family != "" && b.Given != "" && b.Family != "" {
		if (a.Given == b.Family || JaroWinkler(a.Given, b.Family) >= 0.92) && (a.Family == b.Given || JaroWinkler(a.Family, b.Given) >= 0.92) {
			v[FieldGiven], v[FieldFamily] = NameSwapped, NameSwapped
		}
	}
	switch {
	case a.City == "" || b.City == "":
	case a.City == b.City:
		v[FieldCity] = 1
	case JaroWinkler(a.City, b.City) >= 0.88:
		v[FieldCity] = 2
	default:
		v[FieldCity] = 3
	}
}

// compareCheap fills the birth date, SSN, phone, address and sex levels of v.
func compareCheap(a, b *Record, v *Vector) {
	v[FieldDOB] = dobLevel(a, b)
	v[FieldSSN] = ssnLevel(a, b)
	switch {
	case a.Phone == "" || b.Phone == "":
	case a.Phone == b.Phone:
		v[FieldPhone] = 1
	default:
		v[FieldPhone] = 2
	}
	v[FieldAddress] = addrLevel(a, b)
	switch {
	case a.Sex == 0 || b.Sex == 0:
	case a.Sex == b.Sex:
		v[FieldSex] = 1
	default:
		v[FieldSex] = 2
	}
}

func nameLevel(a, b string, ga, gb []uint32, da, db *[2]string, pa, pb []string) uint8 {
	if a == "" || b == "" {
		return NameNull
	}
	if a == b {
		return NameExact
	}
	if sharesGroup(ga, gb) {
		return NameNickname
	}
	if (len(a) == 1 || len(b) == 1) && a[0] == b[0] {
		return NameInitial
	}
	if len(pa) > 1 || len(pb) > 1 {
		if partOf(a, pb) || partOf(b, pa) {
			return NameJW92
		}
	}
	jw := JaroWinkler(a, b)
	switch {
	case jw >= 0.92:
		return NameJW92
	case jw >= 0.88:
		return NameJW88
	}
	if da[0] != "" && (da[0] == db[0] || da[0] == db[1] || (da[1] != "" && da[1] == db[0])) {
		return NameMetaphone
	}
	if jw >= 0.70 {
		return NameJW70
	}
	return NameElse
}

func partOf(s string, parts []string) bool {
	for _, p := range parts {
		if p == s {
			return true
		}
	}
	return false
}

func dobLevel(a, b *Record) uint8 {
	if a.DOB == "" || b.DOB == "" {
		return DOBNull
	}
	// A DOB is exactly 8 digits and Year, Month and Day are those digits, so the levels
	// are decided on the numbers alone: the string bytes live elsewhere in memory, and
	// fetching them was most of the cost of batch scoring.
	return dobLevelYMD(a.Year, a.Month, a.Day, b.Year, b.Month, b.Day)
}

// dobLevelYMD is dobLevel of two present birth dates given as numbers.
func dobLevelYMD(ya int16, ma, da uint8, yb int16, mb, db uint8) uint8 {
	if ya == yb && ma == mb && da == db {
		return DOBExact
	}
	if ya == yb && ma == db && da == mb {
		return DOBDayMonthSwapped
	}
	if xa, xb := dobDigits(ya, ma, da), dobDigits(yb, mb, db); editWithin1(unsafe.String(&xa[0], 8), unsafe.String(&xb[0], 8)) {
		return DOBOneEdit
	}
	if ya == yb && ma == mb {
		return DOBYearMonth
	}
	if (ya-yb == 1 || yb-ya == 1) && ma == mb && da == db {
		return DOBYearOff
	}
	return DOBElse
}

// dobDigits rebuilds the 8 digits of a DOB from its year, month and day.
func dobDigits(year int16, month, day uint8) [8]byte {
	var d [8]byte
	y, m, dd := int(year), int(month), int(day)
	d[0], d[1], d[2], d[3] = byte('0'+y/1000), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10)
	d[4], d[5], d[6], d[7] = byte('0'+m/10), byte('0'+m%10), byte('0'+dd/10), byte('0'+dd%10)
	return d
}

func ssnLevel(a, b *Record) uint8 {
	if a.SSN != "" && b.SSN != "" {
		switch {
		case a.SSN == b.SSN:
			return SSNExact
		case editWithin1(a.SSN, b.SSN):
			return SSNOneEdit
		}
		return SSNElse
	}
	if a.SSNLast == "" || b.SSNLast == "" {
		return SSNNull
	}
	if a.SSNLast == b.SSNLast {
		return SSNLast4
	}
	return SSNElse
}

func addrLevel(a, b *Record) uint8 {
	if (a.Street == "" && a.ZIP == "") || (b.Street == "" && b.ZIP == "") {
		return AddrNull
	}
	zipOK := a.ZIP != "" && a.ZIP == b.ZIP
	zipMissing := a.ZIP == "" || b.ZIP == ""
	house := a.House != "" && a.House == b.House
	if !zipOK && !(house && zipMissing) {
		return AddrElse // different ZIPs: no street comparison needed
	}
	jw := 0.0
	if a.Street != "" && b.Street != "" {
		if a.Street == b.Street {
			jw = 1
		} else {
			jw = JaroWinkler(a.Street, b.Street)
		}
	}
	switch {
	case house && jw >= 0.92:
		return AddrStreet
	case zipOK && (house || jw >= 0.88):
		return AddrNearZIP
	case zipOK:
		return AddrZIP
	}
	return AddrElse
}

// Guard is a set of hard-guard reasons that force review however high the score.
type Guard uint8

const (
	GuardTwin        Guard = 1 << iota // same DOB, surname and address/phone; different given name or sex
	GuardGeneration                    // JR vs SR, or same name and address with DOBs ≥ 15 years apart
	GuardSSN                           // two valid full SSNs that conflict
	GuardMRN                           // two different MRNs from the same assigning authority
	GuardPlaceholder                   // a placeholder name or birth date
	GuardNamesake                      // same name and DOB, different address, nothing else agrees

	AllGuards = GuardTwin | GuardGeneration | GuardSSN | GuardMRN | GuardPlaceholder | GuardNamesake
)

// String lists the reasons, e.g. "twin|ssn".
func (g Guard) String() string {
	names := [...]string{"twin", "generation", "ssn", "mrn", "placeholder", "namesake"}
	s := ""
	for i, n := range names {
		if g&(1<<i) != 0 {
			if s != "" {
				s += "|"
			}
			s += n
		}
	}
	return s
}

// Guards returns the hard guards that fire for a pair with comparison vector v.
func Guards(a, b *Record, v Vector) Guard {
	var g Guard
	if (a.Flags|b.Flags)&(FlagPlaceholderName|FlagPlaceholderDOB) != 0 {
		g |= GuardPlaceholder
	}
	fam := v[FieldFamily] == NameExact || v[FieldFamily] == NameJW92
	home := v[FieldAddress] == AddrStreet || v[FieldPhone] == 1
	// A full SSN that agrees silences the namesake guard, and the DOB-gap guard only when
	// the two birth dates are a plausible typo of each other (1984 as 1948 or 1884, 2020
	// as 1920); never the twin guard, nor a gap with another birthday: children, twins
	// or not, are often registered under a parent's SSN. Its last 4 alone are shared by
	// 1 in 10,000 strangers and by anyone given a relative's number, so they silence nothing.
	ssnFull := v[FieldSSN] == SSNExact
	// Twins: same birth date (allowing a typo: siblings are not born in the same month
	// unless they are twins), same surname and home, whatever the SSN says. A record whose
	// given name is a typo that lands on another listed name goes to review as well.
	twinDOB := v[FieldDOB] == DOBExact || v[FieldDOB] == DOBDayMonthSwapped || v[FieldDOB] == DOBOneEdit || v[FieldDOB] == DOBYearMonth
	if twinDOB && home && (fam || v[FieldFamily] == NameJW88 || v[FieldFamily] == NameMetaphone) {
		// Twins' names may share a nickname group (MARIA, MARIE); two formal names are
		// different names, a formal name and its nickname are not.
		gl := v[FieldGiven]
		// Two different names that are both in the name list are two names, even when
		// they are one letter apart or the list links them loosely (MARIA and MARIE,
		// JONATHAN and NATHAN): twins get such names. Only a formal name and its own
		// diminutive that is not a name heading a list entry itself (ELIZABETH and LIZ),
		// or an unknown spelling within one edit or JW 0.88 (a typo), is the same name.
		known := (a.Flags&b.Flags)&FlagKnownGiven != 0
		same := gl == NameExact || gl == NameNull ||
			(!known && (gl == NameJW92 || gl == NameJW88 || editWithin1(a.Given, b.Given))) ||
			(gl == NameNickname && !(known && editWithin1(a.Given, b.Given)) &&
				(diminutive(a, b) || diminutive(b, a) || (len(a.Given) <= 5 && len(b.Given) <= 5)))
		if !same || v[FieldSex] == 2 {
			g |= GuardTwin
		}
	}
	// Namesakes: the same name and birth date at a different street address, with no
	// identifier or phone to tie them; common names make this two people too often.
	if v[FieldDOB] == DOBExact && !ssnFull && v[FieldPhone] != 1 && (v[FieldAddress] == AddrElse || v[FieldAddress] == AddrZIP) &&
		v[FieldGiven] >= NameExact && v[FieldGiven] <= NameJW88 && v[FieldFamily] >= NameExact && v[FieldFamily] <= NameJW92 {
		g |= GuardNamesake
	}
	if a.Generation != 0 && b.Generation != 0 && a.Generation != b.Generation {
		g |= GuardGeneration
	} else if fam && home && !(ssnFull && dobTypo(a, b, v)) && (v[FieldGiven] == NameExact || v[FieldGiven] == NameNickname || v[FieldGiven] == NameJW92) && a.Year != 0 && b.Year != 0 {
		d := a.Year - b.Year
		if d >= 15 || d <= -15 {
			g |= GuardGeneration
		}
	}
	if v[FieldSSN] != SSNNull && v[FieldSSN] != SSNExact && v[FieldSSN] != SSNLast4 && len(a.SSN) == 9 && len(b.SSN) == 9 && ValidSSN(a.SSN) && ValidSSN(b.SSN) && v[FieldSSN] != SSNOneEdit {
		g |= GuardSSN
	}
	if a.Source.System != "" && a.Source.System == b.Source.System && a.Source.Value != b.Source.Value {
		g |= GuardMRN
	} else if conflictingIDs(a, b) {
		g |= GuardMRN
	}
	return g
}

// dobTypo reports whether two present birth dates with comparison vector v could be one
// date mistyped: one digit changed or two adjacent digits swapped (1984 as 1884 or 1948),
// or the same month and day with the century slipped (2020 as 1920). A father and a son
// born on different days decades apart are never a typo.
func dobTypo(a, b *Record, v Vector) bool {
	if v[FieldDOB] == DOBOneEdit {
		return true
	}
	return a.Month == b.Month && a.Day == b.Day && (a.Year-b.Year)%100 == 0
}

func conflictingIDs(a, b *Record) bool {
	for _, x := range a.IDs {
		for _, y := range b.IDs {
			if x.System == y.System && x.Value != y.Value {
				return true
			}
		}
	}
	return false
}

// diminutive reports whether b is listed as a nickname of a's formal name and is a
// short form of it (shorter than a; at most 5 letters, or 6 when it heads no entry of its
// own), as JIM is of JAMES and MAGGIE of MARGARET; NATHAN is listed under JONATHAN but is
// a name of its own.
func diminutive(a, b *Record) bool {
	if a.GivenHead == 0 || len(b.Given) >= len(a.Given) || len(b.Given) > 6 || (len(b.Given) == 6 && b.GivenHead != 0) {
		return false
	}
	for _, g := range b.GivenGroups {
		if g == a.GivenHead {
			return true
		}
	}
	return false
}
