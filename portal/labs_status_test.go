package portal

import (
	"strings"
	"testing"
	"time"

	"github.com/concord-hie/concord/internal/testkit"
)

// statusLabs is one glucose test with a result of each status that matters: a final 90, a
// 412 entered in error (flagged critically high by its sender), an unknown 95 and a
// cancelled one that still carries a value and a flag.
func statusLabs() []LabResult {
	d := func(s string) time.Time { t, _ := time.Parse("2006-01-02", s); return t }
	g := LabResult{Code: "2345-7", Display: "Glucose", Unit: "mg/dL", RefRange: "70-99", SourceMember: "riverside", SourceMemberName: "Riverside Family Clinic"}
	at := func(id, value, flag, status, day string) LabResult {
		r := g
		r.ID, r.Value, r.Flag, r.Status, r.Effective = id, value, flag, status, d(day)
		return r
	}
	return []LabResult{
		at("g-final", "90", "N", "final", "2026-01-10"),
		at("g-eie", "412", "HH", "entered-in-error", "2026-02-10"),
		at("g-unknown", "95", "", "unknown", "2026-03-10"),
		at("g-cancelled", "388", "HH", "cancelled", "2026-04-10"),
	}
}

// TestLabsLeaveOutEnteredInError: a result entered in error is in no lab view (the labs,
// share-link and clinician pages all group through groupLabs), no trend and no share choice;
// a cancelled one is shown by its status alone, never flagged and never plotted.
func TestLabsLeaveOutEnteredInError(t *testing.T) {
	t.Parallel()
	tests := groupLabs(statusLabs(), time.UTC)
	if len(tests) != 1 {
		t.Fatalf("%d tests, want 1", len(tests))
	}
	g := tests[0]
	var values, statuses []string
	for _, r := range g.Rows {
		values, statuses = append(values, r.Value), append(statuses, r.Status)
		if r.Abnormal || r.FlagLabel != "" {
			t.Errorf("row %q (%s) flagged %q", r.Value, r.Status, r.FlagLabel)
		}
	}
	if got, want := strings.Join(values, ","), ",95,90"; got != want {
		t.Errorf("values newest first %q, want %q", got, want)
	}
	if got, want := strings.Join(statuses, ","), "Cancelled, no result,Status unknown,"; got != want {
		t.Errorf("statuses %q, want %q", got, want)
	}
	if !g.Latest.Equal(time.Date(2026, 4, 10, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("latest %v", g.Latest)
	}
	if g.Trend == nil || strings.Count(g.Trend.Points, ",") != 2 || !strings.Contains(g.Trend.Label, "Trend of 2 results") {
		t.Errorf("trend %+v, want the final and unknown results only", g.Trend)
	}
	// Only entered-in-error results: no test at all.
	if tests := groupLabs(statusLabs()[1:2], time.UTC); len(tests) != 0 {
		t.Errorf("an entered-in-error result alone makes %d tests", len(tests))
	}

	var ids, labels []string
	for _, ch := range shareChoices(statusLabs(), time.UTC) {
		ids, labels = append(ids, ch.ID), append(labels, ch.Label)
	}
	if got, want := strings.Join(ids, ","), "g-cancelled,g-unknown,g-final"; got != want {
		t.Errorf("share choices %q, want %q", got, want)
	}
	if strings.Contains(strings.Join(labels, "|"), "388") {
		t.Errorf("a cancelled result's value in a share label: %q", labels)
	}
}

// TestTrendSkipsCancelled: newTrend plots no cancelled or entered-in-error row, even one
// that still carries a value.
func TestTrendSkipsCancelled(t *testing.T) {
	t.Parallel()
	d := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rows := []labRow{
		{Value: "400", Effective: d.Add(72 * time.Hour), state: "entered-in-error"},
		{Value: "300", Effective: d.Add(48 * time.Hour), state: "cancelled"},
		{Value: "95", Effective: d.Add(24 * time.Hour), state: "unknown"},
		{Value: "90", Effective: d, state: "final"},
	}
	tr := newTrend(rows)
	if tr == nil || strings.Count(tr.Points, ",") != 2 {
		t.Errorf("trend %+v, want two points", tr)
	}
}

// TestLabStatusWordsCoverObservationStatus: every R4 Observation.status has words (final
// needs none).
func TestLabStatusWordsCoverObservationStatus(t *testing.T) {
	t.Parallel()
	for _, st := range []string{"registered", "preliminary", "amended", "corrected", "cancelled", "entered-in-error", "unknown"} {
		if w := labStatusWords(st); w == "" || w == st {
			t.Errorf("labStatusWords(%q) = %q", st, w)
		}
	}
	if w := labStatusWords("unknown"); w != "Status unknown" {
		t.Errorf("labStatusWords(unknown) = %q", w)
	}
}

// TestLabsPageLeavesOutEnteredInError: the patient's labs page and share form show nothing
// of a result entered in error.
func TestLabsPageLeavesOutEnteredInError(t *testing.T) {
	t.Parallel()
	pool := testkit.DB(t)
	e := newEnv(t, envOpts{shares: NewShareStore(pool).WithAudit(auditLog(t, pool)), shared: noSharedLabs{}})
	e.records.mu.Lock()
	e.records.labs = map[string][]LabResult{"person-1": statusLabs()}
	e.records.mu.Unlock()
	c := newClient(t)
	e.signIn(t, c, "alice", "alice-pw")
	labs := c.getPrivate(e.base, "/labs").body
	for _, bad := range []string{"412", "388", "Critically high", "Entered in error", `class="abnormal"`} {
		if strings.Contains(labs, bad) {
			t.Errorf("labs page shows %q", bad)
		}
	}
	for _, want := range []string{">90<", ">95<", "Status unknown", "Cancelled, no result", "Trend of 2 results"} {
		if !strings.Contains(labs, want) {
			t.Errorf("labs page lacks %q", want)
		}
	}
	share := c.getPrivate(e.base, "/labs/share").body
	if strings.Contains(share, "g-eie") || strings.Contains(share, "412") || !strings.Contains(share, "g-final") {
		t.Errorf("share form offers the entered-in-error result or lacks the final one")
	}
}
