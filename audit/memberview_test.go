package audit

import (
	"reflect"
	"testing"
)

// TestMemberView: a deny event loses its person, reason, consent and flags, keeping what
// the member sent; a permit or failure is left as it is.
func TestMemberView(t *testing.T) {
	res := []Resource{{Type: "Observation", ID: "o1"}}
	full := Event{Action: Update, Reason: "not-owner", Actor: "iss|sub", Client: "c", Org: "m", Role: "system",
		Purpose: "TREAT", Patient: "person-1", Resources: res, Consent: "d1", ConsentVersion: 3, TokenID: "jti",
		RequestID: "rq", SourceIP: "10.0.0.1", Query: "code=x", BreakGlass: true, ShareLink: true}
	deny := full
	deny.Outcome = Deny
	want := full
	want.Outcome, want.Reason, want.Patient, want.Consent, want.ConsentVersion = Deny, MemberReason, "", "", 0
	want.BreakGlass, want.ShareLink = false, false
	permit, failure := full, full
	permit.Outcome, failure.Outcome = Permit, Failure
	tests := []struct {
		name    string
		in, out Event
	}{
		{"deny", deny, want},
		{"permit", permit, permit},
		{"failure", failure, failure},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := MemberView(tt.in); !reflect.DeepEqual(got, tt.out) {
				t.Errorf("MemberView = %+v, want %+v", got, tt.out)
			}
		})
	}
	// Every refusal reads alike.
	other := deny
	other.Reason, other.Patient = "not-found", ""
	if a, b := MemberView(deny), MemberView(other); !reflect.DeepEqual(a, b) {
		t.Errorf("a not-owner and a not-found refusal read differently: %+v, %+v", a, b)
	}
}
