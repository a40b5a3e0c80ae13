package fhir

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// consentCodesRef is ConsentCodes written the slow, obvious way: decode everything with
// encoding/json and walk the result.
func consentCodesRef(data []byte) (security, categories []string, ok bool) {
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil || doc == nil || dec.More() {
		return nil, nil, false
	}
	code := func(c any, out *[]string) bool {
		m, ok := c.(map[string]any)
		if !ok {
			return false
		}
		switch v := m["code"].(type) {
		case nil:
		case string:
			if v != "" {
				*out = append(*out, v)
			}
		default:
			return false
		}
		return true
	}
	concept := func(cc any, out *[]string) bool {
		m, ok := cc.(map[string]any)
		if !ok {
			return false
		}
		if m["coding"] == nil {
			return true
		}
		codings, ok := m["coding"].([]any)
		if !ok {
			return false
		}
		for _, c := range codings {
			if !code(c, out) {
				return false
			}
		}
		return true
	}
	if meta, present := doc["meta"]; present {
		m, ok := meta.(map[string]any)
		if !ok {
			return nil, nil, false
		}
		if sec, present := m["security"]; present {
			list, ok := sec.([]any)
			if !ok {
				return nil, nil, false
			}
			for _, c := range list {
				if !code(c, &security) {
					return nil, nil, false
				}
			}
		}
	}
	switch cat := doc["category"].(type) {
	case nil:
	case string:
		if cat != "" {
			categories = append(categories, cat)
		}
	case map[string]any:
		if !concept(cat, &categories) {
			return nil, nil, false
		}
	case []any:
		for _, c := range cat {
			if c == nil {
				continue
			}
			if s, isString := c.(string); isString {
				if s != "" {
					categories = append(categories, s)
				}
				continue
			}
			if !concept(c, &categories) {
				return nil, nil, false
			}
		}
	default:
		return nil, nil, false
	}
	return security, categories, true
}

func TestConsentCodes(t *testing.T) {
	for _, c := range []struct {
		name, in  string
		sec, cats []string
		ok        bool
	}{
		{"none", `{"resourceType":"Patient","id":"a"}`, nil, nil, true},
		{"labels and categories", `{"resourceType":"Observation","meta":{"versionId":"1","security":[{"system":"x","code":"PSY"},{"code":"R","display":"restricted"}]},
			"category":[{"coding":[{"system":"s","code":"laboratory"},{"code":"vital-signs"}]},{"text":"no coding"}],"code":{"coding":[{"code":"not-a-category"}]}}`,
			[]string{"PSY", "R"}, []string{"laboratory", "vital-signs"}, true},
		{"one concept (Procedure)", `{"resourceType":"Procedure","category":{"coding":[{"code":"387713003"}]}}`, nil, []string{"387713003"}, true},
		{"codes (AllergyIntolerance)", `{"resourceType":"AllergyIntolerance","category":["food",null,"medication"],"_category":[null,{"id":"x"},null]}`, nil, []string{"food", "medication"}, true},
		{"one code (MessageDefinition)", `{"resourceType":"MessageDefinition","category":"notification"}`, nil, []string{"notification"}, true},
		{"nested security is not the resource's", `{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Observation","meta":{"security":[{"code":"HIV"}]}}}]}`, nil, nil, true},
		{"meta.tag is not a label", `{"meta":{"tag":[{"code":"R"}]}}`, nil, nil, true},
		{"escaped code", `{"meta":{"security":[{"code":"E\u0054H"}]}}`, []string{"ETH"}, nil, true},
		{"codings without code", `{"meta":{"security":[{"system":"x"}]},"category":[{"coding":[{"display":"d"}]}]}`, nil, nil, true},
		{"whitespace", " {\n\"meta\" : { \"security\" : [ { \"code\" : \"V\" } ] } }\n", []string{"V"}, nil, true},
		{"security not an array", `{"meta":{"security":{"code":"R"}}}`, nil, nil, false},
		{"code not a string", `{"meta":{"security":[{"code":1}]}}`, nil, nil, false},
		{"category a number", `{"category":3}`, nil, nil, false},
		{"truncated", `{"meta":{"security":[{"code":"R"}]`, nil, nil, false},
		{"trailing bytes", `{"meta":{}} {}`, nil, nil, false},
		{"not an object", `["meta"]`, nil, nil, false},
		{"bad escape in a skipped value", `{"text":"\x","meta":{"security":[{"code":"R"}]}}`, nil, nil, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			sec, cats, ok := ConsentCodes([]byte(c.in))
			if ok != c.ok || !slices.Equal(sec, c.sec) || !slices.Equal(cats, c.cats) {
				t.Errorf("got %q %q %v, want %q %q %v", sec, cats, ok, c.sec, c.cats, c.ok)
			}
			if rs, rc, rok := consentCodesRef([]byte(c.in)); c.ok && (!rok || !slices.Equal(rs, sec) || !slices.Equal(rc, cats)) {
				t.Errorf("the reference reads %q %q %v", rs, rc, rok)
			}
		})
	}
}

