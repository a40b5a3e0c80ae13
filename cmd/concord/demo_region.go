package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/concord-hie/concord/directory"
	"github.com/concord-hie/concord/documents"
	"github.com/concord-hie/concord/exchange"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/devoidc"
	"github.com/concord-hie/concord/internal/errs"
	mpistore "github.com/concord-hie/concord/mpi/store"
	"github.com/concord-hie/concord/portal"
)

// demoPassword is the password of every demo login (development provider only).
const demoPassword = "concord-demo"

// demoOTP is the demo staff logins' one-time code, the second factor the development
// provider asks staff for after the password (staff must sign in with one).
const demoOTP = "246810"

type demoMember struct {
	ID, Name, OID string
	MRNPrefix     string
	NPI           string // a valid (check-digit) but invented organizational NPI
}

type demoPerson struct {
	Given, Family, Gender, BirthDate string
	Street, City, ZIP, Phone, SSN    string
	Members                          []int // indexes into region.members that know this person
	Login                            string
}

type demoStaff struct {
	Login, First, Last string
	Role               portal.Role
	Member             int
}

type region struct {
	seedN   int64
	members []demoMember
	persons []demoPerson
	staff   []demoStaff
}

// demoPersons is the size of the demo region.
const demoPersons = 36

// demoRegion builds the synthetic region deterministically from seed.
func demoRegion(seed int64) region { return sizedRegion(seed, demoPersons) }

// sizedRegion is the demo region with n people (at least the demo's): the demo's people
// first, then more drawn the same way from the same seed, so the same seed and size give the
// same region byte for byte. Drawn people differ in name or birth date, so the MPI keeps
// them apart. People beyond the demo's take their family name from a wider list of 46
// (regionFamilies), so a family is as common in a big region as in benchmarks.md's, which
// clones 46 Synthea patients: about 2 % of people each, not the demo list's 6 %.
func sizedRegion(seed int64, n int) region {
	n = max(n, demoPersons)
	r := region{seedN: seed}
	r.members = []demoMember{
		{"riverside-family-clinic", "Riverside Family Clinic", "urn:oid:2.16.840.1.113883.3.9101", "RFC", "1122334455"},
		{"lakeside-general-hospital", "Lakeside General Hospital", "urn:oid:2.16.840.1.113883.3.9102", "LGH", "1500000009"},
		{"northside-reference-laboratory", "Northside Reference Laboratory", "urn:oid:2.16.840.1.113883.3.9103", "NRL", "1011011016"},
	}
	rng := mrand.New(mrand.NewPCG(uint64(seed), 0x636f6e636f7264))
	given := []string{"Maria", "James", "Aisha", "Wei", "Olivia", "Mateo", "Grace", "Samuel", "Priya", "Daniel", "Elena", "Marcus", "Hannah", "Tomas", "Zoe", "Kofi", "Lena", "Omar", "Ruth", "Felix"}
	family := []string{"Garcia", "Nguyen", "Johnson", "Patel", "Kowalski", "Haddad", "Smith", "Okafor", "Lindqvist", "Moreno", "Chen", "Baker", "Adeyemi", "Novak", "Murphy", "Rossi"}
	r.persons = append(r.persons,
		demoPerson{Given: "Ana", Family: "Rivera", Gender: "female", BirthDate: "1984-03-12", Members: []int{0, 1, 2}, Login: "ana",
			Street: "418 Willow Creek Rd", City: "Riverside", ZIP: "92501", Phone: "951-555-0142", SSN: "523-41-7789"},
		demoPerson{Given: "Ben", Family: "Okafor", Gender: "male", BirthDate: "1957-11-02", Members: []int{0, 2}, Login: "ben",
			Street: "77 Harbor View Dr", City: "Lakeside", ZIP: "92040", Phone: "619-555-0199", SSN: "601-22-4518"},
	)
	streets := []string{"Oak St", "Maple Ave", "Cedar Ln", "Pine Rd", "Elm Dr", "Birch Ct", "Walnut Way", "Spruce Blvd"}
	seen := map[string]bool{}
	for len(r.persons) < n {
		fams := family
		if len(r.persons) >= demoPersons {
			fams = regionFamilies
		}
		p := demoPerson{Given: given[rng.IntN(len(given))], Family: fams[rng.IntN(len(fams))],
			BirthDate: fmt.Sprintf("%04d-%02d-%02d", 1935+rng.IntN(70), 1+rng.IntN(12), 1+rng.IntN(28))}
		k := p.Given + "|" + p.Family + "|" + p.BirthDate
		if seen[k] {
			continue
		}
		seen[k] = true
		p.Gender = []string{"female", "male"}[rng.IntN(2)]
		p.Street = fmt.Sprintf("%d %s", 100+rng.IntN(9800), streets[rng.IntN(len(streets))])
		p.City, p.ZIP = "Riverside", fmt.Sprintf("925%02d", rng.IntN(100))
		p.Phone = fmt.Sprintf("951-555-%04d", rng.IntN(10000))
		p.SSN = fmt.Sprintf("%03d-%02d-%04d", 100+rng.IntN(500), 10+rng.IntN(89), 1000+rng.IntN(8999))
		switch n := rng.IntN(10); {
		case n < 4:
			p.Members = []int{rng.IntN(3)}
		case n < 8:
			a := rng.IntN(3)
			p.Members = []int{a, (a + 1 + rng.IntN(2)) % 3}
		default:
			p.Members = []int{0, 1, 2}
		}
		r.persons = append(r.persons, p)
	}
	r.staff = []demoStaff{
		{"dr.riverside", "Nia", "Campbell", portal.RoleClinician, 0},
		{"dr.lakeside", "Theo", "Marsh", portal.RoleClinician, 1},
		{"dr.northside", "Ines", "Duarte", portal.RoleClinician, 2},
		{"privacy", "Robin", "Hale", portal.RoleOfficer, 1},
	}
	return r
}

