package fhir

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// syntheaBundle returns the bytes of the first Synthea bundle and one Observation from it.
func syntheaBundle(b *testing.B) (bundle, obs []byte) {
	dir := sharedData(b, "synthea", "bundles")
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) == 0 {
		b.Skip("no Synthea bundles")
	}
	bundle, err := os.ReadFile(files[0])
	if err != nil {
		b.Fatal(err)
	}
	var bn struct {
		Entry []struct {
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(bundle, &bn); err != nil {
		b.Fatal(err)
	}
	for _, e := range bn.Entry {
		var h struct{ ResourceType string }
		if json.Unmarshal(e.Resource, &h) == nil && h.ResourceType == "Observation" {
			return bundle, e.Resource
		}
	}
	b.Skip("no Observation in the bundle")
	return nil, nil
}

func BenchmarkParseObservation(b *testing.B) {
	_, obs := syntheaBundle(b)
	b.SetBytes(int64(len(obs)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(obs); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseBundle(b *testing.B) {
	bundle, _ := syntheaBundle(b)
	b.SetBytes(int64(len(bundle)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(bundle); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStdlibUnmarshalBundle is the reference point: encoding/json into any (no
// validation, accepts duplicates).
func BenchmarkStdlibUnmarshalBundle(b *testing.B) {
	bundle, _ := syntheaBundle(b)
	b.SetBytes(int64(len(bundle)))
	b.ReportAllocs()
	for b.Loop() {
		var v any
		if err := json.Unmarshal(bundle, &v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkExtractBundle(b *testing.B) {
	raw, _ := syntheaBundle(b)
	bn, err := ParseBundle(MustParse(raw))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, e := range bn.Entries {
			Extract(e.Resource)
		}
	}
	b.ReportMetric(float64(len(bn.Entries)), "resources/op")
}
