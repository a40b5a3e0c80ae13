package audit_test

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/internal/testkit"
)

func TestSearchFiltersAndPages(t *testing.T) {
	pool := testkit.DB(t)
	ctx := context.Background()
	l := newLog(t, pool, audit.Config{CheckpointEvery: -1})
	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	var all []audit.Event
	for i := 0; i < 37; i++ {
		e := ev(i)
		e.Time = base.Add(time.Duration(i) * time.Second)
		if i%3 == 0 {
			e.Outcome = audit.Deny
		}
		if i%4 == 0 {
			e.Action = audit.Query
		}
		if err := l.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
		all = append(all, e)
	}
	match := func(f audit.Filter, e audit.Event) bool {
		if f.Patient != "" && e.Patient != f.Patient || f.Org != "" && e.Org != f.Org || f.Outcome != "" && e.Outcome != f.Outcome {
			return false
		}
		if f.Agent != "" && e.Actor != f.Agent && e.Client != f.Agent {
			return false
		}
		if len(f.Action) > 0 && e.Action != f.Action[0] {
			return false
		}
		return (f.From.IsZero() || !e.Time.Before(f.From)) && (f.To.IsZero() || !e.Time.After(f.To))
	}
	for _, f := range []audit.Filter{
		{},
		{Patient: "person-3"},
		{Org: "hillcrest", Outcome: audit.Deny},
		{Agent: "https://idp.example|u2"},
		{Agent: "ehr-a", Action: []audit.Action{audit.Query}},
		{From: base.Add(10 * time.Second), To: base.Add(20 * time.Second)},
	} {
		want := 0
		for _, e := range all {
			if match(f, e) {
				want++
			}
		}
		f.Count = 4
		var got []audit.Event
		for pages := 0; ; pages++ {
			page, next, err := audit.Search(ctx, pool, f)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, page...)
			if next == "" {
				break
			}
			f.Cursor = next
			if pages > 20 {
				t.Fatal("paging does not end")
			}
		}
		if len(got) != want {
			t.Errorf("filter %+v: %d events; want %d", f, len(got), want)
		}
		for i, e := range got {
			if !match(f, e) {
				t.Errorf("filter %+v returned a non-matching event seq %d", f, e.Seq)
			}
			if i > 0 && !e.Time.Before(got[i-1].Time) {
				t.Errorf("not newest first at %d", i)
			}
		}
	}
	if _, _, err := audit.Search(ctx, pool, audit.Filter{Cursor: "!!"}); errs.CodeOf(err) != errs.Invalid {
		t.Fatalf("bad cursor: %v; want Invalid", err)
	}
}