// TestConsentCodesSynthea reads every resource of the Synthea data both ways.
func TestConsentCodesSynthea(t *testing.T) {
	n, labelled := 0, 0
	check := func(raw []byte) {
		n++
		sec, cats, ok := ConsentCodes(raw)
		rs, rc, rok := consentCodesRef(raw)
		if !ok || !rok || !slices.Equal(sec, rs) || !slices.Equal(cats, rc) {
			t.Fatalf("resource %d: got %q %q %v, reference %q %q %v", n, sec, cats, ok, rs, rc, rok)
		}
		if len(cats) > 0 {
			labelled++
		}
	}
	bundles, _ := filepath.Glob(filepath.Join(sharedData(t, "synthea", "bundles"), "*.json"))
	for _, p := range bundles {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var bundle struct {
			Entry []struct {
				Resource json.RawMessage `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(b, &bundle); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		for _, e := range bundle.Entry {
			check(e.Resource)
		}
	}
	ndjson, _ := filepath.Glob(filepath.Join(sharedData(t, "synthea", "bulk-10"), "*.ndjson"))
	for _, p := range ndjson {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 16<<20)
		for sc.Scan() {
			check(slices.Clone(sc.Bytes()))
		}
		f.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	examples, _ := filepath.Glob(filepath.Join("testdata", "examples", "*.json"))
	for _, p := range examples {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		check(b)
	}
	if n < 1000 || labelled == 0 {
		t.Fatalf("only %d resources (%d with categories) read", n, labelled)
	}
	t.Logf("%d resources, %d with categories, read alike", n, labelled)
}

// FuzzConsentCodes: ConsentCodes agrees with the reference whenever it answers for input
// without repeated member names (which Parse refuses, so nothing stored has them), and it
// answers for every resource Parse accepts.
func FuzzConsentCodes(f *testing.F) {
	f.Add([]byte(`{"resourceType":"Observation","meta":{"security":[{"code":"PSY"}]},"category":[{"coding":[{"code":"laboratory"}]}]}`))
	f.Add([]byte(`{"resourceType":"Procedure","category":{"coding":[{"code":"x"}]}}`))
	f.Add([]byte(`{"resourceType":"AllergyIntolerance","category":["food"]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		sec, cats, ok := ConsentCodes(data)
		if ok && !dupOrCaseVariant(data) {
			rs, rc, rok := consentCodesRef(data)
			if !rok || !slices.Equal(sec, rs) || !slices.Equal(cats, rc) {
				t.Fatalf("got %q %q, reference %q %q %v", sec, cats, rs, rc, rok)
			}
		}
		if _, err := Parse(data); err == nil && !ok {
			t.Fatal("a resource Parse accepts is unreadable")
		}
	})
}

func BenchmarkConsentCodes(b *testing.B) {
	_, obs := syntheaBundle(b)
	b.Run("scan", func(b *testing.B) {
		for b.Loop() {
			if _, _, ok := ConsentCodes(obs); !ok {
				b.Fatal("unreadable")
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) { // what records.classOf did before
		var it struct {
			Meta struct {
				Security []struct {
					Code string `json:"code"`
				} `json:"security"`
			} `json:"meta"`
			Category []struct {
				Coding []struct {
					Code string `json:"code"`
				} `json:"coding"`
			} `json:"category"`
		}
		for b.Loop() {
			_ = json.Unmarshal(obs, &it)
		}
	})
}
