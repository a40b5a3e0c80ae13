package audit

import (
	"context"
	"encoding/base64"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

// Filter selects events for Search (RESTful ATNA, ITI-81). Zero fields do not filter. The
// caller scopes it: a patient's own Patient, a member's own Org, an officer anything.
type Filter struct {
	Patient string    // person ID
	From    time.Time // time >= From
	To      time.Time // time <= To
	Action  []Action  // any of these
	Agent   string    // actor ("iss|sub") or client_id
	Org     string    // actor's organization
	Outcome Outcome
	Count   int    // page size; 0 means 50, at most 1000
	Cursor  string // the next value of the previous page
	// Member is set when the reader is a member system reading its own events (Org): deny
	// events are left out. A refusal answered as absence (404, an empty search, a 204
	// delete) would otherwise come back through the member's own trail: that an event was
	// written at all tells a guessed id of another member's resource from an unknown one,
	// and a search's deny events count the persons it withheld. Officers and the patient
	// read them in full.
	Member bool
}

// Search returns one page of events matching f, newest first, and the cursor of the next
// page ("" when this is the last); for f.Member, no deny events. It returns errs.Invalid
// for a malformed cursor and errs.Unavailable when the database fails.
func Search(ctx context.Context, q db.Querier, f Filter) ([]Event, string, error) {
	const op = "audit.Search"
	count := f.Count
	if count <= 0 {
		count = 50
	}
	if count > 1000 {
		count = 1000
	}
	var w where
	if f.Patient != "" {
		w.add("patient = $%d", f.Patient)
	}
	if f.Member {
		w.add("outcome <> $%d", string(Deny))
	}
	if !f.From.IsZero() {
		w.add("time >= $%d", f.From.UTC())
	}
	if !f.To.IsZero() {
		w.add("time <= $%d", f.To.UTC())
	}
	if len(f.Action) > 0 {
		acts := make([]string, len(f.Action))
		for i, a := range f.Action {
			acts[i] = string(a)
		}
		w.add("action = ANY($%d)", acts)
	}
	if f.Agent != "" {
		w.add("(actor = $%d OR client = $%[1]d)", f.Agent)
	}
	if f.Org != "" {
		w.add("org = $%d", f.Org)
	}
	if f.Outcome != "" {
		w.add("outcome = $%d", string(f.Outcome))
	}
	if f.Cursor != "" {
		t, seq, err := parseCursor(f.Cursor)
		if err != nil {
			return nil, "", errs.E(op, errs.Invalid, "malformed audit search cursor")
		}
		w.add("(time, seq) < ($%d, $%d)", t, seq)
	}
	sql := eventSelect + w.sql() + fmt.Sprintf(" ORDER BY time DESC, seq DESC LIMIT %d", count+1)
	evs, err := queryEvents(ctx, q, sql, w.args...)
	if err != nil {
		return nil, "", db.Map(op, err)
	}
	next := ""
	if len(evs) > count {
		evs = evs[:count]
		last := evs[len(evs)-1]
		next = makeCursor(last.Time, last.Seq)
	}
	return evs, next, nil
}

// where builds a WHERE clause with positional arguments.
type where struct {
	conds []string
	args  []any
}

// add appends a condition; each %d in cond (or %[1]d) is replaced by the position of the
// next argument, in order.
func (w *where) add(cond string, args ...any) {
	pos := make([]any, len(args))
	for i := range args {
		pos[i] = len(w.args) + i + 1
	}
	w.conds = append(w.conds, fmt.Sprintf(cond, pos...))
	w.args = append(w.args, args...)
}

func (w *where) sql() string {
	if len(w.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.conds, " AND ")
}

func makeCursor(t time.Time, seq int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(t.UnixMicro(), 10) + "." + strconv.FormatInt(seq, 10)))
}

func parseCursor(c string) (time.Time, int64, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return time.Time{}, 0, err
	}
	ts, ss, ok := strings.Cut(string(b), ".")
	if !ok {
		return time.Time{}, 0, errMalformed
	}
	us, err1 := strconv.ParseInt(ts, 10, 64)
	seq, err2 := strconv.ParseInt(ss, 10, 64)
	if err1 != nil || err2 != nil {
		return time.Time{}, 0, errMalformed
	}
	return time.UnixMicro(us).UTC(), seq, nil
}

func queryEvents(ctx context.Context, q db.Querier, sql string, args ...any) ([]Event, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var r verifyRow
		if err := scanRow(rows, &r); err != nil {
			return nil, err
		}
		out = append(out, r.event())
	}
	return out, rows.Err()
}

// Access is one line of a patient's access log: who touched the record, for which
// organization, in which role, for what purpose, when, and which classes of data.
type Access struct {
	Seq         int64
	Time        time.Time
	Action      Action
	Actor       string // "iss|sub"; the portal resolves it to a display name
	Client      string
	Org         string
	Role        string
	Purpose     string
	DataClasses []string // distinct resource types, sorted
	BreakGlass  bool     // access under break-the-glass
	ShareLink   bool     // access through the patient's share link
	RequestID   string
}