func TestAccessLogAndAccounting(t *testing.T) {
	pool := testkit.DB(t)
	ctx := context.Background()
	l := newLog(t, pool, audit.Config{CheckpointEvery: -1})
	t0 := time.Now().UTC().Add(-time.Hour)
	add := func(min int, e audit.Event) {
		e.Time = t0.Add(time.Duration(min) * time.Minute)
		if err := l.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	obs := []audit.Resource{{Type: "Observation", ID: "o1"}, {Type: "Observation", ID: "o2"}, {Type: "Condition", ID: "c1"}}
	add(1, audit.Event{Action: audit.Read, Outcome: audit.Permit, Actor: "iss|dr-a", Org: "riverside", Role: "clinician", Purpose: "TREAT", Patient: "P1", Resources: obs})
	add(2, audit.Event{Action: audit.ConsentDecision, Outcome: audit.Permit, Actor: "iss|dr-a", Org: "riverside", Patient: "P1"})
	add(3, audit.Event{Action: audit.Query, Outcome: audit.Deny, Actor: "iss|dr-b", Org: "hillcrest", Purpose: "TREAT", Patient: "P1"})
	add(4, audit.Event{Action: audit.Read, Outcome: audit.Permit, Actor: "iss|dr-b", Org: "hillcrest", Purpose: "BTG", Patient: "P1", BreakGlass: true, Resources: obs[:1]})
	add(5, audit.Event{Action: audit.Disclosure, Outcome: audit.Permit, Patient: "P1", ShareLink: true, Resources: obs[2:]})
	add(6, audit.Event{Action: audit.Read, Outcome: audit.Permit, Actor: "iss|dr-a", Org: "riverside", Patient: "P2"})
	acc, err := audit.AccessLog(ctx, pool, "P1", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(acc) != 3 {
		t.Fatalf("access log has %d rows; want 3 (the denial, the consent decision and P2's read excluded): %+v", len(acc), acc)
	}
	if acc[0].Action != audit.Disclosure || !acc[0].ShareLink || acc[1].Org != "hillcrest" || !acc[1].BreakGlass || acc[2].Role != "clinician" {
		t.Fatalf("access log rows (newest first) wrong: %+v", acc)
	}
	if strings.Join(acc[2].DataClasses, ",") != "Condition,Observation" {
		t.Fatalf("data classes = %v", acc[2].DataClasses)
	}
	acc, err = audit.AccessLog(ctx, pool, "P1", t0.Add(150*time.Second), t0.Add(270*time.Second))
	if err != nil || len(acc) != 1 || acc[0].Org != "hillcrest" {
		t.Fatalf("period access log = %+v, %v", acc, err)
	}
	rows, err := audit.Accounting(ctx, pool, "P1", time.Time{}, time.Time{})
	if err != nil || len(rows) != 3 {
		t.Fatalf("accounting = %+v, %v", rows, err)
	}
	if rows[0].Recipient != "riverside" || rows[0].Resources != 3 || rows[0].Purpose != "TREAT" || !rows[2].ShareLink {
		t.Fatalf("accounting rows (oldest first) wrong: %+v", rows)
	}
}

func TestToFHIR(t *testing.T) {
	e := audit.Event{Seq: 42, Time: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC), Action: audit.Query, Outcome: audit.Deny,
		Reason: "no-directive", Actor: "https://idp.example|dr-1", Client: "ehr-a", Org: "riverside", Role: "clinician",
		Purpose: "TREAT", Patient: "P1", Resources: []audit.Resource{{Type: "Observation", ID: "o1"}},
		Consent: "c9", ConsentVersion: 3, TokenID: "jti-7", RequestID: "req-1", SourceIP: "10.0.0.9", Query: "code=4548-4&name=hmac:x"}
	var got struct {
		ResourceType string
		ID           string
		Outcome      string
		OutcomeDesc  string
		Type         struct{ System, Code string }
		Subtype      []struct{ System, Code string }
		Agent        []struct {
			Who struct {
				Identifier struct{ System, Value string }
			}
			Requestor bool
			Policy    []string
			Network   struct{ Address string }
		}
		PurposeOfEvent []struct {
			Coding []struct{ Code string }
		}
		Entity []struct {
			What struct {
				Reference  string
				Identifier struct{ Value string }
			}
			Type  struct{ Code string }
			Role  struct{ Code string }
			Query string
		}
	}
	b := audit.ToFHIR(e, "https://hie.example/fhir/")
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.ResourceType != "AuditEvent" || got.ID != "42" || got.Outcome != "4" || got.OutcomeDesc != "no-directive" {
		t.Fatalf("header wrong: %s", b)
	}
	if got.Type.Code != "rest" || len(got.Subtype) < 1 || got.Subtype[0].Code != "search-type" {
		t.Fatalf("type/subtype wrong: %s", b)
	}
	u := got.Agent[0]
	if u.Who.Identifier.System != "https://idp.example" || u.Who.Identifier.Value != "dr-1" || !u.Requestor ||
		len(u.Policy) != 1 || u.Policy[0] != "urn:ietf:params:oauth:jti:jti-7" || u.Network.Address != "10.0.0.9" {
		t.Fatalf("user agent wrong: %s", b)
	}
	if len(got.PurposeOfEvent) != 1 || got.PurposeOfEvent[0].Coding[0].Code != "TREAT" {
		t.Fatalf("purposeOfEvent wrong: %s", b)
	}
	roles := map[string]string{}
	for _, en := range got.Entity {
		roles[en.Role.Code+"/"+en.Type.Code] = en.What.Reference + en.What.Identifier.Value + en.Query
	}
	if roles["1/1"] != "https://hie.example/fhir/Patient/P1" || roles["4/2"] == "" {
		t.Fatalf("patient/resource entities wrong: %v", roles)
	}
	q, err := base64.StdEncoding.DecodeString(roles["24/2"])
	if err != nil || string(q) != e.Query {
		t.Fatalf("query entity = %q, %v", q, err)
	}
	if roles["/XrequestId"] != "req-1" {
		t.Fatalf("request id entity wrong: %v", roles)
	}
	for o, want := range map[audit.Outcome]string{audit.Permit: "0", audit.Failure: "8"} {
		e.Outcome = o
		if err := json.Unmarshal(audit.ToFHIR(e, "x"), &got); err != nil || got.Outcome != want {
			t.Fatalf("outcome %s → %q", o, got.Outcome)
		}
	}
}

func TestCheckpointLoopExportAndKey(t *testing.T) {
	pool := testkit.DB(t)
	ctx := context.Background()
	key := testKey(7)
	l := newLog(t, pool, audit.Config{SigningKey: key, CheckpointEvery: 50 * time.Millisecond})
	for i := 0; i < 25; i++ {
		if err := l.Append(ctx, ev(i)); err != nil {
			t.Fatal(err)
		}
	}
	var c audit.Checkpoint
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var err error
		c, err = audit.LatestCheckpoint(ctx, pool)
		if err == nil && c.Size == 25 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint over 25 events from the loop: %+v, %v", c, err)
		}
	}
	pub := l.PublicKey()
	js, err := audit.ExportCheckpoint(c, pub)
	if err != nil {
		t.Fatal(err)
	}
	back, err := audit.ParseCheckpoint(js, pub)
	if err != nil || back.Root != c.Root || back.Size != 25 || back.ID != c.ID {
		t.Fatalf("ParseCheckpoint = %+v, %v", back, err)
	}
	other := testKey(8).Public().(ed25519.PublicKey)
	if _, err := audit.ParseCheckpoint(js, other); errs.CodeOf(err) != errs.Invalid {
		t.Fatalf("foreign key accepted: %v", err)
	}
	forged := strings.Replace(string(js), `"size":25`, `"size":24`, 1)
	if _, err := audit.ParseCheckpoint([]byte(forged), pub); errs.CodeOf(err) != errs.Invalid {
		t.Fatalf("edited checkpoint accepted: %v", err)
	}
	// No new events: an on-demand checkpoint returns the latest one.
	if again, err := l.Checkpoint(ctx); err != nil || again.ID != c.ID {
		t.Fatalf("Checkpoint without new events = %+v, %v", again, err)
	}
	if rep, err := audit.Verify(ctx, pool, pub, nil); err != nil || !rep.OK || rep.Checkpoints < 1 {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
	if rep, err := audit.Verify(ctx, pool, other, nil); err != nil || rep.OK || rep.Problem != audit.BadCheckpoint {
		t.Fatalf("Verify with a foreign key = %+v, %v; want bad-checkpoint", rep, err)
	}
	var progress []int64
	if _, err := audit.Verify(ctx, pool, pub, func(n int64) { progress = append(progress, n) }); err != nil || len(progress) == 0 || progress[len(progress)-1] != 25 {
		t.Fatalf("progress = %v, %v", progress, err)
	}
}

