package fhir

import (
	"time"

	"github.com/concord-hie/concord/internal/errs"
)

// Precision is how much of a FHIR date, dateTime or instant was given.
type Precision uint8

const (
	PrecisionYear Precision = iota + 1
	PrecisionMonth
	PrecisionDay
	PrecisionMinute // only in search values (FHIR dateTime always has seconds)
	PrecisionSecond // seconds, with or without a fraction
)

// DateValue is a parsed FHIR date, dateTime or instant.
type DateValue struct {
	// Low is the first instant the value covers, in UTC.
	Low time.Time
	// High is the first instant after the value: a value covers [Low, High).
	// For a value with fractional seconds High is Low plus one unit of the last digit.
	High time.Time
	// Precision is how much was given.
	Precision Precision
	// Zoned reports whether the value carried a time zone. A value without one (a date, or a
	// search value without zone) is interpreted in UTC.
	Zoned bool
}

type dateKind uint8

const (
	kindDate     dateKind = iota // YYYY, YYYY-MM, YYYY-MM-DD
	kindDateTime                 // date, or date + Thh:mm:ss(.f+)? + zone
	kindInstant                  // date + Thh:mm:ss(.f+)? + zone, all required
	kindSearch                   // dateTime, also Thh:mm, zone optional (search parameter values)
)

// ParseDateTime parses a FHIR date or dateTime (a dateTime with a time carries a zone),
// rejecting calendar dates that do not exist. It returns errs.Invalid otherwise.
func ParseDateTime(s string) (DateValue, error) {
	if v, ok := parseDate(s, kindDateTime); ok {
		return v, nil
	}
	return DateValue{}, errs.E("fhir.ParseDateTime", errs.Invalid, "malformed date or dateTime")
}

// ParseSearchDate parses a date search value without its prefix: a dateTime whose zone is
// optional (UTC when absent) and whose seconds may be left out. It returns errs.Invalid
// otherwise.
func ParseSearchDate(s string) (DateValue, error) {
	if v, ok := parseDate(s, kindSearch); ok {
		return v, nil
	}
	return DateValue{}, errs.E("fhir.ParseSearchDate", errs.Invalid, "malformed date search value")
}

func digits(s string, i, n int) (int, bool) {
	if i+n > len(s) {
		return 0, false
	}
	v := 0
	for _, c := range []byte(s[i : i+n]) {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
}

// parseDate parses s as the given FHIR kind, following the R4 regular expressions, and also
// rejects calendar dates that do not exist (2023-02-30).
func parseDate(s string, k dateKind) (DateValue, bool) {
	var v DateValue
	year, ok := digits(s, 0, 4)
	if !ok || year == 0 {
		return v, false
	}
	month, day := 1, 1
	i := 4
	v.Precision = PrecisionYear
	if i < len(s) && s[i] == '-' {
		if month, ok = digits(s, i+1, 2); !ok || month < 1 || month > 12 {
			return v, false
		}
		i += 3
		v.Precision = PrecisionMonth
		if i < len(s) && s[i] == '-' {
			if day, ok = digits(s, i+1, 2); !ok || day < 1 || day > daysIn(year, month) {
				return v, false
			}
			i += 3
			v.Precision = PrecisionDay
		}
	}
	if i == len(s) {
		if k == kindInstant {
			return v, false
		}
		v.Low = time.Date(year, time.Month(month), day, 0, 0, 0, 0, time.UTC)
		switch v.Precision {
		case PrecisionYear:
			v.High = v.Low.AddDate(1, 0, 0)
		case PrecisionMonth:
			v.High = v.Low.AddDate(0, 1, 0)
		default:
			v.High = v.Low.AddDate(0, 0, 1)
		}
		return v, true
	}
	if k == kindDate || v.Precision != PrecisionDay || s[i] != 'T' {
		return v, false
	}
	i++
	hour, ok1 := digits(s, i, 2)
	minute, ok2 := digits(s, i+3, 2)
	if !ok1 || !ok2 || s[i+2] != ':' || hour > 23 || minute > 59 {
		return v, false
	}
	i += 5
	sec, nsec := 0, 0
	unit := time.Minute
	v.Precision = PrecisionMinute
	if i < len(s) && s[i] == ':' {
		if sec, ok = digits(s, i+1, 2); !ok || sec > 60 {
			return v, false
		}
		i += 3
		unit = time.Second
		v.Precision = PrecisionSecond
		if i < len(s) && s[i] == '.' {
			i++
			j := i
			for i < len(s) && s[i] >= '0' && s[i] <= '9' {
				i++
			}
			n := i - j
			if n == 0 {
				return v, false
			}
			frac := s[j:i]
			if n > 9 {
				frac = frac[:9]
			}
			f, _ := digits(frac, 0, len(frac))
			for p := len(frac); p < 9; p++ {
				f *= 10
			}
			nsec = f
			unit = time.Nanosecond
			for p := min(n, 9); p < 9; p++ {
				unit *= 10
			}
		}
	} else if k != kindSearch {
		return v, false
	}
	if sec == 60 { // leap second: FHIR allows it; count it as the last second of the minute
		sec, nsec = 59, 999999999
	}
	loc := time.UTC
	switch {
	case i == len(s):
		if k != kindSearch {
			return v, false
		}
	case s[i] == 'Z' && i+1 == len(s):
		v.Zoned = true
	case (s[i] == '+' || s[i] == '-') && i+6 == len(s) && s[i+3] == ':':
		zh, ok1 := digits(s, i+1, 2)
		zm, ok2 := digits(s, i+4, 2)
		if !ok1 || !ok2 || zm > 59 || zh > 14 || zh == 14 && zm != 0 {
			return v, false
		}
		off := zh*3600 + zm*60
		if s[i] == '-' {
			off = -off
		}
		loc = time.FixedZone("", off)
		v.Zoned = true
	default:
		return v, false
	}
	v.Low = time.Date(year, time.Month(month), day, hour, minute, sec, nsec, loc).UTC()
	v.High = v.Low.Add(unit)
	return v, true
}

func daysIn(year, month int) int {
	return time.Date(year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// validTime checks the FHIR time format hh:mm:ss(.f+)?.
func validTime(s string) bool {
	h, ok1 := digits(s, 0, 2)
	m, ok2 := digits(s, 3, 2)
	sec, ok3 := digits(s, 6, 2)
	if !ok1 || !ok2 || !ok3 || s[2] != ':' || s[5] != ':' || h > 23 || m > 59 || sec > 60 {
		return false
	}
	if len(s) == 8 {
		return true
	}
	if s[8] != '.' || len(s) == 9 {
		return false
	}
	for _, c := range []byte(s[9:]) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
