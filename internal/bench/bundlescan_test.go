package bench

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestScanBundleAgreesWithEncodingJSON: on random Bundles whose strings hold brackets,
// quotes, escapes and the member names the scanner looks for, and whose resources have
// "entry" and "total" members of their own, scanBundle reports what encoding/json decodes;
// on every truncation of them it fails, as encoding/json does.
func TestScanBundleAgreesWithEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	nasty := []string{`{`, `}`, `[`, `]`, `"`, `\`, `"entry":[`, `"total":9`, `\u0022`, "é", "\n", ` `, `resourceType`, `:`}
	str := func() string {
		var b strings.Builder
		for range rng.IntN(6) {
			b.WriteString(nasty[rng.IntN(len(nasty))])
		}
		return b.String()
	}
	for n := range 500 {
		b := map[string]any{"resourceType": "Bundle", "type": "searchset", "id": str()}
		if rng.IntN(2) == 0 {
			b["total"] = rng.IntN(1000)
		}
		if rng.IntN(5) == 0 {
			b["resourceType"] = str()
		}
		if rng.IntN(5) == 0 {
			b["x"+str()] = []any{str(), map[string]any{"entry": []any{1, 2}}}
		}
		var entries []any
		for range rng.IntN(8) {
			entries = append(entries, map[string]any{
				"fullUrl":  str(),
				"resource": map[string]any{"resourceType": "Observation", "entry": []any{str(), map[string]any{"total": 3}}, "total": str(), "note": []any{str(), []any{str()}}},
				"search":   map[string]any{"mode": "match"},
			})
		}
		if entries != nil || rng.IntN(2) == 0 {
			b["entry"] = entries
		}
		body, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		if rng.IntN(3) == 0 {
			body = []byte(" \n" + strings.ReplaceAll(string(body), ",", " ,\n\t") + "\r\n")
		}
		var want struct {
			ResourceType string            `json:"resourceType"`
			Total        *int              `json:"total"`
			Entry        []json.RawMessage `json:"entry"`
		}
		if err := json.Unmarshal(body, &want); err != nil {
			t.Fatal(err)
		}
		rt, total, entries2, err := scanBundle(body)
		if err != nil || rt != want.ResourceType || entries2 != len(want.Entry) || (total == nil) != (want.Total == nil) || total != nil && *total != *want.Total {
			t.Fatalf("case %d: scanBundle(%s) = %q, %v, %d, %v; want %q, %v, %d", n, body, rt, total, entries2, err, want.ResourceType, want.Total, len(want.Entry))
		}
		cut := rng.IntN(len(body) - 1)
		if json.Valid(body[:cut]) {
			continue
		}
		if _, _, _, err := scanBundle(body[:cut]); err == nil && strings.TrimSpace(string(body[:cut])) != strings.TrimSpace(string(body)) {
			t.Fatalf("case %d: scanBundle accepted a truncation at %d: %s", n, cut, body[:cut])
		}
	}
}
