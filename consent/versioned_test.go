package consent

import (
	"testing"
	"time"

	"github.com/concord-hie/concord/internal/errs"
)

func day(d int) time.Time { return time.Date(2026, 3, d, 12, 0, 0, 0, time.UTC) }

func TestInForceAndDecideAsOf(t *testing.T) {
	// v1 (saved 1 March): permit payment to org-b. v2 (saved 5 March): withdrawn (deny).
	v1 := patient("pay", OptIn, Provision{Type: Permit, Purposes: []string{PurposePayment}, Actors: []Actor{orgActor("org-b")}})
	v2 := v1
	v2.Version, v2.Provision.Type = 2, Deny
	versions := []Version{
		{Directive: v2, ValidFrom: day(5)},
		{Directive: v1, ValidFrom: day(1), ValidTo: day(5)},
	}
	for _, d := range defaults {
		versions = append(versions, Version{Directive: d, ValidFrom: day(1).AddDate(-1, 0, 0)})
	}
	tests := []struct {
		at          time.Time
		wantVersion int // of "pay"; 0: absent
		wantAllow   bool
	}{
		{day(1).Add(-time.Second), 0, false},
		{day(3), 1, true},
		{day(5).Add(-time.Nanosecond), 1, true},
		{day(5), 2, false},
		{day(20), 2, false},
	}
	for _, tt := range tests {
		got := 0
		for _, d := range InForce(versions, tt.at) {
			if d.ID == "pay" {
				got = d.Version
			}
		}
		if got != tt.wantVersion {
			t.Errorf("InForce at %v: version %d, want %d", tt.at, got, tt.wantVersion)
		}
		req := with(read("org-b", PurposePayment), func(r *Request) { r.At = tt.at })
		if d := DecideAsOf(versions, req); d.Allow != tt.wantAllow {
			t.Errorf("DecideAsOf at %v: %v, want allow=%v", tt.at, d.Reason, tt.wantAllow)
		}
	}
}

func TestPreview(t *testing.T) {
	req := read("org-b", PurposeTreatment)
	got := Preview(dirs(permitBPSY), req, StandardClasses())
	want := map[string]Reason{
		"labs": Permitted, "problems": Permitted, "notes": Permitted,
		"mental-health": LabelNotPermitted, // permit-b-psy names PSY but not R
		"substance-use": LabelNotPermitted, "substance-use-program": LabelNotPermitted, "hiv": LabelNotPermitted,
	}
	for _, cd := range got {
		if w, ok := want[cd.Class.Name]; ok && cd.Decision.Reason != w {
			t.Errorf("%s: %v, want %v", cd.Class.Name, cd.Decision.Reason, w)
		}
		if cd.Decision.Explanation == "" {
			t.Errorf("%s: no explanation", cd.Class.Name)
		}
	}
	if len(got) != len(StandardClasses()) {
		t.Fatalf("got %d class decisions", len(got))
	}
	// Naming R as well releases mental-health items.
	psyR := permitBPSY
	psyR.Provision.SecurityLabels = []string{LabelMentalHealth, LabelRestricted}
	for _, cd := range Preview(dirs(psyR), req, StandardClasses()) {
		if cd.Class.Name == "mental-health" && !cd.Decision.Allow {
			t.Errorf("mental-health with PSY+R permit: %v", cd.Decision.Reason)
		}
	}
}

