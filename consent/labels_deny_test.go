package consent

import "testing"

// TestDenyLabelCoversSpecificCodes: a patient's explicit deny of substance-use records
// (securityLabel ETH) also denies an item whose member sent the more specific code ETHUD.
// Decide reads ETHUD as ETH when gating a permit (labelParents), so a deny must match the
// same way, or a permit that releases ETH would disclose the item (consent review).
func TestDenyLabelCoversSpecificCodes(t *testing.T) {
	denyETH := patient("deny-eth", OptOut, Provision{Type: Deny, SecurityLabels: []string{LabelSubstanceUse}})
	all := append(append([]Directive(nil), releaseAll...), denyETH)
	if d := Decide(all, read("org-b", PurposeTreatment, LabelSubstanceUse)); d.Allow {
		t.Fatalf("ETH item: %v; want denied by the patient's deny of ETH", d.Reason)
	}
	for _, code := range []string{"ETHUD", "OPIOIDUD", "SUD"} {
		if d := Decide(all, read("org-b", PurposeTreatment, code)); d.Allow {
			t.Errorf("item labelled %s (a kind of ETH): %v by %s; want denied: the patient's explicit deny of ETH wins", code, d.Reason, d.By)
		}
	}
	denyPSY := patient("deny-psy", OptOut, Provision{Type: Deny, SecurityLabels: []string{LabelMentalHealth}})
	all = append(append([]Directive(nil), releaseAll...), denyPSY)
	if d := Decide(all, read("org-b", PurposeTreatment, "PSYTHPN")); d.Allow {
		t.Errorf("item labelled PSYTHPN: %v by %s; want denied by the deny of PSY", d.Reason, d.By)
	}
}

// TestBTGDissentCoversSpecificCodes: the patient's "never release substance-use records,
// not even in an emergency" (deny ETH for BTG) also stops an emergency read of an item
// labelled ETHUD.
func TestBTGDissentCoversSpecificCodes(t *testing.T) {
	dissent := patient("no-btg-eth", OptOut, Provision{Type: Deny, Purposes: []string{PurposeBreakGlass}, SecurityLabels: []string{LabelSubstanceUse}})
	all := append(append([]Directive(nil), defaults...), dissent)
	r := with(read("org-b", PurposeBreakGlass, LabelSubstanceUse), func(r *Request) { r.BreakGlass = btg(true) })
	if d := Decide(all, r); d.Allow {
		t.Fatalf("ETH item under BTG: %v; want the dissent to deny", d.Reason)
	}
	r.Labels = []string{"ETHUD"}
	if d := Decide(all, r); d.Allow {
		t.Fatalf("ETHUD item under BTG: %v; want the dissent that excludes BTG to deny", d.Reason)
	}
}
