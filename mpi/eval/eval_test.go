package eval

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/concord-hie/concord/mpi"
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
	m, err := TrainDefault()
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

var update = flag.Bool("update", false, "rewrite mpi/default_model.json")

// TestWriteDefaultModel trains the shipped model on a seeded population; with -update it
// rewrites mpi/default_model.json, else it checks that the embedded model loads and was
// trained the same way.
func TestWriteDefaultModel(t *testing.T) {
	if !*update {
		m, err := mpi.DefaultModel()
		if err != nil {
			t.Fatal(err)
		}
		if m.Version != DefaultModelVersion || m.Calibrated != "labelled" || m.Link <= m.Review {
			t.Fatalf("embedded model %q calibrated %q link %.2f review %.2f", m.Version, m.Calibrated, m.Link, m.Review)
		}
		return
	}
	m, err := TrainDefault()
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("..", "default_model.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
}
