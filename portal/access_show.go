package portal

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

type accessPage struct {
	Page
	From, To string // the filter as typed, YYYY-MM-DD
	Error    string // a filter the page could not use
	Rows     []accessRow
	Capped   bool // the log hit its row limit: narrow the dates
	// CanDispute: the patient themself may report an access they do not recognise.
	CanDispute bool
	// Mine: the patient's own views are listed too (?mine=1); by default they are left
	// out, so the log shows who else looked. Hidden counts them when they are left out.
	Mine   bool
	Hidden int
	// Self: the patient reads their own log; false for a caregiver acting for them.
	Self bool
	// Notices are the patient's unread notices, in words.
	Notices []noticeRow
}

// noticeRow is one notice in words.
type noticeRow struct {
	ID       int64
	Org      string
	Reason   string
	Declared time.Time
	Expires  time.Time
}

// accessRow is one access in plain words.
type accessRow struct {
	Time       time.Time
	Org        string // member display name
	Role       string
	Purpose    string
	Action     string
	Data       string
	BreakGlass bool
	ShareLink  bool
	Seq        int64
	Own        bool     // the patient's own view
	Dispute    *Dispute // the patient's report of this access, if any
}

// accessLogLimit is audit.AccessLog's row cap: reaching it means "narrow the period".
const accessLogLimit = 10000

// showAccess is "Who viewed my record": the signed-in patient's own access log, newest
// first, filtered by date. Only the session's person ID is ever asked for. Reading it is
// itself audited by Privacy.AccessLog (one audit.AuditQuery event, actor the patient's login)
// before the rows are shown, as an officer's audit search is.
func (s *Server) showAccess(c echo.Context) error {
	sess, _ := session(c)
	title := "Who viewed your record"
	if sess.Role == RoleProxy && sess.ActingFor != "" {
		title = "Who viewed " + sess.ActingFor + "'s record"
	}
	p := accessPage{Page: s.page(c, title), Self: sess.Role == RolePatient}
	loc := s.cfg.Location
	p.From, p.To = strings.TrimSpace(c.QueryParam("from")), strings.TrimSpace(c.QueryParam("to"))
	from, to, ok := parseDateRange(p.From, p.To, loc)
	if !ok {
		p.Error = "Please enter dates as year-month-day, for example 2026-03-31, with the first date not after the second."
		return s.render(c, http.StatusBadRequest, "access", p)
	}
	ctx := c.Request().Context()
	names, err := s.privacy.MemberNames(ctx)
	if err != nil {
		return err
	}
	v := s.patientViewer(c, sess)
	acc, err := s.privacy.AccessLog(ctx, v, sess.PersonID, from, to)
	if err != nil {
		return err
	}
	p.Capped = len(acc) >= accessLogLimit
	if limitedCaregiver(v) {
		if acc, err = s.screenAccessLog(ctx, sess.PersonID, acc); err != nil {
			return err
		}
	}
	p.CanDispute = sess.Role == RolePatient
	var disputes map[int64]Dispute
	if p.CanDispute {
		if disputes, err = s.privacy.Disputes(ctx, sess.PersonID); err != nil {
			return err
		}
		notices, err := s.privacy.Notices(ctx, sess.PersonID)
		if err != nil {
			return err
		}
		for _, n := range notices {
			p.Notices = append(p.Notices, noticeRow{ID: n.ID, Org: n.Org, Reason: btgReasonWords(n.ReasonCode),
				Declared: n.Declared.In(loc), Expires: n.Expires.In(loc)})
		}
	}
	p.Flash = s.takeFlash(c)
	p.Mine = c.QueryParam("mine") == "1"
	for _, a := range acc {
		r := accessRowOf(a, names, loc, sess.Role == RolePatient)
		if r.Own && !p.Mine {
			p.Hidden++
			continue
		}
		if d, ok := disputes[a.Seq]; ok {
			r.Dispute = &d
		}
		p.Rows = append(p.Rows, r)
	}
	return s.render(c, http.StatusOK, "access", p)
}

// screenAccessLog returns acc as a caregiver without sensitive access may see it: the
// accesses screenAccesses hides are left out (before anything on the page counts rows), and
// the sensitive resources of the others are left out of their data classes.
func (s *Server) screenAccessLog(ctx context.Context, personID string, acc []audit.Access) ([]audit.Access, error) {
	return screenRows(ctx, s, personID, acc, func(a audit.Access) int64 { return a.Seq },
		func(a *audit.Access, sc accessScreen) { a.DataClasses = sc.classes })
}

