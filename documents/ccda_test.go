package documents_test

import (
	"strings"
	"testing"

	"github.com/concord-hie/concord/documents"
	"github.com/concord-hie/concord/internal/errs"
)

const ccda = `<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3">
  <title>Discharge Summary</title>
  <effectiveTime value="20240131"/>
  <recordTarget><patientRole><patient><name><given>Canary</given><family>Patientname</family></name></patient></patientRole></recordTarget>
  <author><assignedAuthor><representedOrganization><name>General Hospital</name></representedOrganization></assignedAuthor></author>
  <custodian><assignedCustodian><representedCustodianOrganization><name>Regional HIE</name></representedCustodianOrganization></assignedCustodian></custodian>
  <component><structuredBody>
    <component><section><title>Allergies</title><text><table><thead><tr><th>Substance</th><th>Reaction</th></tr></thead>
      <tbody><tr><td>Penicillin</td><td>Hives &lt;script&gt;alert(1)&lt;/script&gt;</td></tr></tbody></table></text></section></component>
    <component><section><title>Plan</title><text><paragraph>Rest <b>and</b> fluids.</paragraph><list><item>Follow up in 2 weeks</item></list></text></section></component>
  </structuredBody></component>
</ClinicalDocument>`

func TestRenderCCDA(t *testing.T) {
	h, err := documents.RenderCCDA(strings.NewReader(ccda))
	if err != nil {
		t.Fatal(err)
	}
	s := string(h)
	for _, want := range []string{"<h2>Discharge Summary</h2>", "<dd>20240131</dd>", "<dd>General Hospital</dd>", "<dd>Regional HIE</dd>",
		"<h3>Allergies</h3>", "<th>Substance</th>", "<td>Penicillin</td>", "&lt;script&gt;", "<p>Rest and fluids.</p>", "<li>Follow up in 2 weeks</li>"} {
		if !strings.Contains(s, want) {
			t.Errorf("rendered HTML lacks %q:\n%s", want, s)
		}
	}
	for _, bad := range []string{"<script>", "Canary", "Patientname", "<b>"} {
		if strings.Contains(s, bad) {
			t.Errorf("rendered HTML contains %q", bad)
		}
	}
}

func TestRenderCCDARefusesDTDsAndEntities(t *testing.T) {
	for _, tt := range []struct{ name, doc string }{
		{"XXE file", `<?xml version="1.0"?><!DOCTYPE ClinicalDocument [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><ClinicalDocument xmlns="urn:hl7-org:v3"><title>&xxe;</title></ClinicalDocument>`},
		{"XXE http", `<?xml version="1.0"?><!DOCTYPE ClinicalDocument SYSTEM "http://127.0.0.1:1/evil.dtd"><ClinicalDocument xmlns="urn:hl7-org:v3"><title>x</title></ClinicalDocument>`},
		{"billion laughs", `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]><ClinicalDocument xmlns="urn:hl7-org:v3"><title>&lol3;</title></ClinicalDocument>`},
		{"lower-case doctype", `<!doctype x><ClinicalDocument xmlns="urn:hl7-org:v3"><title>x</title></ClinicalDocument>`},
		{"undeclared entity", `<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&lol;</title></ClinicalDocument>`},
		{"not a CDA", `<html><body>x</body></html>`},
		{"truncated", `<ClinicalDocument xmlns="urn:hl7-org:v3"><title>x</title>`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := documents.RenderCCDA(strings.NewReader(tt.doc)); !errs.Is(err, errs.Invalid) {
				t.Errorf("err = %v, want invalid", err)
			}
		})
	}
}
