package consent

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// gen draws random directives and requests from a small vocabulary, so that provisions
// and requests often overlap.
type gen struct{ r *rand.Rand }

func newGen(seed uint64) gen { return gen{rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))} }

func (g gen) pick(xs ...string) string { return xs[g.r.IntN(len(xs))] }

func (g gen) some(xs ...string) []string {
	var out []string
	for _, x := range xs {
		if g.r.IntN(4) == 0 {
			out = append(out, x)
		}
	}
	return out
}

var (
	genOrgs     = []string{"org-a", "org-b", "org-c"}
	genPurposes = []string{PurposeTreatment, PurposeEmergencyTreatment, PurposePayment, PurposePublicHealth, PurposePatientRequest, PurposeBreakGlass}
	genLabels   = []string{LabelMentalHealth, LabelHIV, LabelSubstanceUse, LabelRestricted, LabelPart2}
	genRoles    = []string{RoleClinician, RolePatient, RoleProxy, RoleSystem}
)

func (g gen) period() Period {
	switch g.r.IntN(6) {
	case 0:
		return Period{End: at.Add(-time.Hour)}
	case 1:
		return Period{Start: at.Add(time.Hour)}
	case 2:
		return Period{Start: at.Add(-time.Hour), End: at.Add(time.Hour)}
	}
	return Period{}
}

// provision draws a provision; typ forces every node's type when not TypeUnset.
func (g gen) provision(depth int, typ ProvisionType) Provision {
	p := Provision{Type: typ, Period: g.period(), Purposes: g.some(genPurposes...), SecurityLabels: g.some(genLabels...)}
	if typ == TypeUnset && g.r.IntN(2) == 0 {
		p.Type = ProvisionType(1 + g.r.IntN(2))
	}
	for range g.r.IntN(3) {
		switch g.r.IntN(3) {
		case 0:
			p.Actors = append(p.Actors, orgActor(g.pick(genOrgs...)))
		case 1:
			p.Actors = append(p.Actors, Actor{Role: g.pick(genRoles...)})
		default:
			p.Actors = append(p.Actors, Actor{Role: ParticipationCustodian, Reference: "Organization/" + g.pick(genOrgs...)})
		}
	}
	if g.r.IntN(3) == 0 {
		p.Classes = []Class{{ResourceType: g.pick("Observation", "Condition")}}
	}
	if depth < 3 {
		for range g.r.IntN(3) {
			p.Provisions = append(p.Provisions, g.provision(depth+1, typ))
		}
	}
	return p
}

func (g gen) directive(i int, typ ProvisionType) Directive {
	d := Directive{ID: DirectiveID(fmt.Sprintf("d%03d", i)), Version: 1 + g.r.IntN(3), PersonID: "p1",
		Kind: KindPatient, PolicyRule: PolicyRule(g.pick(string(OptIn), string(OptOut))), Status: StatusActive,
		DateTime: madeOn, Provision: g.provision(0, typ)}
	if g.r.IntN(8) == 0 {
		d.Status = StatusInactive
	}
	if g.r.IntN(6) == 0 {
		d.Kind, d.PersonID = KindDefault, ""
	}
	return d
}

func (g gen) directives(n int) []Directive {
	ds := make([]Directive, n)
	for i := range ds {
		ds[i] = g.directive(i, TypeUnset)
	}
	if g.r.IntN(2) == 0 {
		ds = append(ds, defaults...)
	}
	return ds
}

func (g gen) request() Request {
	r := Request{Actor: "Practitioner/x", ActorRole: g.pick(genRoles...), Org: g.pick(genOrgs...),
		Purpose: g.pick(genPurposes...), PersonID: "p1", Custodian: g.pick(append(genOrgs, "")...),
		Class: Class{ResourceType: g.pick("Observation", "Condition", "")}, Labels: g.some(genLabels...), At: at}
	if r.Purpose == PurposeBreakGlass && g.r.IntN(4) != 0 {
		r.BreakGlass = btg(g.r.IntN(4) != 0)
	}
	return r
}

const propertyRuns = 3000

func TestPropertyAddingDenyNeverPermits(t *testing.T) {
	g := newGen(1)
	for i := range propertyRuns {
		ds, req := g.directives(g.r.IntN(4)), g.request()
		before := Decide(ds, req)
		if before.Allow {
			continue
		}
		deny := g.directive(900, Deny)
		deny.Provision.Type = Deny
		if after := Decide(append(ds, deny), req); after.Allow {
			t.Fatalf("run %d: adding a deny turned %v into %v (%s)", i, before.Reason, after.Reason, after.By)
		}
	}
}