func TestPruneKeepsSixYearsAndTheChainVerifiable(t *testing.T) {
	pool := testkit.DB(t)
	ctx := context.Background()
	key := testKey(9)
	l := newLog(t, pool, audit.Config{SigningKey: key, CheckpointEvery: -1})
	now := time.Now().UTC()
	old := now.AddDate(-7, 0, 0)
	for i := 0; i < 3; i++ {
		e := ev(i)
		e.Time = old.Add(time.Duration(i) * time.Minute)
		if err := l.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	// Nothing is pruned that no signed checkpoint covers.
	if _, err := audit.Prune(ctx, pool, key, now.AddDate(-6, 0, 0)); errs.CodeOf(err) != errs.Conflict {
		t.Fatalf("prune before any checkpoint: %v; want Conflict", err)
	}
	if _, err := l.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 3; i < 6; i++ {
		if err := l.Append(ctx, ev(i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.Prune(ctx, pool, key, now.AddDate(-5, 0, 0)); errs.CodeOf(err) != errs.Invalid {
		t.Fatalf("prune of 5-year-old events: %v; want Invalid", err)
	}
	if _, err := audit.Prune(ctx, pool, nil, now.AddDate(-6, 0, 0)); errs.CodeOf(err) != errs.Unavailable {
		t.Fatalf("prune without the checkpoint key: %v; want Unavailable", err)
	}
	var dropped int
	err := db.InTx(ctx, pool, func(tx db.Querier) error {
		var err error
		dropped, err = audit.Prune(ctx, tx, key, now.AddDate(-6, 0, 0))
		return err
	})
	if err != nil || dropped < 1 {
		t.Fatalf("Prune = %d, %v", dropped, err)
	}
	pub := l.PublicKey()
	rep, err := audit.Verify(ctx, pool, pub, nil)
	if err != nil || !rep.OK || rep.Events != 3 || rep.LastSeq != 6 {
		t.Fatalf("Verify after prune = %+v, %v", rep, err)
	}
	// The anchor the prune left is held to its signed statement.
	for _, tamper := range []string{
		"UPDATE audit_anchor SET pruned_at = pruned_at - interval '1 year'",
		"UPDATE audit_anchor SET newest = newest + interval '2 years'",
		"UPDATE audit_anchor SET sig = NULL, root = NULL, newest = NULL, key_id = NULL",
		"UPDATE audit_anchor SET sig = set_byte(sig, 0, get_byte(sig, 0) # 1)",
	} {
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, tamper); err != nil {
			t.Fatalf("%s: %v", tamper, err)
		}
		rep, err := audit.Verify(ctx, tx, pub, nil)
		tx.Rollback(ctx)
		if err != nil || rep.OK || rep.Problem != audit.BadAnchor {
			t.Errorf("%s: Verify = %+v, %v; want bad-anchor", tamper, rep, err)
		}
	}
	if rep, err := audit.Verify(ctx, pool, testKey(10).Public().(ed25519.PublicKey), nil); err != nil || rep.OK || rep.Problem != audit.BadAnchor {
		t.Fatalf("Verify of the anchor with a foreign key = %+v, %v; want bad-anchor", rep, err)
	}
	// The chain continues, and a late event in an old month blocks the next prune.
	late := ev(9)
	late.Time = old
	if err := l.Append(ctx, late); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if rep, err := audit.Verify(ctx, pool, pub, nil); err != nil || !rep.OK || rep.Events != 4 {
		t.Fatalf("Verify after more appends = %+v, %v", rep, err)
	}
	if _, err := audit.Prune(ctx, pool, key, now.AddDate(-6, 0, 0)); errs.CodeOf(err) != errs.Conflict {
		t.Fatalf("prune that would cut the chain: %v; want Conflict", err)
	}
}