// markNoticeSeen marks one of the patient's notices read (CSRF-checked by the chain) and
// returns to the access log. Another person's notice, or one already read, is a 404.
func (s *Server) markNoticeSeen(c echo.Context) error {
	sess, _ := session(c)
	id, err := strconv.ParseInt(c.FormValue("notice"), 10, 64)
	if err != nil || id <= 0 {
		return errs.E("portal.markNoticeSeen", errs.Invalid, "no notice given")
	}
	if err := s.privacy.MarkNoticeSeen(c.Request().Context(), sess.PersonID, id, s.now()); err != nil {
		return err
	}
	s.setFlash(c, "Notice marked as read. The access stays in the list below.")
	return c.Redirect(http.StatusSeeOther, "/access")
}

// parseDateRange parses optional YYYY-MM-DD dates in loc: from is the start of its day, to
// the end of its day. ok is false for a malformed date or from after to.
func parseDateRange(fs, ts string, loc *time.Location) (from, to time.Time, ok bool) {
	var err error
	if fs != "" {
		if from, err = time.ParseInLocation("2006-01-02", fs, loc); err != nil {
			return time.Time{}, time.Time{}, false
		}
	}
	if ts != "" {
		if to, err = time.ParseInLocation("2006-01-02", ts, loc); err != nil {
			return time.Time{}, time.Time{}, false
		}
		to = to.AddDate(0, 0, 1).Add(-time.Microsecond)
	}
	if !from.IsZero() && !to.IsZero() && from.After(to) {
		return time.Time{}, time.Time{}, false
	}
	return from, to, true
}

// accessRowOf puts access a in words. self is true when the patient themself reads the
// row; otherwise (a caregiver, an officer) the row speaks of "the patient", not "you".
func accessRowOf(a audit.Access, names map[string]string, loc *time.Location, self bool) accessRow {
	r := accessRow{Seq: a.Seq, Own: a.Role == consent.RolePatient, Time: a.Time.In(loc), Role: roleWords(a.Role), Purpose: purposeWords(a.Purpose),
		Action: actionWords(a.Action), BreakGlass: a.BreakGlass || a.Purpose == consent.PurposeBreakGlass || a.Action == audit.BreakGlass,
		ShareLink: a.ShareLink}
	switch {
	case a.Org != "" && names[a.Org] != "":
		r.Org = names[a.Org]
	case a.Org != "":
		r.Org = a.Org
	case a.ShareLink:
		r.Org = "Someone using your share link"
	case a.Role == consent.RolePatient:
		r.Org = "You"
	default:
		r.Org = "Concord"
	}
	if a.ShareLink && a.Role == "" {
		r.Role = "Share link holder"
	}
	r.Data = classWords(a.DataClasses)
	if !self {
		r.Org, r.Role, r.Purpose, r.Data = thirdPerson(r.Org), thirdPerson(r.Role), thirdPerson(r.Purpose), thirdPerson(r.Data)
	}
	return r
}

// thirdPerson rewrites the patient-facing words of roleWords, purposeWords and accessRowOf,
// and each item of a classWords list, for a reader who is not the patient: "Your details"
// becomes "The patient's details". Other words come back as they are.
func thirdPerson(s string) string {
	if w, ok := thirdPersonWords[s]; ok {
		return w
	}
	if !strings.Contains(s, ", ") {
		return s
	}
	parts := strings.Split(s, ", ")
	for i, p := range parts {
		if w, ok := thirdPersonWords[p]; ok {
			parts[i] = w
		}
	}
	return strings.Join(parts, ", ")
}

var thirdPersonWords = map[string]string{
	"Someone using your share link": "Someone using the patient's share link",
	"Your own request":              "The patient's own request",
	"Your details":                  "The patient's details",
	"Your sharing choices":          "The patient's sharing choices",
	"You":                           "The patient",
}

// classWords names resource types for people ("Lab results and measurements, Allergies"),
// in the order given, each name once: DocumentReference and Binary are both "Documents".
func classWords(types []string) string {
	words := make([]string, 0, len(types))
	for _, t := range types {
		if w := dataWords(t); !slices.Contains(words, w) {
			words = append(words, w)
		}
	}
	return strings.Join(words, ", ")
}

// purposeWords names a v3-ActReason purpose of use in plain words.
func purposeWords(p string) string {
	switch p {
	case consent.PurposeTreatment:
		return "Treatment"
	case consent.PurposeEmergencyTreatment:
		return "Emergency treatment"
	case consent.PurposeBreakGlass:
		return "Emergency access"
	case consent.PurposePatientRequest:
		return "Your own request"
	case consent.PurposePayment:
		return "Payment"
	case consent.PurposeOperations:
		return "Health care operations"
	case consent.PurposePublicHealth:
		return "Public health"
	case "":
		return "Not stated"
	default:
		return p
	}
}

