package directory

import (
	"context"
	"strings"

	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

// npiPrefix is the ISO/IEC 7812 issuer prefix of the NPI (80 health, 840 United States):
// the check digit is the Luhn check digit of the prefix and the first nine digits.
const npiPrefix = "80840"

// NormalizeNPI returns npi (spaces and hyphens removed) if it is a National Provider
// Identifier: ten digits, the first 1 or 2, the last the Luhn check digit computed over
// "80840" and the first nine, as CMS defines it. It returns errs.Invalid otherwise.
func NormalizeNPI(npi string) (string, error) {
	n := strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' {
			return -1
		}
		return r
	}, strings.TrimSpace(npi))
	if !ValidNPI(n) {
		return "", errs.E("directory.NormalizeNPI", errs.Invalid, "an NPI is 10 digits starting with 1 or 2, the last a Luhn check digit")
	}
	return n, nil
}

// ValidNPI reports whether npi is exactly ten digits, the first 1 or 2, with the check
// digit CMS defines (Luhn over "80840" and the first nine digits).
func ValidNPI(npi string) bool {
	if len(npi) != 10 || (npi[0] != '1' && npi[0] != '2') {
		return false
	}
	for i := 0; i < len(npi); i++ {
		if npi[i] < '0' || npi[i] > '9' {
			return false
		}
	}
	return luhnValid(npiPrefix + npi)
}

// luhnValid reports whether the digit string s ends with its Luhn check digit: from the
// right, every second digit is doubled (less 9 when over 9) and the sum is a multiple of 10.
func luhnValid(s string) bool {
	sum := 0
	for i := range len(s) {
		d := int(s[len(s)-1-i] - '0')
		if i%2 == 1 {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return sum%10 == 0
}

// SetNPI sets member id's organizational NPI (NormalizeNPI), or clears it when npi is "".
// It returns errs.Invalid for a malformed NPI, errs.Conflict when another member has it,
// and errs.NotFound for an unknown member.
func (s *Store) SetNPI(ctx context.Context, id, npi string) error {
	const op = "directory.Store.SetNPI"
	var val *string
	if strings.TrimSpace(npi) != "" {
		n, err := NormalizeNPI(npi)
		if err != nil {
			return err
		}
		val = &n
	}
	tag, err := s.db.Exec(ctx, `UPDATE directory_members SET npi = $2 WHERE id = $1`, id, val)
	if err = db.Map(op, err); errs.CodeOf(err) == errs.Conflict {
		return errs.E(op, "another member has this NPI", err)
	} else if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return errs.E(op, errs.NotFound, "member not found")
	}
	return nil
}