func TestCacheKey(t *testing.T) {
	req := read("org-b", PurposeTreatment, LabelMentalHealth, LabelRestricted)
	k1, ok := CacheKey("p1", Versions{Person: 7, Policy: 1}, req)
	if !ok {
		t.Fatal("treatment read not cacheable")
	}
	reordered := with(req, func(r *Request) { r.Labels = []string{LabelRestricted, LabelMentalHealth, LabelRestricted} })
	if k, _ := CacheKey("p1", Versions{Person: 7, Policy: 1}, reordered); k != k1 {
		t.Error("label order changed the key")
	}
	if k, _ := CacheKey("p1", Versions{Person: 7, Policy: 1}, with(req, func(r *Request) { r.At = r.At.Add(time.Hour) })); k != k1 {
		t.Error("At changed the key; ValidUntil governs time")
	}
	differs := []Request{
		with(req, func(r *Request) { r.Org = "org-c" }),
		with(req, func(r *Request) { r.Actor = "Practitioner/other" }),
		with(req, func(r *Request) { r.ActorRole = RoleSystem }),
		with(req, func(r *Request) { r.Purpose = PurposePayment }),
		with(req, func(r *Request) { r.Custodian = "org-a" }),
		with(req, func(r *Request) { r.Labels = []string{LabelMentalHealth} }),
		with(req, func(r *Request) { r.Class.ResourceType = "Condition" }),
		with(req, func(r *Request) { r.Class.Categories = nil }),
	}
	for i, r := range differs {
		if k, _ := CacheKey("p1", Versions{Person: 7, Policy: 1}, r); k == k1 {
			t.Errorf("change %d did not change the key", i)
		}
	}
	if k, _ := CacheKey("p1", Versions{Person: 8, Policy: 1}, req); k == k1 {
		t.Error("new consent version kept the key")
	}
	if k, _ := CacheKey("p1", Versions{Person: 7, Policy: 2}, req); k == k1 {
		t.Error("new policy version kept the key")
	}
	if _, ok := CacheKey("p1", Versions{Person: 7, Policy: 1}, with(req, func(r *Request) { r.Purpose, r.BreakGlass = PurposeBreakGlass, btg(true) })); ok {
		t.Error("break-glass is cacheable")
	}
	if _, ok := CacheKey("p2", Versions{Person: 7, Policy: 1}, req); ok {
		t.Error("key for another person's request")
	}
}

func TestValidUntil(t *testing.T) {
	ds := dirs(expiredPermitPay(), patient("later", OptIn, Provision{Type: Permit, Period: Period{Start: day(25)}}),
		patient("soon", OptIn, Provision{Type: Deny, Provisions: []Provision{{Period: Period{End: day(22)}}}}))
	if got, want := ValidUntil(ds, at), day(22).Add(time.Nanosecond); !got.Equal(want) {
		t.Errorf("ValidUntil = %v, want %v", got, want)
	}
	if got := ValidUntil(defaults, at); !got.IsZero() {
		t.Errorf("ValidUntil with no periods = %v, want zero", got)
	}
}

func TestDeclareBreakGlass(t *testing.T) {
	p := BreakGlassPolicy{}
	b, err := p.Declare(true, BTGLifeThreatening, "  arrest in ED  ", at, 0)
	if err != nil {
		t.Fatal(err)
	}
	if b.Expires.Sub(b.Start) != DefaultBreakGlassDuration || b.Text != "arrest in ED" {
		t.Errorf("got %+v", b)
	}
	if b, _ := p.Declare(true, BTGLifeThreatening, "x", at, 15*time.Minute); b.Expires.Sub(b.Start) != 15*time.Minute {
		t.Error("shorter duration not honoured")
	}
	if b, _ := (BreakGlassPolicy{MaxDuration: 30 * time.Minute}).Declare(true, BTGLifeThreatening, "x", at, 2*time.Hour); b.Expires.Sub(b.Start) != 30*time.Minute {
		t.Error("duration not capped")
	}
	if _, err := p.Declare(false, BTGLifeThreatening, "x", at, 0); !errs.Is(err, errs.Forbidden) {
		t.Errorf("no permission: %v", err)
	}
	if _, err := p.Declare(true, "because", "x", at, 0); !errs.Is(err, errs.Invalid) || errs.PathOf(err) != "reasonCode" {
		t.Errorf("bad reason: %v", err)
	}
	if _, err := p.Declare(true, BTGUnresponsive, "   ", at, 0); !errs.Is(err, errs.Invalid) || errs.PathOf(err) != "text" {
		t.Errorf("empty text: %v", err)
	}
	// Expiry on a fake clock: valid through the last instant before Expires.
	if !b.ValidAt(b.Expires.Add(-time.Nanosecond)) || b.ValidAt(b.Expires) || b.ValidAt(b.Start.Add(-time.Second)) {
		t.Error("ValidAt window wrong")
	}
	for _, r := range BreakGlassReasons() {
		if !KnownBreakGlassReason(r) {
			t.Errorf("listed reason %q unknown", r)
		}
	}
}
