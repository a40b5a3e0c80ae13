package records

import (
	"strconv"
	"testing"
	"time"

	"github.com/concord-hie/concord/audit"
)

// TestFileWrite: a filed write joins the event of its action and person (once), or starts
// one; an event never lists more than maxWriteResources resources.
func TestFileWrite(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	v := Viewer{Org: "org-a", Client: "c", RequestID: "r"}
	res := func(id string) audit.Resource { return audit.Resource{Type: "Observation", ID: id} }
	ev := func(action audit.Action, person string, rs ...audit.Resource) audit.Event {
		e := event(v, action, person, at)
		e.Outcome, e.Resources = audit.Permit, rs
		return e
	}
	full := make([]audit.Resource, maxWriteResources)
	for i := range full {
		full[i] = res("f" + strconv.Itoa(i))
	}
	tests := []struct {
		name string
		evs  []audit.Event
		f    Filed
		want []int // resources per event, in order
	}{
		{"joins its person's event", []audit.Event{ev(audit.Update, "p1", res("1")), ev(audit.Update, "p2", res("2"))},
			Filed{audit.Update, "p2", res("3")}, []int{1, 2}},
		{"listed already", []audit.Event{ev(audit.Update, "p1", res("1"))}, Filed{audit.Update, "p1", res("1")}, []int{1}},
		{"another action starts one", []audit.Event{ev(audit.Create, "p1", res("1"))}, Filed{audit.Update, "p1", res("1")}, []int{1, 1}},
		{"no person is a person too", []audit.Event{ev(audit.Update, "p1", res("1"))}, Filed{audit.Update, "", res("1")}, []int{1, 1}},
		{"a full event starts another", []audit.Event{ev(audit.Update, "p1", full...)}, Filed{audit.Update, "p1", res("x")}, []int{maxWriteResources, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := fileWrite(tt.evs, v, tt.f, at)
			var n []int
			for _, e := range got {
				n = append(n, len(e.Resources))
			}
			if len(n) != len(tt.want) {
				t.Fatalf("events with %v resources, want %v", n, tt.want)
			}
			for i := range n {
				if n[i] != tt.want[i] {
					t.Fatalf("events with %v resources, want %v", n, tt.want)
				}
			}
			last := got[len(got)-1]
			if last.Outcome != audit.Permit || last.Org != "org-a" || last.RequestID != "r" {
				t.Errorf("event %+v: want permit for the viewer", last)
			}
		})
	}
}