// regionFamilies are the family names of the people a bigger region adds to the demo's:
// the demo's 16 and 30 more, 46 in all.
var regionFamilies = []string{"Garcia", "Nguyen", "Johnson", "Patel", "Kowalski", "Haddad", "Smith", "Okafor",
	"Lindqvist", "Moreno", "Chen", "Baker", "Adeyemi", "Novak", "Murphy", "Rossi",
	"Williams", "Brown", "Jones", "Miller", "Davis", "Rodriguez", "Martinez", "Hernandez", "Lopez", "Wilson",
	"Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin", "Lee", "Thompson", "White", "Harris",
	"Clark", "Lewis", "Robinson", "Walker", "Young", "Allen", "King", "Wright", "Scott", "Torres"}

// users returns the logins of the embedded development OIDC provider.
func (r region) users() []devoidc.User {
	var us []devoidc.User
	for _, p := range r.persons {
		if p.Login != "" {
			us = append(us, devoidc.User{Subject: "demo-" + p.Login, Username: p.Login, Password: demoPassword, FirstName: p.Given, LastName: p.Family, Email: p.Login + "@patients.concord.test"})
		}
	}
	for _, s := range r.staff {
		us = append(us, devoidc.User{Subject: "demo-" + s.Login, Username: s.Login, Password: demoPassword, FirstName: s.First, LastName: s.Last, Email: s.Login + "@staff.concord.test", OTP: demoOTP})
	}
	return us
}

type labTest struct {
	LOINC, Display, Unit string
	Low, High, Mean, SD  float64
	Decimals             int
}