// accessActions are the events that disclose a patient's data.
var accessActions = []string{string(Read), string(Query), string(Disclosure), string(Export), string(BreakGlass)}

// maxAccessRows bounds AccessLog and Accounting; narrow the period to see more.
const maxAccessRows = 10000

// AccessLog returns the permitted accesses to person's record between from and to
// (inclusive; zero means unbounded), newest first, at most 10,000: reads, searches,
// disclosures, exports and break-the-glass declarations. Consent decisions themselves are not
// listed (each access already is). It returns errs.Unavailable when the database fails.
func AccessLog(ctx context.Context, q db.Querier, person string, from, to time.Time) ([]Access, error) {
	evs, err := accesses(ctx, q, person, from, to)
	if err != nil {
		return nil, db.Map("audit.AccessLog", err)
	}
	out := make([]Access, len(evs))
	for i, ev := range evs {
		out[i] = accessOf(ev)
	}
	return out, nil
}

// accessOf is ev as an access log lists it.
func accessOf(ev Event) Access {
	return Access{Seq: ev.Seq, Time: ev.Time, Action: ev.Action, Actor: ev.Actor, Client: ev.Client, Org: ev.Org,
		Role: ev.Role, Purpose: ev.Purpose, DataClasses: dataClasses(ev.Resources), BreakGlass: ev.BreakGlass,
		ShareLink: ev.ShareLink, RequestID: ev.RequestID}
}

func accesses(ctx context.Context, q db.Querier, person string, from, to time.Time) ([]Event, error) {
	var w where
	w.add("patient = $%d", person)
	w.add("outcome = $%d", string(Permit))
	w.add("action = ANY($%d)", accessActions)
	if !from.IsZero() {
		w.add("time >= $%d", from.UTC())
	}
	if !to.IsZero() {
		w.add("time <= $%d", to.UTC())
	}
	return queryEvents(ctx, q, eventSelect+w.sql()+fmt.Sprintf(" ORDER BY time DESC, seq DESC LIMIT %d", maxAccessRows), w.args...)
}

func dataClasses(rs []Resource) []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range rs {
		if !seen[r.Type] {
			seen[r.Type] = true
			out = append(out, r.Type)
		}
	}
	sort.Strings(out)
	return out
}

// AccessesBySeq returns person's permitted accesses (as AccessLog lists them) among the
// events seqs name, by seq; seqs of other persons or other kinds of event are absent. It
// returns errs.Unavailable when the database fails.
func AccessesBySeq(ctx context.Context, q db.Querier, person string, seqs []int64) (map[int64]Access, error) {
	out := map[int64]Access{}
	if len(seqs) == 0 {
		return out, nil
	}
	var w where
	w.add("seq = ANY($%d)", seqs)
	if person != "" {
		w.add("patient = $%d", person)
	}
	w.add("outcome = $%d", string(Permit))
	w.add("action = ANY($%d)", accessActions)
	evs, err := queryEvents(ctx, q, eventSelect+w.sql(), w.args...)
	if err != nil {
		return nil, db.Map("audit.AccessesBySeq", err)
	}
	for _, ev := range evs {
		out[ev.Seq] = accessOf(ev)
	}
	return out, nil
}

// DisclosureRow is one row of an accounting of disclosures (45 CFR 164.528): the date, the
// recipient, a description of what was disclosed, and the purpose.
type DisclosureRow struct {
	Seq         int64
	Time        time.Time
	Recipient   string // the receiving member organization ("" for a share-link or patient access)
	Actor       string // the user at the recipient, "iss|sub"
	Client      string
	Purpose     string   // v3-ActReason code
	DataClasses []string // what was disclosed: resource types
	Resources   int      // how many resources
	Action      Action
	BreakGlass  bool
	ShareLink   bool
	RequestID   string
}

// Accounting returns the accounting of disclosures of person's data between from and to
// (inclusive; zero means unbounded), oldest first, at most 10,000 rows: every permitted read,
// search, disclosure, export or break-the-glass access. Purposes are included so the report
// can apply the treatment/payment/operations exceptions the law in force allows; nothing is
// left out here. It returns errs.Unavailable when the database fails.
func Accounting(ctx context.Context, q db.Querier, person string, from, to time.Time) ([]DisclosureRow, error) {
	evs, err := accesses(ctx, q, person, from, to)
	if err != nil {
		return nil, db.Map("audit.Accounting", err)
	}
	out := make([]DisclosureRow, len(evs))
	for i, ev := range evs {
		out[len(evs)-1-i] = DisclosureRow{Seq: ev.Seq, Time: ev.Time, Recipient: ev.Org, Actor: ev.Actor, Client: ev.Client,
			Purpose: ev.Purpose, DataClasses: dataClasses(ev.Resources), Resources: len(ev.Resources), Action: ev.Action,
			BreakGlass: ev.BreakGlass, ShareLink: ev.ShareLink, RequestID: ev.RequestID}
	}
	return out, nil
}