// roleWords names an actor role in plain words.
func roleWords(r string) string {
	switch r {
	case consent.RoleClinician:
		return "Clinician"
	case consent.RoleSystem:
		return "Organization's computer system"
	case consent.RolePatient:
		return "You"
	case consent.RoleProxy:
		return "Caregiver"
	case consent.RoleOfficer:
		return "Privacy officer"
	case consent.RoleShare:
		return "Share link holder"
	case "":
		return "Not stated"
	default:
		return r
	}
}

// actionWords names what an access did.
func actionWords(a audit.Action) string {
	switch a {
	case audit.Read:
		return "Viewed"
	case audit.Query:
		return "Searched"
	case audit.Disclosure:
		return "Received a copy"
	case audit.Export:
		return "Exported"
	case audit.BreakGlass:
		return "Declared emergency access"
	default:
		return string(a)
	}
}

// dataWords names a FHIR resource type as a class of data.
func dataWords(t string) string {
	switch t {
	case "Observation":
		return "Lab results and measurements"
	case "Condition":
		return "Problems and diagnoses"
	case "MedicationRequest", "MedicationStatement", "MedicationAdministration":
		return "Medications"
	case "AllergyIntolerance":
		return "Allergies"
	case "Immunization":
		return "Immunizations"
	case "DocumentReference", "Binary":
		return "Documents"
	case "Encounter":
		return "Visits"
	case "Patient":
		return "Your details"
	case "DiagnosticReport":
		return "Test reports"
	case "Procedure":
		return "Procedures"
	case "Consent":
		return "Your sharing choices"
	default:
		return t
	}
}

// disputeAccess records the patient's report of one access in their log, then returns to
// the log with a note. The report goes to the privacy officers' review list.
func (s *Server) disputeAccess(c echo.Context) error {
	sess, _ := session(c)
	seq, err := strconv.ParseInt(c.FormValue("seq"), 10, 64)
	if err != nil {
		return errs.E("portal.disputeAccess", errs.NotFound, "no such access")
	}
	reason := strings.TrimSpace(c.FormValue("reason"))
	switch {
	case reason == "":
		s.setFlash(c, "Please say briefly why you do not recognise the access, then send the report again.")
	case len([]rune(reason)) > 1000:
		s.setFlash(c, "Please keep the report to 1,000 characters.")
	default:
		err := s.privacy.Dispute(c.Request().Context(), s.patientViewer(c, sess), seq, reason)
		switch {
		case errs.Is(err, errs.Conflict):
			s.setFlash(c, "You have already reported this access.")
		case err != nil:
			return err
		default:
			s.setFlash(c, "Thank you. A privacy officer will review this access; the result will show here.")
		}
	}
	return c.Redirect(http.StatusSeeOther, "/access")
}

// limitedCaregiver reports whether v is a caregiver whose grant leaves sensitive
// information out (Viewer.ProxySensitive off). Such a caregiver's access log and accounting
// of disclosures leave out what would reveal it: see screenAccesses.
func limitedCaregiver(v Viewer) bool { return v.Role == RoleProxy && !v.ProxySensitive }

// accessScreen is what a caregiver without sensitive access may see of one access event.
type accessScreen struct {
	// hide: the access is left out whole. Its organization is a 42 CFR Part 2 program, or
	// every resource it names is sensitive.
	hide bool
	// cut: some of the resources it names are sensitive and are left out; classes (distinct
	// types, sorted) and count describe the rest.
	cut     bool
	classes []string
	count   int
}

// accessScreener tells what a caregiver without sensitive access may see of a person's
// accesses. *PrivacyStore implements it; a Privacy that does not cannot serve such a
// caregiver's access log or accounting (they fail closed with errs.Unavailable).
type accessScreener interface {
	// screenAccesses returns, by seq, the screen of each of personID's audit events seqs
	// (events of other persons are absent, and absent means hidden). errs.Unavailable when
	// the database fails.
	screenAccesses(ctx context.Context, personID string, seqs []int64) (map[int64]accessScreen, error)
}