var demoLabs = []labTest{
	{"2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", 70, 99, 96, 14, 0},
	{"4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 4.0, 5.6, 5.7, 0.6, 1},
	{"2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 0.6, 1.2, 0.95, 0.2, 2},
	{"2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", 3.5, 5.1, 4.3, 0.45, 1},
	{"2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", 136, 145, 140, 2.5, 0},
	{"13457-7", "Cholesterol in LDL [Mass/volume] in Serum or Plasma by calculation", "mg/dL", 0, 99, 112, 25, 0},
	{"718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 12.0, 17.5, 13.9, 1.3, 1},
}

// seed loads the region through the stores, once: a second run finds the members and only
// refreshes the login enrolments. It returns whether it created the region.
func (r region) seed(ctx context.Context, m *Main) (bool, error) {
	created := false
	if _, err := m.directory.Member(ctx, r.members[0].ID); errs.CodeOf(err) == errs.NotFound {
		if err := r.seedRecords(ctx, m); err != nil {
			return false, err
		}
		created = true
	} else if err != nil {
		return false, err
	} else if err := r.ensureClients(ctx, m); err != nil {
		return false, err
	} else if err := r.seedDirectory(ctx, m); err != nil { // a region seeded before NPIs and endpoints
		return false, err
	}
	if m.devOIDC == nil {
		return created, nil
	}
	iss := m.devOIDC.Issuer()
	for i, p := range r.persons {
		if p.Login == "" {
			continue
		}
		src, err := m.mpi.SourceByIdentifier(ctx, nil, r.members[p.Members[0]].OID, r.mrn(p.Members[0], i))
		if err != nil {
			return created, err
		}
		if err := m.mpi.Enrol(ctx, iss, "demo-"+p.Login, src.PersonID, "demo-seed"); err != nil && errs.CodeOf(err) != errs.Conflict {
			return created, err
		}
		if i == 0 && created {
			if err := r.seedMessages(ctx, m, iss, p, string(src.PersonID)); err != nil {
				return created, err
			}
			if err := r.seedDocuments(ctx, m, i); err != nil {
				return created, err
			}
			if err := r.seedSummary(ctx, m, i); err != nil {
				return created, err
			}
		}
	}
	for _, s := range r.staff {
		err := m.staff.AddStaff(ctx, iss, "demo-"+s.Login, portal.Staff{Role: s.Role, Org: r.members[s.Member].ID, Name: s.First + " " + s.Last})
		if err != nil && errs.CodeOf(err) != errs.Conflict {
			return created, err
		}
	}
	if created {
		if err := r.seedCaregiver(ctx, m, iss); err != nil {
			return created, err
		}
	}
	return created, nil
}

// seedDirectory gives every demo member its NPI and publishes its FHIR base and MLLP
// receiver (invented .example addresses), so GET /fhir/Organization and /fhir/Endpoint show
// a directory as standards.md §8 has it. Both are idempotent; an endpoint is published only
// where the member never had one at that type and address, so a restart keeps what the
// operator changed with concord member endpoint (a status, payload types, a removal).
func (r region) seedDirectory(ctx context.Context, m *Main) error {
	for _, dm := range r.members {
		if err := m.directory.SetNPI(ctx, dm.ID, dm.NPI); err != nil {
			return fmt.Errorf("demo member %s NPI: %w", dm.ID, err)
		}
		// The v2 message types (HL7 table 0076) it receives: a laboratory orders, the others
		// results and admissions.
		v2 := []string{"ADT", "ORU"}
		if strings.HasSuffix(dm.ID, "-laboratory") {
			v2 = []string{"OML", "ORM"}
		}
		var payloads []directory.PayloadType
		for _, code := range v2 {
			payloads = append(payloads, directory.PayloadType{System: "http://terminology.hl7.org/CodeSystem/v2-0076", Code: code})
		}
		for _, e := range []directory.PublishedEndpoint{
			{ConnectionType: directory.ConnectionFHIRRest, Address: "https://fhir." + dm.ID + ".example/r4"},
			{ConnectionType: directory.ConnectionMLLP, Address: "mllp://hl7." + dm.ID + ".example:2575", PayloadTypes: payloads},
		} {
			if _, err := m.directory.SeedEndpoint(ctx, dm.ID, e); err != nil {
				return fmt.Errorf("demo member %s endpoint: %w", dm.ID, err)
			}
		}
	}
	return nil
}

func (r region) mrn(member, person int) string {
	return fmt.Sprintf("%s-%05d", r.members[member].MRNPrefix, 10000+person*37+member)
}

// demoClientScopes are the demo member clients' registered scopes: the default, and bulk
// export by name (a wildcard never grants it) so the demo can try Group/{id}/$export.
var demoClientScopes = append(slices.Clone(directory.DefaultScopes), exchange.ScopeBulkExport)

// ensureClients gives every demo member a client system whose private key is in
// DATA_DIR/demo-clients, registering a new one for each member whose file is missing (a
// fresh data dir beside an already seeded database) or names a client the database does
// not know (a database dropped and seeded again beside an old data dir), so the banner's
// promise holds.
func (r region) ensureClients(ctx context.Context, m *Main) error {
	keyDir := filepath.Join(m.cfg.DataDir, "demo-clients")
	if err := os.MkdirAll(keyDir, 0o700); err != nil {
		return err
	}
	for _, dm := range r.members {
		path := filepath.Join(keyDir, dm.ID+".json")
		if b, err := os.ReadFile(path); err == nil {
			var f struct {
				ClientID string `json:"client_id"`
			}
			if json.Unmarshal(b, &f) == nil {
				_, err := m.directory.Client(ctx, f.ClientID)
				if err == nil {
					continue
				}
				if errs.CodeOf(err) != errs.NotFound {
					return err
				}
			}
		}
		priv, pub, err := newClientKey(dm.ID)
		if err != nil {
			return err
		}
		c, err := m.directory.AddClient(ctx, dm.ID, pub, demoClientScopes, nil)
		if err != nil {
			return err
		}
		creds, _ := json.MarshalIndent(struct {
			ClientID string          `json:"client_id"`
			TokenURL string          `json:"token_url"`
			Key      json.RawMessage `json:"private_jwk"`
		}{c.ID, m.cfg.BaseURL + "/token", priv}, "", "  ")
		if err := os.WriteFile(path, creds, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func (r region) seedRecords(ctx context.Context, m *Main) error {
	rng := mrand.New(mrand.NewPCG(uint64(r.seedN), 0x6c616273))
	for _, dm := range r.members {
		got, err := m.directory.AddMember(ctx, dm.Name, dm.OID)
		if err != nil {
			return err
		}
		if got.ID != dm.ID {
			return fmt.Errorf("demo member %s registered as %s", dm.ID, got.ID)
		}
	}
	if err := r.ensureClients(ctx, m); err != nil {
		return err
	}
	if err := r.seedDirectory(ctx, m); err != nil {
		return err
	}
	// Each member's HL7 v2 feed may connect from loopback and is known by its MSH-4.
	if err := m.seedDemoHL7(ctx, r.members); err != nil {
		return err
	}
	now := time.Now().UTC()
	// People go in chunks, one transaction each, with statistics refreshed between them: in
	// one transaction a region of thousands was matched with the plans of empty tables.
	const chunk = 500
	for from := 0; from < len(r.persons); from += chunk {
		if from > 0 {
			if err := m.analyze(ctx); err != nil {
				return err
			}
		}
		if err := r.seedPeople(ctx, m, rng, now, from, min(from+chunk, len(r.persons))); err != nil {
			return err
		}
	}
	return nil
}

// seedPeople stores people [from, to) of the region with their labs in one transaction.
func (r region) seedPeople(ctx context.Context, m *Main, rng *mrand.Rand, now time.Time, from, to int) error {
	return db.InTx(ctx, m.pool, func(tx db.Querier) error {
		for i := from; i < to; i++ {
			p := r.persons[i]
			var person mpistore.PersonID
			patientIDs := map[int]string{}
			for _, mi := range p.Members {
				dm := r.members[mi]
				res, err := fhir.Parse(patientJSON(p, dm, r.mrn(mi, i)))
				if err != nil {
					return err
				}
				st, err := m.fhir.Put(ctx, tx, store.Write{Resource: res, MemberID: dm.ID, At: now, Source: m.cfg.BaseURL + "/members/" + dm.ID,
					Tags: []fhir.Coding{{System: "https://concord.example/fhir/source-member", Code: dm.ID, Display: dm.Name}}})
				if err != nil {
					return err
				}
				// Every record goes through the online matcher, as a member's feed would.
				link, err := m.matcher.LinkPatient(ctx, tx, dm.ID, dm.OID, r.mrn(mi, i), st.ID, res.Bytes())
				if err != nil {
					return err
				}
				if person != "" && link.Source.PersonID != person {
					return fmt.Errorf("demo person %d: the MPI did not link member %s's record (%s, score %.1f)", i, dm.ID, link.Outcome, link.Score)
				}
				person = link.Source.PersonID
				patientIDs[mi] = st.ID
			}
			// Four visits over two years; each panel comes from one member that knows the person.
			drift := rng.NormFloat64()
			for v := 0; v < 4; v++ {
				at := now.AddDate(0, -6*(3-v), -rng.IntN(20)).Truncate(time.Minute)
				mi := p.Members[v%len(p.Members)]
				dm := r.members[mi]
				for _, t := range demoLabs {
					if rng.IntN(4) == 0 {
						continue
					}
					val := t.Mean + t.SD*(0.6*drift+0.25*float64(v-2)*drift+0.5*rng.NormFloat64())
					if val < 0 {
						val = t.Mean / 3
					}
					res, err := fhir.Parse(observationJSON(t, val, at, patientIDs[mi]))
					if err != nil {
						return err
					}
					_, err = m.fhir.Put(ctx, tx, store.Write{Resource: res, MemberID: dm.ID, PatientID: patientIDs[mi], At: now,
						Source: m.cfg.BaseURL + "/members/" + dm.ID,
						Tags:   []fhir.Coding{{System: "https://concord.example/fhir/source-member", Code: dm.ID, Display: dm.Name}}})
					if err != nil {
						return err
					}
				}
			}
		}
		return nil
	})
}

func patientJSON(p demoPerson, dm demoMember, mrn string) []byte {
	type ident struct {
		System string `json:"system"`
		Value  string `json:"value"`
	}
	type name struct {
		Family string   `json:"family"`
		Given  []string `json:"given"`
	}
	type address struct {
		Line       []string `json:"line"`
		City       string   `json:"city"`
		State      string   `json:"state"`
		PostalCode string   `json:"postalCode"`
	}
	type telecom struct {
		System string `json:"system"`
		Value  string `json:"value"`
		Use    string `json:"use"`
	}
	b, _ := json.Marshal(struct {
		ResourceType string    `json:"resourceType"`
		Identifier   []ident   `json:"identifier"`
		Name         []name    `json:"name"`
		Telecom      []telecom `json:"telecom"`
		Gender       string    `json:"gender"`
		BirthDate    string    `json:"birthDate"`
		Address      []address `json:"address"`
	}{"Patient", []ident{{dm.OID, mrn}, {"http://hl7.org/fhir/sid/us-ssn", p.SSN}}, []name{{p.Family, []string{p.Given}}},
		[]telecom{{"phone", p.Phone, "home"}}, p.Gender, p.BirthDate, []address{{[]string{p.Street}, p.City, "CA", p.ZIP}}})
	return b
}

// LabObservation renders a laboratory Observation for a member's Patient, as a member
// system would send it. Tests and the demo share it.
func observationJSON(t labTest, val float64, at time.Time, patientID string) []byte {
	pow := math.Pow(10, float64(t.Decimals))
	val = math.Round(val*pow) / pow
	flag := "N"
	switch {
	case val > t.High:
		flag = "H"
	case val < t.Low:
		flag = "L"
	}
	num := func(f float64) json.RawMessage {
		return json.RawMessage(fmt.Sprintf("%.*f", t.Decimals, f))
	}
	if t.Decimals == 0 {
		num = func(f float64) json.RawMessage { return json.RawMessage(fmt.Sprintf("%.0f", f)) }
	}
	type coding struct {
		System  string `json:"system"`
		Code    string `json:"code"`
		Display string `json:"display,omitempty"`
	}
	type cc struct {
		Coding []coding `json:"coding"`
		Text   string   `json:"text,omitempty"`
	}
	type qty struct {
		Value  json.RawMessage `json:"value"`
		Unit   string          `json:"unit"`
		System string          `json:"system"`
		Code   string          `json:"code"`
	}
	type simpleQty struct {
		Value  json.RawMessage `json:"value"`
		Unit   string          `json:"unit"`
		System string          `json:"system"`
		Code   string          `json:"code"`
	}
	type rr struct {
		Low  *simpleQty `json:"low,omitempty"`
		High simpleQty  `json:"high"`
	}
	var low *simpleQty
	if t.Low > 0 {
		low = &simpleQty{num(t.Low), t.Unit, "http://unitsofmeasure.org", t.Unit}
	}
	b, _ := json.Marshal(struct {
		ResourceType string `json:"resourceType"`
		Status       string `json:"status"`
		Category     []cc   `json:"category"`
		Code         cc     `json:"code"`
		Subject      struct {
			Reference string `json:"reference"`
		} `json:"subject"`
		EffectiveDateTime string `json:"effectiveDateTime"`
		ValueQuantity     qty    `json:"valueQuantity"`
		Interpretation    []cc   `json:"interpretation"`
		ReferenceRange    []rr   `json:"referenceRange"`
	}{
		ResourceType: "Observation", Status: "final",
		Category: []cc{{Coding: []coding{{"http://terminology.hl7.org/CodeSystem/observation-category", "laboratory", "Laboratory"}}}},
		Code:     cc{Coding: []coding{{"http://loinc.org", t.LOINC, t.Display}}, Text: t.Display},
		Subject: struct {
			Reference string `json:"reference"`
		}{"Patient/" + patientID},
		EffectiveDateTime: at.Format(time.RFC3339),
		ValueQuantity:     qty{num(val), t.Unit, "http://unitsofmeasure.org", t.Unit},
		Interpretation:    []cc{{Coding: []coding{{"http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", flag, ""}}}},
		ReferenceRange:    []rr{{Low: low, High: simpleQty{num(t.High), t.Unit, "http://unitsofmeasure.org", t.Unit}}},
	})
	return b
}

// newClientKey makes an ES384 key pair for a demo member's client system: the private
// JWK (kept in the data dir, for trying the API) and the public JWKS (registered).
func newClientKey(kid string) (priv []byte, pub []byte, err error) {
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	jwk := jose.JSONWebKey{Key: k, KeyID: kid + "-1", Algorithm: string(jose.ES384), Use: "sig"}
	priv, err = jwk.MarshalJSON()
	if err != nil {
		return nil, nil, err
	}
	pub, err = json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk.Public()}})
	return priv, pub, err
}

// banner tells a new user where to go and how to sign in.
func (r region) banner(w io.Writer, m *Main, created bool) {
	state := "already seeded"
	if created {
		state = fmt.Sprintf("seeded %d members and %d people", len(r.members), len(r.persons))
	}
	fmt.Fprintf(w, "\nConcord demo is running (%s).\n\n", state)
	fmt.Fprintf(w, "  Portal      %s/\n  FHIR API    %s/fhir  (token endpoint %s/token)\n", m.cfg.BaseURL, m.cfg.BaseURL, m.cfg.BaseURL)
	if m.cfg.MLLPAddr != "" {
		fmt.Fprintf(w, "  HL7 v2      mllp://%s\n", m.cfg.MLLPAddr)
	}
	if m.devOIDC != nil {
		fmt.Fprintf(w, "\nDemo sign-ins (embedded OIDC provider at %s), password %q:\n", m.devOIDC.Issuer(), demoPassword)
		for _, p := range r.persons {
			if p.Login != "" {
				fmt.Fprintf(w, "  %-14s patient (%s %s)\n", p.Login, p.Given, p.Family)
			}
		}
		for _, s := range r.staff {
			fmt.Fprintf(w, "  %-14s %s at %s\n", s.Login, s.Role, r.members[s.Member].Name)
		}
		fmt.Fprintf(w, "Staff logins then ask for a second factor: the demo one-time code is %s.\n", demoOTP)
		// A region seeded by an earlier release has no caregiver grant: say so only when ben has one.
		if gs, err := portal.NewProxyStore(m.pool, nil).ActingFor(context.Background(), m.devOIDC.Issuer()+"|demo-"+r.persons[1].Login); err == nil && len(gs) > 0 {
			fmt.Fprintf(w, "%s is also %s's caregiver: after signing in, switch to %s's record at the top of the page.\n",
				r.persons[1].Login, r.persons[0].Given, r.persons[0].Given)
		}
	}
	fmt.Fprintf(w, "\nMember client credentials for the FHIR API: %s\nPress Ctrl-C to stop.\n\n", filepath.Join(m.cfg.DataDir, "demo-clients"))
}

var _ = directory.Member{}

// seedMessages starts one secure-message thread between the first demo patient (ana) and
// her first clinic, answered by that clinic's demo clinician, so the feature has something
// to show on a new region.
func (r region) seedMessages(ctx context.Context, m *Main, iss string, p demoPerson, personID string) error {
	member := r.members[p.Members[0]].ID
	ms := portal.NewMessageStore(m.pool)
	now := time.Now()
	id, err := ms.CreateThread(ctx, personID, member, "Question about my cholesterol results",
		portal.Message{AuthorLogin: iss + "|demo-" + p.Login, AuthorName: p.Given,
			Body: "Hello, my last lab results show a high LDL. Should I change my diet or come in for a visit?"}, now.Add(-26*time.Hour))
	if err != nil {
		return err
	}
	for _, st := range r.staff {
		if st.Role == portal.RoleClinician && r.members[st.Member].ID == member {
			v := portal.Viewer{Role: portal.RoleClinician, Org: member, Actor: iss + "|demo-" + st.Login}
			return ms.Reply(ctx, v, id, portal.Message{AuthorLogin: v.Actor, AuthorName: "Dr. " + st.First + " " + st.Last,
				Body: "Hi " + p.Given + ", thanks for writing. Diet changes are a good start; let's recheck in three months. Please book a visit at the front desk."}, now.Add(-2*time.Hour))
		}
	}
	return nil
}

// demoDischarge is the C-CDA discharge summary the first demo patient's first clinic sends.
const demoDischarge = `<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3">
  <title>Discharge Summary</title>
  <effectiveTime value="%s"/>
  <author><assignedAuthor><representedOrganization><name>%s</name></representedOrganization></assignedAuthor></author>
  <custodian><assignedCustodian><representedCustodianOrganization><name>%s</name></representedCustodianOrganization></assignedCustodian></custodian>
  <component><structuredBody>
    <component><section><title>Reason for admission</title><text><paragraph>Chest pain, ruled out for acute coronary syndrome.</paragraph></text></section></component>
    <component><section><title>Medications at discharge</title><text><table><thead><tr><th>Medication</th><th>Dose</th><th>Instructions</th></tr></thead>
      <tbody><tr><td>Atorvastatin</td><td>20 mg</td><td>Once daily at night</td></tr><tr><td>Aspirin</td><td>81 mg</td><td>Once daily</td></tr></tbody></table></text></section></component>
    <component><section><title>Follow-up</title><text><list><item>See your primary care clinician within 2 weeks.</item><item>Repeat lipid panel in 3 months.</item></list></text></section></component>
  </structuredBody></component>
</ClinicalDocument>`

// seedDocuments gives demo person i a C-CDA discharge summary from their first clinic, the
// same summary as their second clinic's system rendered it in plain text (a near-duplicate:
// listed with the original as "2 copies from 2 organizations"), and one visit note that their
// first two clinics both sent (identical bytes: stored once, listed once with both
// sources), through the documents service as a member's upload would go.
func (r region) seedDocuments(ctx context.Context, m *Main, i int) error {
	p := r.persons[i]
	now := time.Now().UTC()
	first := r.members[p.Members[0]]
	note := []byte("Visit note\n\nFollow-up for cholesterol. Discussed diet and exercise; patient walks 30 minutes most days.\nPlan: continue atorvastatin, recheck lipids in 3 months.\n")
	type doc struct {
		member      int
		code, title string
		contentType string
		data        []byte
		at          time.Time
		author      string // an Organization reference, or ""
	}
	discharged := now.AddDate(0, -2, 0)
	hospital := "Organization/" + directory.OrganizationID(first.ID)
	docs := []doc{{p.Members[0], "18842-5", "Discharge summary", "application/xml",
		[]byte(fmt.Sprintf(demoDischarge, discharged.Format("20060102"), first.Name, first.Name)), discharged, hospital}}
	if len(p.Members) > 1 {
		docs = append(docs, doc{p.Members[1], "18842-5", "Discharge summary", "text/plain", []byte("Discharge summary from " + first.Name +
			" (as received)\n\nAdmitted for chest pain; myocardial infarction ruled out.\nMedications: atorvastatin 20 mg daily.\nFollow up with your primary care clinic in 2 weeks.\n"),
			discharged.Add(26 * time.Hour), hospital})
	}
	for _, mi := range p.Members[:min(2, len(p.Members))] {
		docs = append(docs, doc{mi, "11506-3", "Progress note", "text/plain", note, now.AddDate(0, 0, -20), ""})
	}
	return db.InTx(ctx, m.pool, func(tx db.Querier) error {
		for _, d := range docs {
			dm := r.members[d.member]
			src, err := m.mpi.SourceByIdentifier(ctx, tx, dm.OID, r.mrn(d.member, i))
			if err != nil {
				return err
			}
			dr := map[string]any{
				"resourceType": "DocumentReference", "status": "current",
				"type":     map[string]any{"coding": []any{map[string]any{"system": "http://loinc.org", "code": d.code, "display": d.title}}},
				"category": []any{map[string]any{"coding": []any{map[string]any{"system": "http://loinc.org", "code": "LP173421-1", "display": "Report"}}}},
				"subject":  map[string]any{"reference": "Patient/" + src.PatientID},
				"date":     d.at.Format(time.RFC3339),
				"content":  []any{map[string]any{"attachment": map[string]any{"contentType": d.contentType, "data": d.data}}},
			}
			if d.author != "" { // the clinical day is the discharge's, whoever sent it on
				dr["author"] = []any{map[string]any{"reference": d.author}}
				dr["context"] = map[string]any{"period": map[string]any{"start": discharged.Format(time.RFC3339)}}
			}
			raw, err := json.Marshal(dr)
			if err != nil {
				return err
			}
			res, err := fhir.Parse(raw)
			if err != nil {
				return err
			}
			id := store.NewID()
			if res, err = m.docs.IngestResource(ctx, tx, documents.Intake{MemberID: dm.ID, PatientID: src.PatientID, ID: id, Resource: res}); err != nil {
				return err
			}
			if _, err := m.fhir.Put(ctx, tx, store.Write{Resource: res, ID: id, MemberID: dm.ID, PatientID: src.PatientID, At: now,
				Source: m.cfg.BaseURL + "/members/" + dm.ID,
				Tags:   []fhir.Coding{{System: "https://concord.example/fhir/source-member", Code: dm.ID, Display: dm.Name}}}); err != nil {
				return err
			}
		}
		return nil
	})
}

// seedCaregiver makes the second demo patient (ben) a caregiver of the first (ana), as if
// ana had invited him and he had accepted, so the caregiver view has something to show.
func (r region) seedCaregiver(ctx context.Context, m *Main, iss string) error {
	person := func(i int) (string, error) {
		p := r.persons[i]
		src, err := m.mpi.SourceByIdentifier(ctx, nil, r.members[p.Members[0]].OID, r.mrn(p.Members[0], i))
		return string(src.PersonID), err
	}
	ana, err := person(0)
	if err != nil {
		return err
	}
	ben, err := person(1)
	if err != nil {
		return err
	}
	var tok [32]byte
	if _, err := rand.Read(tok[:]); err != nil {
		return err
	}
	ps, now := portal.NewProxyStore(m.pool, m.audit), time.Now()
	a, b := r.persons[0], r.persons[1]
	if _, err := ps.Invite(ctx, portal.Viewer{PersonID: ana, Role: portal.RolePatient, Actor: iss + "|demo-" + a.Login},
		portal.ProxyGrant{PatientName: a.Given + " " + a.Family, CaregiverName: b.Given + " " + b.Family, Relationship: "caregiver"}, tok[:], now); err != nil {
		return err
	}
	_, err = ps.Accept(ctx, portal.Viewer{PersonID: ben, Role: portal.RolePatient, Actor: iss + "|demo-" + b.Login}, b.Given+" "+b.Family, tok[:], now)
	return err
}

// seedSummary gives demo person i (ana) problems, medications, an allergy and
// immunizations from two of her clinics, one problem labelled mental health (PSY), so the
// health summary has something to show and a caregiver's view visibly leaves it out.
func (r region) seedSummary(ctx context.Context, m *Main, i int) error {
	p := r.persons[i]
	now := time.Now().UTC()
	day := func(months int) string { return now.AddDate(0, -months, 0).Format("2006-01-02") }
	first, second := p.Members[0], p.Members[min(1, len(p.Members)-1)]
	cc := func(system, code, display string) string {
		return `{"coding":[{"system":"` + system + `","code":"` + code + `","display":"` + display + `"}],"text":"` + display + `"}`
	}
	const sct, rx, cvx = "http://snomed.info/sct", "http://www.nlm.nih.gov/research/umls/rxnorm", "http://hl7.org/fhir/sid/cvx"
	active := `{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active","display":"Active"}]}`
	items := []struct {
		member int
		body   string // without subject/patient
		label  string
	}{
		{first, `"resourceType":"Condition","clinicalStatus":` + active + `,"code":` + cc(sct, "55822004", "Hyperlipidemia") + `,"onsetDateTime":"` + day(26) + `"`, ""},
		{second, `"resourceType":"Condition","clinicalStatus":` + active + `,"code":` + cc(sct, "367498001", "Seasonal allergic rhinitis") + `,"onsetDateTime":"` + day(40) + `"`, ""},
		{second, `"resourceType":"Condition","clinicalStatus":` + active + `,"code":` + cc(sct, "21897009", "Generalized anxiety disorder") + `,"onsetDateTime":"` + day(14) + `"`, "PSY"},
		{first, `"resourceType":"MedicationRequest","status":"active","intent":"order","medicationCodeableConcept":` + cc(rx, "617310", "Atorvastatin 20 mg oral tablet") + `,"authoredOn":"` + day(26) + `","dosageInstruction":[{"text":"Once daily at night"}]`, ""},
		{second, `"resourceType":"MedicationRequest","status":"active","intent":"order","medicationCodeableConcept":` + cc(rx, "1014678", "Cetirizine 10 mg oral tablet") + `,"authoredOn":"` + day(40) + `","dosageInstruction":[{"text":"Once daily as needed in allergy season"}]`, ""},
		{second, `"resourceType":"AllergyIntolerance","clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical","code":"active","display":"Active"}]},"criticality":"high","code":` + cc(rx, "7980", "Penicillin G") + `,"recordedDate":"` + day(60) + `","reaction":[{"manifestation":[` + cc(sct, "247472004", "Hives") + `]}]`, ""},
		{first, `"resourceType":"Immunization","status":"completed","vaccineCode":` + cc(cvx, "158", "Influenza, injectable, quadrivalent") + `,"occurrenceDateTime":"` + day(2) + `"`, ""},
		{second, `"resourceType":"Immunization","status":"completed","vaccineCode":` + cc(cvx, "309", "COVID-19 vaccine, updated") + `,"occurrenceDateTime":"` + day(3) + `"`, ""},
	}
	return db.InTx(ctx, m.pool, func(tx db.Querier) error {
		for _, it := range items {
			dm := r.members[it.member]
			src, err := m.mpi.SourceByIdentifier(ctx, tx, dm.OID, r.mrn(it.member, i))
			if err != nil {
				return err
			}
			ref := "subject"
			if strings.Contains(it.body, `"AllergyIntolerance"`) || strings.Contains(it.body, `"Immunization"`) {
				ref = "patient"
			}
			res, err := fhir.Parse([]byte("{" + it.body + `,"` + ref + `":{"reference":"Patient/` + src.PatientID + `"}}`))
			if err != nil {
				return err
			}
			w := store.Write{Resource: res, MemberID: dm.ID, PatientID: src.PatientID, At: now, Source: m.cfg.BaseURL + "/members/" + dm.ID,
				Tags: []fhir.Coding{{System: "https://concord.example/fhir/source-member", Code: dm.ID, Display: dm.Name}}}
			if it.label != "" {
				w.Security = []fhir.Coding{{System: "http://terminology.hl7.org/CodeSystem/v3-ActCode", Code: it.label}}
			}
			if _, err := m.fhir.Put(ctx, tx, w); err != nil {
				return err
			}
		}
		return nil
	})
}
