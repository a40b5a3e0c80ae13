package mpi

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/xrash/smetrics"
)

func TestDoubleMetaphone(t *testing.T) {
	tests := []struct{ in, pri, alt string }{
		{"SMITH", "SM0", "XMT"},
		{"SCHMIDT", "XMT", "SMT"},
		{"THOMAS", "TMS", "TMS"},
		{"MICHAEL", "MKL", "MXL"},
		{"ARNOW", "ARN", "ARNF"},
		{"FILIPOWICZ", "FLPT", "FLPF"},
		{"WASSERMAN", "ASRM", "FSRM"},
		{"JOSE", "HS", "HS"},
		{"GOUGH", "KF", "KF"},
		{"CAMPBELL", "KMPL", "KMPL"},
		{"KATHERINE", "K0RN", "KTRN"},
		{"CATHERINE", "K0RN", "KTRN"},
		{"JOHNSON", "JNSN", "ANSN"},
		{"XAVIER", "SF", "SFR"},
		{"KNIGHT", "NT", "NT"},
		{"PHILIP", "FLP", "FLP"},
		{"", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			p, a := DoubleMetaphone(tt.in)
			if p != tt.pri || a != tt.alt {
				t.Errorf("DoubleMetaphone(%q) = %q/%q, want %q/%q", tt.in, p, a, tt.pri, tt.alt)
			}
		})
	}
}

func TestNYSIIS(t *testing.T) {
	tests := []struct{ in, want string }{
		{"SMITH", "SNAT"}, {"MITCHELL", "MATCAL"}, {"BISHOP", "BASAP"}, {"KNIGHT", "NAGT"},
		{"BROWN", "BRAN"}, {"MACDONALD", "MCDANA"}, {"", ""},
	}
	for _, tt := range tests {
		if got := NYSIIS(tt.in); got != tt.want {
			t.Errorf("NYSIIS(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestJaroWinklerMatchesSmetrics(t *testing.T) {
	words := []string{"MARTHA", "MARHTA", "DWAYNE", "DUANE", "DIXON", "DICKSONX", "JONES", "JOHNSON",
		"RYAN", "BERRYMAN", "SMITH", "SMYTH", "WILLIAMS", "WILLIAMSON", "A", "AB", "BA", "", "CATHERINE", "KATHERINE"}
	rng := rand.New(rand.NewPCG(1, 2))
	letters := "ABCDEHIKLMNORST"
	for range 20000 {
		b := make([]byte, 1+rng.IntN(10))
		for i := range b {
			b[i] = letters[rng.IntN(len(letters))]
		}
		words = append(words, string(b))
	}
	checked := 0
	for i := 0; i+1 < len(words); i++ {
		a, b := words[i], words[i+1]
		if i%3 == 0 && len(a) > 2 { // near-duplicates so many pairs land above 0.70
			bb := []byte(a)
			j := rng.IntN(len(bb) - 1)
			bb[j], bb[j+1] = bb[j+1], bb[j]
			b = string(bb)
		}
		want := smetrics.JaroWinkler(a, b, 0.7, 4)
		if want < 0.70 {
			continue
		}
		checked++
		if got := JaroWinkler(a, b); math.Abs(got-want) > 1e-12 {
			t.Fatalf("JaroWinkler(%q,%q) = %v, smetrics %v", a, b, got, want)
		}
	}
	if checked < 1000 {
		t.Fatalf("only %d pairs above 0.70 were checked", checked)
	}
}

func TestEditWithin1(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"19800512", "19800512", true}, {"19800512", "19800521", true}, {"19800512", "19800513", true},
		{"19800512", "1980512", true}, {"19800512", "19811512", false}, {"ABC", "CBA", false}, {"", "A", true},
	}
	for _, tt := range tests {
		if got := editWithin1(tt.a, tt.b); got != tt.want {
			t.Errorf("editWithin1(%q,%q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func BenchmarkJaroWinkler(b *testing.B) {
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		JaroWinkler("MARTHA", "MARHTA")
	}
}