// screenAccesses returns the screens of personID's accesses seqs for a caregiver without
// sensitive access, or errs.Unavailable when s.privacy cannot tell them (nothing is then
// shown: the caregiver sees an error, never an unscreened row).
func (s *Server) screenAccesses(ctx context.Context, personID string, seqs []int64) (map[int64]accessScreen, error) {
	sc, ok := s.privacy.(accessScreener)
	if !ok {
		return nil, errs.E("portal.screenAccesses", errs.Unavailable, "this privacy service cannot screen accesses for a caregiver")
	}
	return sc.screenAccesses(ctx, personID, seqs)
}

// screenRows returns the rows of personID's accesses (audit events seq(row)) that
// s.screenAccesses leaves a caregiver without sensitive access, in order; cut trims a row
// whose screen cuts it to what is not sensitive. It returns screenAccesses' error, and no
// rows with it.
func screenRows[T any](ctx context.Context, s *Server, personID string, rows []T, seq func(T) int64, cut func(*T, accessScreen)) ([]T, error) {
	seqs := make([]int64, len(rows))
	for i, r := range rows {
		seqs[i] = seq(r)
	}
	screens, err := s.screenAccesses(ctx, personID, seqs)
	if err != nil {
		return nil, err
	}
	out := make([]T, 0, len(rows))
	for _, r := range rows {
		sc, ok := screens[seq(r)]
		if !ok || sc.hide {
			continue
		}
		if sc.cut {
			cut(&r, sc)
		}
		out = append(out, r)
	}
	return out, nil
}

