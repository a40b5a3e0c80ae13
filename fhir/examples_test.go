package fhir

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/concord-hie/concord/internal/errs"
)

var examplesDir = flag.String("examples", "", "directory of the npm package hl7.fhir.r4.examples (package/ folder) to validate in full")

// TestOfficialExamples validates every official R4 example when -examples is given
// (npm install hl7.fhir.r4.examples@4.0.1 in a temporary directory, outside the repo).
func TestOfficialExamples(t *testing.T) {
	if *examplesDir == "" {
		t.Skip("set -examples=DIR to validate the full hl7.fhir.r4.examples package")
	}
	runExamples(t, *examplesDir, true)
}

// TestExamplesSubset validates the committed subset of official examples: all must parse.
func TestExamplesSubset(t *testing.T) {
	n := runExamples(t, filepath.Join("testdata", "examples"), false)
	if n < 20 {
		t.Fatalf("only %d examples in testdata/examples", n)
	}
}

// knownInvalid are official examples that break R4's own rules; they must be rejected.
var knownInvalid = map[string]string{
	"SearchParameter-questionnaireresponse-extensions-QuestionnaireResponse-item-subject.json": "id of 67 characters (max 64)",
	"ig-r4.json":                    "missing required ImplementationGuide.name",
	"ImplementationGuide-fhir.json": "missing required ImplementationGuide.name",
	"Questionnaire-qs1.json":        "missing required Questionnaire.item[0].item[0].linkId",
	"SearchParameter-codesystem-extensions-CodeSystem-author.json":    "missing required SearchParameter.base",
	"SearchParameter-codesystem-extensions-CodeSystem-effective.json": "missing required SearchParameter.base",
	"SearchParameter-codesystem-extensions-CodeSystem-end.json":       "missing required SearchParameter.base",
	"SearchParameter-codesystem-extensions-CodeSystem-keyword.json":   "missing required SearchParameter.base",
	"SearchParameter-codesystem-extensions-CodeSystem-workflow.json":  "missing required SearchParameter.base",
	"SearchParameter-valueset-extensions-ValueSet-author.json":        "missing required SearchParameter.base",
	"SearchParameter-valueset-extensions-ValueSet-effective.json":     "missing required SearchParameter.base",
	"SearchParameter-valueset-extensions-ValueSet-end.json":           "missing required SearchParameter.base",
	"SearchParameter-valueset-extensions-ValueSet-keyword.json":       "missing required SearchParameter.base",
	"SearchParameter-valueset-extensions-ValueSet-workflow.json":      "missing required SearchParameter.base",
}

func runExamples(t *testing.T, dir string, report bool) int {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ok, total int
	fails := map[string]int{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var head struct {
			ResourceType string `json:"resourceType"`
		}
		if json.Unmarshal(b, &head) != nil || !isResourceName(head.ResourceType) {
			continue // package.json, index files, non-R4 types
		}
		total++
		if why, bad := knownInvalid[filepath.Base(f)]; bad {
			if _, err := Parse(b); err == nil {
				t.Errorf("%s: accepted, but it is invalid: %s", filepath.Base(f), why)
			}
			ok++
			continue
		}
		if _, err := Parse(b); err != nil {
			key := errs.MessageOf(err) + " @ " + errs.PathOf(err)
			fails[key]++
			if !report || fails[key] <= 2 {
				t.Errorf("%s: %v (path %s)", filepath.Base(f), err, errs.PathOf(err))
			}
			continue
		}
		ok++
	}
	if report {
		var keys []string
		for k := range fails {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool { return fails[keys[i]] > fails[keys[j]] })
		if len(keys) > 40 {
			keys = keys[:40]
		}
		t.Logf("handled %d of %d resource examples as expected (%.2f%%; %d known-invalid rejected); top failures:\n%s", ok, total,
			100*float64(ok)/float64(max(total, 1)), len(knownInvalid), strings.Join(keys, "\n"))
	}
	return total
}
