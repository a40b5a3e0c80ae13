package directory

import (
	"context"
	"testing"

	"github.com/concord-hie/concord/internal/errs"
)

func TestValidNPI(t *testing.T) {
	tests := []struct {
		npi  string
		want bool
	}{
		{"1234567893", true}, // the CMS example (NPI check digit, Luhn over 80840 + 9 digits)
		{"1245319599", true},
		{"1122334455", true},
		{"2345678900", true}, // a check digit of 0
		{"1000000004", true},
		{"1234567890", false}, // wrong check digit
		{"1234567894", false},
		{"1245319590", false},
		{"1234567839", false}, // two digits swapped
		{"3234567893", false}, // first digit neither 1 nor 2
		{"0000000000", false},
		{"123456789", false}, // nine digits
		{"12345678930", false},
		{"12345678a3", false},
		{"", false},
	}
	for _, tt := range tests {
		t.Run(tt.npi, func(t *testing.T) {
			if got := ValidNPI(tt.npi); got != tt.want {
				t.Errorf("ValidNPI(%q) = %v, want %v", tt.npi, got, tt.want)
			}
		})
	}
}

// TestNPICheckDigit checks luhnValid against CMS's own description of the NPI check digit:
// double the alternate digits of the nine starting from the right, add the digits of the
// products and the undoubled digits, add 24 for the 80840 prefix, and take the amount to
// the next multiple of ten.
func TestNPICheckDigit(t *testing.T) {
	cms := func(base string) byte {
		sum := 24
		for i := range 9 {
			d := int(base[8-i] - '0')
			if i%2 == 0 {
				if d *= 2; d > 9 {
					d -= 9
				}
			}
			sum += d
		}
		return byte('0' + (10-sum%10)%10)
	}
	for _, base := range []string{"123456789", "100000000", "199999999", "287654321", "150000000", "101010101"} {
		check := cms(base)
		for d := byte('0'); d <= '9'; d++ {
			if got := ValidNPI(base + string(d)); got != (d == check) {
				t.Errorf("ValidNPI(%s%c) = %v; CMS check digit %c", base, d, got, check)
			}
		}
	}
}

func TestNormalizeNPI(t *testing.T) {
	if got, err := NormalizeNPI(" 123-456-7893 "); err != nil || got != "1234567893" {
		t.Fatalf("NormalizeNPI = %q, %v", got, err)
	}
	if _, err := NormalizeNPI("1234567890"); errs.CodeOf(err) != errs.Invalid {
		t.Fatalf("bad check digit: %v", err)
	}
}

func TestSetNPI(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, a, b := alphaBeta(t)
	if err := s.SetNPI(ctx, a.ID, "1234567893"); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, member, npi string
		want              errs.Code
	}{
		{"bad check digit", b.ID, "1234567890", errs.Invalid},
		{"another member's", b.ID, "1234567893", errs.Conflict},
		{"unknown member", "nobody", "1245319599", errs.NotFound},
	} {
		if err := s.SetNPI(ctx, tt.member, tt.npi); errs.CodeOf(err) != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	ls, err := s.Listings(ctx, nil)
	if err != nil || len(ls) != 2 || ls[0].NPI != "1234567893" || ls[1].NPI != "" {
		t.Fatalf("listings: %+v %v", ls, err)
	}
	// Cleared, the NPI is free for another member.
	if err := s.SetNPI(ctx, a.ID, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.SetNPI(ctx, b.ID, "1234567893"); err != nil {
		t.Fatal(err)
	}
	if ls, _ := s.Listings(ctx, nil); ls[0].NPI != "" || ls[1].NPI != "1234567893" {
		t.Fatalf("after moving: %+v", ls)
	}
}