// screenAccesses implements accessScreener from the audit events' organizations and
// resources ("Type/id"). An access is hidden when its organization is a member flagged as a
// 42 CFR Part 2 program (naming the program tells that the patient is treated there,
// §2.13(c)). A resource it names is sensitive when:
//   - a FHIR resource: any stored version of it carries a sensitive label
//     (consent.Sensitive, as proxyKeep decides for the caregiver's pages; a body that does
//     not decode counts as sensitive) or its source member is a Part 2 program;
//   - a Binary or a document: its document's labels, or its member, say so;
//   - a portal message thread (Communication of an event with reason portal-message): its
//     member is a Part 2 program, as MessageStore hides it.
//
// A resource found nowhere (a Consent directive, a deleted row) is not sensitive. Labels
// are those stored now: the audit event does not record which version it disclosed, so
// every version is read and any sensitive one counts.
func (p *PrivacyStore) screenAccesses(ctx context.Context, personID string, seqs []int64) (map[int64]accessScreen, error) {
	const op = "portal.PrivacyStore.screenAccesses"
	out := map[int64]accessScreen{}
	if len(seqs) == 0 {
		return out, nil
	}
	members := map[string]bool{} // member ID → Part 2 program
	rows, err := p.db.Query(ctx, `SELECT id, part2_program FROM directory_members`)
	if err != nil {
		return nil, db.Map(op, err)
	}
	for rows.Next() {
		var id string
		var part2 bool
		if err := rows.Scan(&id, &part2); err != nil {
			rows.Close()
			return nil, db.Map(op, err)
		}
		members[id] = part2
	}
	if err := db.Map(op, rows.Err()); err != nil {
		return nil, err
	}

	type event struct {
		seq       int64
		org       string
		message   bool // a portal message read: its Communication is a thread
		resources []audit.Resource
	}
	var evs []event
	rows, err = p.db.Query(ctx, `SELECT seq, org, reason, resources FROM audit_events WHERE patient = $1 AND seq = ANY($2)`, personID, seqs)
	if err != nil {
		return nil, db.Map(op, err)
	}
	for rows.Next() {
		var ev event
		var reason string
		var res []string
		if err := rows.Scan(&ev.seq, &ev.org, &reason, &res); err != nil {
			rows.Close()
			return nil, db.Map(op, err)
		}
		ev.message = reason == "portal-message"
		for _, r := range res {
			typ, id, ok := strings.Cut(r, "/")
			if !ok || typ == "" || id == "" {
				continue
			}
			ev.resources = append(ev.resources, audit.Resource{Type: typ, ID: id})
		}
		evs = append(evs, ev)
	}
	if err := db.Map(op, rows.Err()); err != nil {
		return nil, err
	}

	// The resources to look up, by kind, each once.
	var fhirTypes, fhirIDs, binaries, docs []string
	var threads []int64
	seen := map[string]bool{}
	for _, ev := range evs {
		for _, r := range ev.resources {
			key := r.String()
			if ev.message && r.Type == "Communication" {
				key = "thread:" + r.ID
			}
			if seen[key] {
				continue
			}
			seen[key] = true
			switch {
			case ev.message && r.Type == "Communication":
				if id, err := strconv.ParseInt(r.ID, 10, 64); err == nil {
					threads = append(threads, id)
				}
			case r.Type == "Binary":
				binaries = append(binaries, r.ID)
			default:
				if r.Type == "DocumentReference" {
					docs = append(docs, r.ID)
				}
				fhirTypes, fhirIDs = append(fhirTypes, r.Type), append(fhirIDs, r.ID)
			}
		}
	}
	sensitive := map[string]bool{} // "Type/id" or "thread:id" → sensitive
	mark := func(key, member string, labels []string) {
		if members[member] || consent.Sensitive(labels) {
			sensitive[key] = true
		}
	}
	if len(fhirIDs) > 0 {
		// Only bodies that can hold labels are read.
		rows, err := p.db.Query(ctx, `SELECT h.type, h.id, h.member_id,
				CASE WHEN position('"security"'::bytea IN h.body) > 0 THEN h.body END
			FROM unnest($1::text[], $2::text[]) AS k(type, id) JOIN fhir_history h ON h.type = k.type AND h.id = k.id`, fhirTypes, fhirIDs)
		if err != nil {
			return nil, db.Map(op, err)
		}
		for rows.Next() {
			var typ, id, member string
			var body []byte
			if err := rows.Scan(&typ, &id, &member, &body); err != nil {
				rows.Close()
				return nil, db.Map(op, err)
			}
			labels, ok := securityCodes(body)
			if !ok {
				sensitive[typ+"/"+id] = true
				continue
			}
			mark(typ+"/"+id, member, labels)
		}
		if err := db.Map(op, rows.Err()); err != nil {
			return nil, err
		}
	}
	if len(binaries) > 0 || len(docs) > 0 {
		rows, err := p.db.Query(ctx, `SELECT 'Binary/' || c.binary_id, coalesce(c.member_id, d.member_id, ''), coalesce(d.security, '{}')
			FROM documents_contents c LEFT JOIN documents_metadata d ON d.id = c.document_id WHERE c.binary_id = ANY($1)
			UNION ALL
			SELECT 'DocumentReference/' || d.id, coalesce(d.member_id, ''), d.security FROM documents_metadata d WHERE d.id = ANY($2)`,
			binaries, docs)
		if err != nil {
			return nil, db.Map(op, err)
		}
		for rows.Next() {
			var key, member string
			var labels []string
			if err := rows.Scan(&key, &member, &labels); err != nil {
				rows.Close()
				return nil, db.Map(op, err)
			}
			mark(key, member, labels)
		}
		if err := db.Map(op, rows.Err()); err != nil {
			return nil, err
		}
	}
	if len(threads) > 0 {
		rows, err := p.db.Query(ctx, `SELECT id, member_id FROM portal_message_threads WHERE person_id = $1 AND id = ANY($2)`, personID, threads)
		if err != nil {
			return nil, db.Map(op, err)
		}
		for rows.Next() {
			var id int64
			var member string
			if err := rows.Scan(&id, &member); err != nil {
				rows.Close()
				return nil, db.Map(op, err)
			}
			if members[member] {
				sensitive["thread:"+strconv.FormatInt(id, 10)] = true
			}
		}
		if err := db.Map(op, rows.Err()); err != nil {
			return nil, err
		}
	}

	for _, ev := range evs {
		if members[ev.org] {
			out[ev.seq] = accessScreen{hide: true}
			continue
		}
		var kept []audit.Resource
		for _, r := range ev.resources {
			key := r.String()
			if ev.message && r.Type == "Communication" {
				key = "thread:" + r.ID
			}
			if !sensitive[key] {
				kept = append(kept, r)
			}
		}
		switch {
		case len(kept) == len(ev.resources):
			out[ev.seq] = accessScreen{}
		case len(kept) == 0:
			out[ev.seq] = accessScreen{hide: true}
		default:
			types := make([]string, 0, len(kept))
			for _, r := range kept {
				if !slices.Contains(types, r.Type) {
					types = append(types, r.Type)
				}
			}
			slices.Sort(types)
			out[ev.seq] = accessScreen{cut: true, classes: types, count: len(kept)}
		}
	}
	return out, nil
}

// securityCodes returns the codes of body's meta.security (fhir.ConsentCodes, as every
// disclosure path reads them); none for a nil body (one with no "security" member). ok is
// false when body is not a well-formed resource.
func securityCodes(body []byte) ([]string, bool) {
	if body == nil {
		return nil, true
	}
	codes, _, ok := fhir.ConsentCodes(body)
	return codes, ok
}
