package directory

import (
	"context"
	"net/netip"
	"slices"
	"testing"

	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/internal/testkit"
)

func TestHL7Registry(t *testing.T) {
	ctx := context.Background()
	s := NewStore(testkit.DB(t))
	a, err := s.AddMember(ctx, "Alpha Lab", "2.16.840.1.113883.3.1001")
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.AddMember(ctx, "Beta Clinic", "2.16.840.1.113883.3.1002")
	if err != nil {
		t.Fatal(err)
	}
	mustOK := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	mustOK(s.AddHL7Sender(ctx, a.ID, "", "ALAB"))
	mustOK(s.AddHL7Sender(ctx, b.ID, "BETA-EHR", "SHARED"))
	mustOK(s.AddHL7Sender(ctx, a.ID, "ALPHA-LIS", "SHARED"))
	if err := s.AddHL7Sender(ctx, a.ID, "", "ALAB"); !errs.Is(err, errs.Conflict) {
		t.Errorf("duplicate sender: %v, want conflict", err)
	}
	if err := s.AddHL7Sender(ctx, "nobody", "", "X"); !errs.Is(err, errs.Invalid) {
		t.Errorf("unknown member: %v, want invalid", err)
	}
	if err := s.AddHL7Sender(ctx, a.ID, "", " "); !errs.Is(err, errs.Invalid) {
		t.Errorf("empty facility: %v, want invalid", err)
	}

	senders := []struct {
		name             string
		apps, facilities []string
		want             string
		code             errs.Code
	}{
		{"any application", []string{"WHATEVER"}, []string{"ALAB^1.2^ISO", "ALAB", "1.2"}, a.ID, 0},
		{"application narrows a shared facility", []string{"BETA-EHR"}, []string{"SHARED"}, b.ID, 0},
		{"the other application", []string{"ALPHA-LIS"}, []string{"SHARED"}, a.ID, 0},
		{"unknown application on a shared facility", []string{"OTHER"}, []string{"SHARED"}, "", errs.NotFound},
		{"unknown facility", []string{""}, []string{"NOPE"}, "", errs.NotFound},
		{"forms naming two members", []string{"BETA-EHR"}, []string{"SHARED", "ALAB"}, "", errs.Conflict},
	}
	for _, tt := range senders {
		t.Run("sender/"+tt.name, func(t *testing.T) {
			got, err := s.HL7SenderMember(ctx, nil, tt.apps, tt.facilities)
			if got != tt.want || (tt.code != 0 && !errs.Is(err, tt.code)) || (tt.code == 0 && err != nil) {
				t.Errorf("got %q, %v; want %q, %v", got, err, tt.want, tt.code)
			}
		})
	}

	mustOK(s.AddHL7Address(ctx, a.ID, "10.1.0.0/16"))
	mustOK(s.AddHL7Address(ctx, b.ID, "10.1.2.0/24"))
	mustOK(s.AddHL7Address(ctx, a.ID, "127.0.0.0/8"))
	mustOK(s.AddHL7Address(ctx, b.ID, "127.0.0.0/8"))
	mustOK(s.AddHL7Address(ctx, b.ID, "192.0.2.7"))
	if err := s.AddHL7Address(ctx, a.ID, "10.1.0.0/33"); !errs.Is(err, errs.Invalid) {
		t.Errorf("bad prefix: %v, want invalid", err)
	}
	addrs := []struct {
		ip   string
		want []AddressMember
	}{
		{"10.1.2.3", []AddressMember{{b.ID, 24}, {a.ID, 16}}},
		{"10.1.9.9", []AddressMember{{a.ID, 16}}},
		{"::ffff:10.1.9.9", []AddressMember{{a.ID, 16}}},
		{"127.0.0.1", []AddressMember{{a.ID, 8}, {b.ID, 8}}},
		{"192.0.2.7", []AddressMember{{b.ID, 32}}},
		{"192.0.2.8", nil},
	}
	for _, tt := range addrs {
		got, err := s.HL7AddressMembers(ctx, nil, netip.MustParseAddr(tt.ip))
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("address %s: %v, %v; want %v", tt.ip, got, err, tt.want)
		}
	}

	mustOK(s.AddHL7CertName(ctx, a.ID, "lis.alpha.example"))
	if got, err := s.HL7CertMember(ctx, []string{"Alpha LIS", "lis.alpha.example"}); got != a.ID || err != nil {
		t.Errorf("cert: %q, %v", got, err)
	}
	if _, err := s.HL7CertMember(ctx, []string{"other.example"}); !errs.Is(err, errs.NotFound) {
		t.Errorf("unknown cert: %v", err)
	}

	mustOK(s.AddHL7Namespace(ctx, a.ID, "ALPHA MRN", ""))
	if err := s.AddHL7Namespace(ctx, a.ID, "BETA MRN", b.System); !errs.Is(err, errs.Invalid) {
		t.Errorf("namespace for another member's system: %v, want invalid", err)
	}
	got, err := s.ResolveAuthorities(ctx, nil, []string{"ALPHA MRN", b.System, "urn:oid:9.9", "NHSNBR"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Authority{"ALPHA MRN": {a.System, a.ID}, b.System: {b.System, b.ID}}
	if len(got) != len(want) {
		t.Errorf("resolved %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("resolved %s = %v, want %v", k, got[k], v)
		}
	}
}
