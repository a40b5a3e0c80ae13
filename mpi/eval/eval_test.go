package eval

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

func dataDir(t testing.TB, sub string) string {
	t.Helper()
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Skip("module root not found")
		}
		dir = parent
	}
	d := filepath.Join(dir, "..", "shared", "data", sub)
	if _, err := os.Stat(d); err != nil {
		t.Skipf("test data %s missing: %v", d, err)
	}
	return d
}

func TestFEBRLQuality(t *testing.T) {
	dir := dataDir(t, "febrl")
	for n := 1; n <= 4; n++ {
		ds, err := LoadFEBRL(dir, n)
		if err != nil {
			t.Fatal(err)
		}
		rep, _, err := Run(context.Background(), ds, Options{Seed: 1, Precision: 0.5, Guards: FEBRLGuards})
		if err != nil {
			t.Fatal(err)
		}
		WriteTable(os.Stdout, []*Report{rep})
		if rep.F1 < 0.995 || rep.PairCompleteness < 0.995 {
			t.Errorf("%s: F1 %.4f, pair completeness %.4f; want both ≥ 0.995", ds.Name, rep.F1, rep.PairCompleteness)
		}
	}
}

func TestHIEQuality(t *testing.T) {
	train := Generate(GenOptions{Seed: 1, Persons: 8000})
	m, err := TrainLabelled(train, 0.9995)
	if err != nil {
		t.Fatal(err)
	}
	test := Generate(GenOptions{Seed: 2, Persons: 8000})
	rep, _, err := Run(context.Background(), test, Options{Model: m})
	if err != nil {
		t.Fatal(err)
	}
	WriteTable(os.Stdout, []*Report{rep})
	t.Logf("model %s: link %.2f review %.2f", m.Version, m.Link, m.Review)
	for _, k := range []string{"twin", "jrsr", "namesake"} {
		if rep.Overlays[k] != 0 {
			t.Errorf("%d %s overlays, want 0", rep.Overlays[k], k)
		}
	}
	if rep.Precision < 0.999 || rep.F1 < 0.975 || rep.ReviewRate > 0.02 {
		t.Errorf("precision %.4f (≥ 0.999), F1 %.4f (≥ 0.975), review %.2f%% (≤ 2%%)", rep.Precision, rep.F1, 100*rep.ReviewRate)
	}
}
