package portal

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/internal/testkit"
)

func TestMessageStoreScopesRepliesReadsAndIsAppendOnly(t *testing.T) {
	ctx := context.Background()
	pool := testkit.DB(t)
	s := NewMessageStore(pool)
	now := time.Now()
	ana := Viewer{Role: RolePatient, PersonID: "person-ana", Actor: "iss|ana"}
	bob := Viewer{Role: RolePatient, PersonID: "person-bob", Actor: "iss|bob"}
	doc := Viewer{Role: RoleClinician, Org: "riverside", Actor: "iss|doc"}
	other := Viewer{Role: RoleClinician, Org: "lakeside", Actor: "iss|other"}

	id, err := s.CreateThread(ctx, ana.PersonID, "riverside", "  Refill question ", Message{AuthorLogin: ana.Actor, AuthorName: "Ana", Body: " Can I get a refill? "}, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateThread(ctx, ana.PersonID, "riverside", "x", Message{AuthorLogin: ana.Actor, Body: strings.Repeat("a", 4001)}, now); !errs.Is(err, errs.Invalid) || !strings.Contains(err.Error(), "too long") {
		t.Fatalf("over-long body: %v", err)
	}
	ts, err := s.Threads(ctx, doc)
	if err != nil || len(ts) != 1 || ts[0].Unread != 1 || ts[0].Subject != "Refill question" {
		t.Fatalf("clinician inbox: %+v %v", ts, err)
	}
	for _, v := range []Viewer{bob, other, {Role: RoleOfficer, Org: "riverside"}} {
		if _, _, err := s.Thread(ctx, v, id); !errs.Is(err, errs.NotFound) {
			t.Fatalf("%+v read the thread: %v", v, err)
		}
		if err := s.Reply(ctx, v, id, Message{AuthorLogin: v.Actor, Body: "hi"}, now); !errs.Is(err, errs.NotFound) {
			t.Fatalf("%+v replied: %v", v, err)
		}
		if ts, _ := s.Threads(ctx, v); len(ts) != 0 {
			t.Fatalf("%+v lists %d threads", v, len(ts))
		}
	}
	if err := s.MarkRead(ctx, doc, id, now); err != nil {
		t.Fatal(err)
	}
	if err := s.Reply(ctx, doc, id, Message{AuthorLogin: doc.Actor, AuthorName: "Dr. Lee", Body: "Yes, sent."}, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	ts, _ = s.Threads(ctx, ana)
	if len(ts) != 1 || ts[0].Unread != 1 {
		t.Fatalf("patient inbox: %+v", ts)
	}
	th, ms, err := s.Thread(ctx, ana, id)
	if err != nil || len(ms) != 2 || ms[0].Body != "Can I get a refill?" || ms[0].Read.IsZero() || ms[1].AuthorKind != RoleClinician || th.Closed {
		t.Fatalf("thread: %+v %+v %v", th, ms, err)
	}
	if err := s.Close(ctx, other, id); !errs.Is(err, errs.NotFound) {
		t.Fatalf("other org closed: %v", err)
	}
	if err := s.Close(ctx, doc, id); err != nil {
		t.Fatal(err)
	}
	if err := s.Reply(ctx, ana, id, Message{AuthorLogin: ana.Actor, Body: "thanks"}, now); !errs.Is(err, errs.Conflict) {
		t.Fatalf("reply to closed: %v", err)
	}
	// Append-only, whatever the role's grants say.
	if _, err := pool.Exec(ctx, `UPDATE portal_messages SET body = 'changed' WHERE thread_id = $1`, id); err == nil {
		t.Fatal("a message body was edited")
	}
	if _, err := pool.Exec(ctx, `DELETE FROM portal_messages WHERE thread_id = $1`, id); err == nil {
		t.Fatal("a message was deleted")
	}
	if _, err := pool.Exec(ctx, `UPDATE portal_message_threads SET subject = 'changed' WHERE id = $1`, id); err == nil {
		t.Fatal("a subject was edited")
	}
	var tableUpd, del, readAt, body, status bool
	if err := pool.QueryRow(ctx, `SELECT has_table_privilege('concord_app', 'portal_messages', 'UPDATE'),
		has_table_privilege('concord_app', 'portal_messages', 'DELETE'),
		has_column_privilege('concord_app', 'portal_messages', 'read_at', 'UPDATE'),
		has_column_privilege('concord_app', 'portal_messages', 'body', 'UPDATE'),
		has_column_privilege('concord_app', 'portal_message_threads', 'status', 'UPDATE')`).Scan(&tableUpd, &del, &readAt, &body, &status); err != nil {
		t.Fatal(err)
	}
	if tableUpd || del || !readAt || body || !status {
		t.Fatalf("concord_app grants: update %v delete %v read_at %v body %v status %v", tableUpd, del, readAt, body, status)
	}
}