func TestPropertyAddingPermitNeverDenies(t *testing.T) {
	g := newGen(2)
	for i := range propertyRuns {
		ds, req := g.directives(g.r.IntN(4)), g.request()
		before := Decide(ds, req)
		if !before.Allow {
			continue
		}
		permit := g.directive(901, Permit)
		permit.Provision.Provisions = nil // a flat permit: no nested exceptions
		if after := Decide(append(ds, permit), req); !after.Allow {
			t.Fatalf("run %d: adding a permit turned %v into %v (%s)", i, before.Reason, after.Reason, after.By)
		}
	}
}

func TestPropertyNoDirectivesDenies(t *testing.T) {
	g := newGen(3)
	for i := range propertyRuns {
		req := g.request()
		d := Decide(nil, req)
		// Break-the-glass with a valid declaration is the one permit that needs no directive.
		if d.Allow && !(req.Purpose == PurposeBreakGlass && d.Reason == BreakGlassOverride) {
			t.Fatalf("run %d: no directives gave %v", i, d.Reason)
		}
		if req.Purpose != PurposeBreakGlass && d.Reason != NoDirective {
			t.Fatalf("run %d: no directives gave reason %v, want %v", i, d.Reason, NoDirective)
		}
	}
}

func TestPropertyDeterministicAndOrderFree(t *testing.T) {
	g := newGen(4)
	for i := range propertyRuns {
		ds, req := g.directives(1+g.r.IntN(5)), g.request()
		want := Decide(ds, req)
		if again := Decide(ds, req); again != want {
			t.Fatalf("run %d: Decide not deterministic: %+v vs %+v", i, want, again)
		}
		shuffled := append([]Directive(nil), ds...)
		g.r.Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
		if got := Decide(shuffled, req); got != want {
			t.Fatalf("run %d: order changed the decision: %+v vs %+v", i, want, got)
		}
	}
}

// TestPropertyPermitNamesLabels checks the label rule from the outside: whenever a
// directive permits a labelled item, the deciding provision's path names each gating label.
func TestPropertyPermitNamesLabels(t *testing.T) {
	g := newGen(5)
	for i := range propertyRuns {
		ds, req := g.directives(1+g.r.IntN(4)), g.request()
		d := Decide(ds, req)
		if d.Reason != Permitted {
			continue
		}
		var dir *Directive
		for j := range ds {
			if ds[j].ID == d.By && ds[j].Version == d.Version {
				dir = &ds[j]
			}
		}
		named := namedOnPath(dir, d.Provision)
		for _, l := range req.Labels {
			if IsGatingLabel(l) && !named[l] {
				t.Fatalf("run %d: %s permitted an item labelled %s at %s without naming it", i, d.By, l, d.Provision)
			}
		}
	}
}

// namedOnPath collects the labels on the provision path (parsed independently of Decide).
func namedOnPath(d *Directive, path string) map[string]bool {
	named := map[string]bool{}
	p := &d.Provision
	for _, l := range p.SecurityLabels {
		named[l] = true
	}
	rest := path[len("provision"):]
	for rest != "" {
		var idx int
		n, _ := fmt.Sscanf(rest, ".provision[%d]", &idx)
		if n != 1 {
			break
		}
		p = &p.Provisions[idx]
		for _, l := range p.SecurityLabels {
			named[l] = true
		}
		rest = rest[len(fmt.Sprintf(".provision[%d]", idx)):]
	}
	return named
}

func BenchmarkDecide(b *testing.B) {
	// A typical patient: the two regional policies plus two directives of their own.
	ds := dirs(denyOrgB, permitBPSY)
	req := read("org-a", PurposeTreatment)
	b.ReportAllocs()
	for b.Loop() {
		_ = Decide(ds, req)
	}
}

func BenchmarkDecideLabelled(b *testing.B) {
	ds := dirs(denyOrgB, permitBPSY, denyPSYExceptB, optOutExcept)
	req := read("org-b", PurposeTreatment, LabelMentalHealth)
	b.ReportAllocs()
	for b.Loop() {
		_ = Decide(ds, req)
	}
}
