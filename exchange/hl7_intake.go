package exchange

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/directory"
	"github.com/concord-hie/concord/exchange/hl7v2"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
	mpistore "github.com/concord-hie/concord/mpi/store"
	"github.com/concord-hie/concord/records"
)

// HL7Options tune the HL7 v2 intake.
type HL7Options struct {
	// Timeout bounds the handling of one message, database included (10 s when 0). A
	// message that runs out of time is rolled back and answered AR (resend later).
	Timeout time.Duration
	// Location is the time zone of v2 timestamps sent without an offset (UTC when nil).
	Location *time.Location
	// Audit records the MPI side of an A40/A34 merge (the retired record leaves its
	// person) in the message's transaction, as the steward's operations do: *audit.Log.
	// Without it the MPI is never changed unaudited: merges re-point the member's
	// resources only, the retired record stays linked, and a warning is logged.
	Audit mpistore.Auditor
}

// HL7Intake stores HL7 v2 messages that arrive over MLLP as the sending member's FHIR
// records. It implements hl7v2.Handler (HandleHL7) and provides the listener's
// Authenticator (Authenticate). Every message is mapped, checked against the directory
// (its MSH-3/MSH-4 must be registered to the connection's member, its PID-3 and MRG-1
// authorities must be the member's), and stored in one transaction together with its
// dedupe row; AA is returned only after that transaction commits. MDM documents (T02,
// T04, T06, T10, T11: hl7_mdm.go) need the server's document service; without one they
// are AR.
type HL7Intake struct {
	srv  *Server
	opts HL7Options
}

var _ hl7v2.Handler = (*HL7Intake)(nil)

// NewHL7Intake returns the HL7 v2 intake of s. It uses s's pool, directory, FHIR store,
// MPI and logger.
func NewHL7Intake(s *Server, o HL7Options) *HL7Intake {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Location == nil {
		o.Location = time.UTC
	}
	return &HL7Intake{srv: s, opts: o}
}

func (h *HL7Intake) log() *slog.Logger {
	if h.srv.Log != nil {
		return h.srv.Log
	}
	return slog.New(slog.DiscardHandler)
}

// Authenticate resolves the member behind an MLLP connection: by the verified client
// certificate's CN or DNS SANs when there is one, else by the source address allowlist
// (the longest registered prefix that contains it). When several members share that
// prefix (the demo's loopback), it returns "" and the intake attributes each message by
// its MSH-4 among those members. It returns errs.Unauthenticated when nothing matches and
// errs.Unavailable when the directory cannot be read.
func (h *HL7Intake) Authenticate(ctx context.Context, c hl7v2.ConnInfo) (string, error) {
	const op = "exchange.HL7Intake.Authenticate"
	if c.PeerCert != nil {
		names := append([]string{c.PeerCert.Subject.CommonName}, c.PeerCert.DNSNames...)
		m, err := h.srv.Directory.HL7CertMember(ctx, names)
		if errs.CodeOf(err) == errs.NotFound || errs.CodeOf(err) == errs.Conflict {
			return "", errs.E(op, errs.Unauthenticated, "client certificate not registered", err)
		}
		return m, err
	}
	ms, err := h.addressMembers(ctx, c.RemoteAddr)
	if err != nil {
		return "", err
	}
	switch len(ms) {
	case 0:
		return "", errs.E(op, errs.Unauthenticated, "address not allowed")
	case 1:
		return ms[0], nil
	}
	return "", nil
}

// addressMembers returns the members of the longest registered prefix containing addr.
func (h *HL7Intake) addressMembers(ctx context.Context, addr net.Addr) ([]string, error) {
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return nil, nil
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return nil, nil
	}
	rows, err := h.srv.Directory.HL7AddressMembers(ctx, nil, ip.Unmap())
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range rows {
		if r.Bits != rows[0].Bits {
			break
		}
		out = append(out, r.MemberID)
	}
	return out, nil
}

// HandleHL7 maps, checks and stores one message and answers it: AA once committed (or the
// stored answer of a message already received with the same MSH-3, MSH-4 and MSH-10), AE
// for content errors (also stored, so a repeat gets the same AE), AR for unsupported
// messages and when the message cannot be processed now (database down, timeout). The
// log line carries IDs, codes and timings only.
func (h *HL7Intake) HandleHL7(ctx context.Context, conn hl7v2.ConnInfo, msg *hl7v2.Message) hl7v2.Ack {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, h.opts.Timeout)
	defer cancel()
	out := h.handle(ctx, conn, msg)
	lvl := slog.LevelInfo
	if c := errs.CodeOf(out.err); out.err != nil && (c == errs.Unavailable || c == errs.Internal) {
		lvl = slog.LevelWarn
	}
	attrs := []any{"conn", conn.ID, "member", out.member, "control_id", msg.Header().ControlID,
		"type", out.typ, "ack", string(out.ack.Code), "err", int(out.ack.Err), "loc", out.ack.Loc,
		"resources", out.resources, "duplicate", out.duplicate, "ms", time.Since(start).Milliseconds()}
	if out.err != nil {
		attrs = append(attrs, "cause", errs.CodeOf(out.err).String(), "op", opOf(out.err))
	}
	h.log().Log(ctx, lvl, "hl7v2 intake", attrs...)
	return out.ack
}

// opOf names the failing operation for the log, never the cause's text (which may hold
// database details but must not hold PHI either way).
func opOf(err error) string {
	var e *errs.Error
	if errors.As(err, &e) {
		return e.Op
	}
	return ""
}

type intakeResult struct {
	ack       hl7v2.Ack
	member    string
	typ       string
	resources int
	duplicate bool
	err       error
}

// ackFor is hl7v2.AckFromError with standards.md's exception: an identifier or sender not
// registered to the member (table 0357 code 204), or a key already used for something else
// (205: an MDM document number), is the sender's content error, AE, not AR: resending it
// as is cannot succeed.
func ackFor(err error) hl7v2.Ack {
	a := hl7v2.AckFromError(err)
	if p := hl7v2.ProblemOf(err); p != nil && (p.Code == hl7v2.UnknownKeyIdentifier || p.Code == hl7v2.DuplicateKeyIdentifier) {
		a.Code = hl7v2.AE
	}
	return a
}

// content reports whether err is the sender's fault (AE), as opposed to unsupported or
// transient (AR).
func content(err error) bool {
	return ackFor(err).Code == hl7v2.AE
}

func reject204(loc, text string) error {
	e := errs.E("exchange.HL7Intake", errs.Invalid, text, &hl7v2.Problem{Code: hl7v2.UnknownKeyIdentifier, Loc: loc, Text: text})
	e.Path = loc
	return e
}

func (h *HL7Intake) handle(ctx context.Context, conn hl7v2.ConnInfo, msg *hl7v2.Message) (res intakeResult) {
	mapped, err := hl7v2.Map(msg, hl7v2.MapOptions{Location: h.opts.Location})
	if err != nil {
		return intakeResult{ack: ackFor(err), typ: msg.Header().Type, err: err}
	}
	res.typ = mapped.Type + "^" + mapped.Event
	if mapped.Document != nil && h.srv.Documents == nil {
		err := errs.E("exchange.HL7Intake", errs.Unsupported, "Document intake is not configured",
			&hl7v2.Problem{Code: hl7v2.UnsupportedMessageType, Loc: "MSH-9", Text: "Document intake is not configured"})
		return intakeResult{ack: ackFor(err), typ: res.typ, err: err}
	}
	member, err := h.senderMember(ctx, conn, msg)
	if err != nil {
		res.ack, res.err = ackFor(err), err
		return res
	}
	res.member = member.ID
	if err := h.pinFacility(ctx, msg, member, mapped); err != nil {
		res.ack, res.err = ackFor(err), err
		return res
	}
	key := mapped.Key
	var stored *hl7v2.Ack
	// Two connections of one member may create the same new Patient at once; the loser's
	// unique violation (Conflict) is retried once, and then finds the winner's record.
	v := hl7Viewer(conn, member, key.ControlID)
	digest := msg.Digest()
	for attempt := 0; attempt < 2; attempt++ {
		err = h.storeOnce(ctx, v, member, mapped, digest[:], &stored, &res.resources)
		if errs.CodeOf(err) != errs.Conflict {
			break
		}
	}
	switch {
	case err == nil && stored != nil:
		res.ack, res.duplicate = *stored, true
	case err == nil:
		res.ack = hl7v2.Accept()
	case content(err):
		res.ack, res.err, res.resources = ackFor(err), err, 0
		h.rememberAE(ctx, key, member.ID, digest[:], res.ack)
	default:
		res.ack, res.err, res.resources = ackFor(err), err, 0
	}
	return res
}

// hl7Viewer is who sends a message, for its audit events: the member's system (actor
// "hl7v2|member" and client "hl7v2"; the MPI side of a merge names the same), no purpose,
// the message control ID (MSH-10) as the request ID, and the connection's address.
func hl7Viewer(conn hl7v2.ConnInfo, member directory.Member, controlID string) records.Viewer {
	v := records.Viewer{Actor: "hl7v2|" + member.ID, Client: "hl7v2", Org: member.ID, Role: consent.RoleSystem, RequestID: controlID}
	if conn.RemoteAddr != nil {
		v.SourceIP = conn.RemoteAddr.String()
		if host, _, err := net.SplitHostPort(v.SourceIP); err == nil {
			v.SourceIP = host
		}
	}
	return v
}

// storeOnce runs the message's one transaction: the dedupe row first, with the message's
// digest (a concurrent duplicate waits on it, then reads the first one's answer into
// *stored: storedAck), then the data,
// and last the audit events of what it wrote (auditWrites: one per person and action, for
// v; a merge's writes under both persons it is about). An event that cannot be written
// rolls the message back with errs.Unavailable: AR, and nothing remembered for its MSH-10,
// so a resend is processed.
func (h *HL7Intake) storeOnce(ctx context.Context, v records.Viewer, member directory.Member, mapped *hl7v2.Mapped, digest []byte, stored **hl7v2.Ack, written *int) error {
	key := mapped.Key
	return db.InTx(ctx, h.srv.Pool, func(tx db.Querier) (err error) {
		// A panic below must not leave the transaction (and its connection) open: turn it
		// into an error so InTx rolls back; the sender gets AR 207 and resends.
		defer func() {
			if r := recover(); r != nil {
				err = errs.E("exchange.HL7Intake.handle", errs.Internal, "panic while storing a message")
			}
		}()
		*stored, *written = nil, 0
		tag, err := tx.Exec(ctx, `INSERT INTO exchange_hl7_messages(msh3, msh4, msh10, member_id, ack_code, digest) VALUES ($1, $2, $3, $4, 'AA', $5)
			ON CONFLICT DO NOTHING`, key.SendingApp, key.SendingFacility, key.ControlID, member.ID, digest)
		if err != nil {
			return db.Map("exchange.HL7Intake.dedupe", err)
		}
		if tag.RowsAffected() == 0 {
			a, err := storedAck(ctx, tx, key, member.ID, digest)
			*stored = &a
			return err
		}
		var w records.Writes
		n, err := h.store(ctx, tx, v, member, mapped, &w)
		if err != nil {
			return err
		}
		*written = n
		_, err = tx.Exec(ctx, `UPDATE exchange_hl7_messages SET resources = $4 WHERE msh3 = $1 AND msh4 = $2 AND msh10 = $3`,
			key.SendingApp, key.SendingFacility, key.ControlID, n)
		if err != nil {
			return db.Map("exchange.HL7Intake.dedupe", err)
		}
		return h.srv.auditWrites(ctx, tx, v, &w)
	})
}

// storedAck reads the answer already given to key, for a message with this digest. A key
// stored for another member is answered AE 205 (duplicate key identifier); it cannot
// happen while MSH-4 is registered to one member only. So is a key first used for a
// message with other content (another digest): the sender reused a control ID, and
// answering it with the first message's ACK would drop it unseen. A row from before
// digests were kept (NULL) answers as it always did.
func storedAck(ctx context.Context, q db.Querier, key hl7v2.DedupeKey, memberID string, digest []byte) (hl7v2.Ack, error) {
	var a hl7v2.Ack
	var code, owner string
	var errCode int
	var first []byte
	err := q.QueryRow(ctx, `SELECT member_id, ack_code, err_code, err_loc, ack_text, digest FROM exchange_hl7_messages
		WHERE msh3 = $1 AND msh4 = $2 AND msh10 = $3`, key.SendingApp, key.SendingFacility, key.ControlID).
		Scan(&owner, &code, &errCode, &a.Loc, &a.Text, &first)
	if err != nil {
		return a, db.Map("exchange.storedAck", err)
	}
	if owner != memberID {
		return hl7v2.Ack{Code: hl7v2.AE, Err: hl7v2.DuplicateKeyIdentifier, Loc: "MSH-10", Text: "Duplicate message control ID"}, nil
	}
	if first != nil && !bytes.Equal(first, digest) {
		return hl7v2.Ack{Code: hl7v2.AE, Err: hl7v2.DuplicateKeyIdentifier, Loc: "MSH-10",
			Text: "This message control ID was already used for a different message; send it with a new MSH-10"}, nil
	}
	a.Code, a.Err = hl7v2.AckCode(code), hl7v2.ErrCode(errCode)
	return a, nil
}

// rememberAE stores a content error's answer, with the message's digest, so a resend gets
// the same AE. It is best effort: if the database fails now, the resend is checked again
// and answered the same.
func (h *HL7Intake) rememberAE(ctx context.Context, key hl7v2.DedupeKey, memberID string, digest []byte, a hl7v2.Ack) {
	_, err := h.srv.Pool.Exec(ctx, `INSERT INTO exchange_hl7_messages(msh3, msh4, msh10, member_id, ack_code, err_code, err_loc, ack_text, digest)
		VALUES ($1, $2, $3, $4, 'AE', $5, $6, $7, $8) ON CONFLICT DO NOTHING`,
		key.SendingApp, key.SendingFacility, key.ControlID, memberID, int(a.Err), a.Loc, a.Text, digest)
	if err != nil {
		h.log().Warn("hl7v2 intake: could not remember AE", "member", memberID, "control_id", key.ControlID, "cause", errs.CodeOf(db.Map("", err)).String())
	}
}

// hdForms returns the forms of an HD field (MSH-3, MSH-4) a registration may name: the raw
// field, its namespace ID and its universal ID.
func hdForms(f hl7v2.Field) []string {
	out := []string{f.Raw()}
	for _, s := range []string{f.Comp(1).String(), f.Comp(2).String()} {
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// senderMember returns the member whose registered MSH-3/MSH-4 the message names, and
// checks that the connection belongs to that member: the authenticated member, or, on a
// connection shared by several members' address registrations, one of them.
func (h *HL7Intake) senderMember(ctx context.Context, conn hl7v2.ConnInfo, msg *hl7v2.Message) (directory.Member, error) {
	msh := msg.MSH()
	notMine := reject204("MSH-4", "Sending facility not registered to this connection's member")
	id, err := h.srv.Directory.HL7SenderMember(ctx, nil, hdForms(msh.Field(3)), hdForms(msh.Field(4)))
	if err != nil && (errs.CodeOf(err) == errs.NotFound || errs.CodeOf(err) == errs.Conflict) {
		return directory.Member{}, notMine
	}
	if err != nil {
		return directory.Member{}, err
	}
	if conn.Member != "" {
		if conn.Member != id {
			return directory.Member{}, notMine
		}
	} else {
		ms, err := h.addressMembers(ctx, conn.RemoteAddr)
		if err != nil {
			return directory.Member{}, err
		}
		if !slices.Contains(ms, id) {
			return directory.Member{}, notMine
		}
	}
	return h.srv.Directory.Member(ctx, id)
}

// resolveIdentifiers rewrites the systems of every PID-3 (and MRG-1) identifier to the
// directory's: an authority registered to the member (as a system, or as a v2 namespace
// ID) becomes that system. It refuses (AE 204) an identifier whose authority is another
// member's, or an OID/UUID/URI authority that is not the member's; namespace IDs nobody
// registered (national numbers) are kept as sent. Each patient needs an identifier in the
// member's MRN system; it returns those MRNs, per subject, and the retired MRN of a merge.
func (h *HL7Intake) resolveIdentifiers(ctx context.Context, tx db.Querier, member directory.Member, m *hl7v2.Mapped) ([]hl7v2.Identifier, *hl7v2.Identifier, error) {
	var keys []string
	addKeys := func(cxs []hl7v2.CX) {
		for _, c := range cxs {
			keys = append(keys, c.System())
			if c.UniversalID == "" && c.Namespace != "" {
				keys = append(keys, c.Namespace)
			}
		}
	}
	for _, s := range m.Subjects {
		addKeys(s.IDs)
	}
	if m.Merge != nil {
		addKeys(m.Merge.Retired)
	}
	if d := m.Document; d != nil {
		addKeys([]hl7v2.CX{d.Number})
		if d.Parent != nil {
			addKeys([]hl7v2.CX{*d.Parent})
		}
	}
	auth, err := h.srv.Directory.ResolveAuthorities(ctx, tx, keys)
	if err != nil {
		return nil, nil, err
	}
	// resolve returns the system to store for c, or an error text.
	resolve := func(c hl7v2.CX) (string, string) { return authoritySystem(auth, member, c, false) }
	pidLoc := func(i int) string {
		if i == 0 {
			return "PID-3"
		}
		return "PID[" + itoa(i+1) + "]-3"
	}
	mrns := make([]hl7v2.Identifier, len(m.Subjects))
	for si, s := range m.Subjects {
		p := m.Resources[s.Patient].Patient
		found := false
		for i, c := range s.IDs {
			sys, bad := resolve(c)
			if bad != "" {
				return nil, nil, reject204(pidLoc(si), bad)
			}
			p.Identifier[i].System = sys
			if sys == member.System && !found {
				found, mrns[si] = true, hl7v2.Identifier{System: sys, Value: c.Value}
			}
		}
		if !found {
			return nil, nil, reject204(pidLoc(si), "No identifier in an assigning authority registered to the sender")
		}
	}
	for _, r := range m.Resources {
		if ref := subjectOf(r); ref != nil && ref.Identifier != nil {
			mrn := mrns[r.Subject]
			ref.Identifier = &mrn
		}
	}
	if m.Document != nil {
		if err := resolveDocumentNumbers(auth, member, m); err != nil {
			return nil, nil, err
		}
	}
	if m.Merge == nil {
		return mrns, nil, nil
	}
	var retired *hl7v2.Identifier
	for _, c := range m.Merge.Retired {
		sys, bad := resolve(c)
		if bad != "" {
			return nil, nil, reject204("MRG-1", bad)
		}
		if sys == member.System && retired == nil {
			retired = &hl7v2.Identifier{System: sys, Value: c.Value}
		}
	}
	if retired == nil {
		return nil, nil, reject204("MRG-1", "No identifier in an assigning authority registered to the sender")
	}
	return mrns, retired, nil
}

// authoritySystem returns the system to store for the identifier c, given the directory's
// answer auth for its authority: the registered system when the authority is the
// member's, c's own system when nobody registered it (a national number's namespace), or
// an error text when it is another member's, or an OID/UUID/URI nobody registered.
// trusted is set for the sending facility (MSH-4), which the directory registered to the
// member as an HL7 sender: its universal ID is kept as sent when no authority has it,
// which is only when the registration names it (pinFacility drops one it does not).
func authoritySystem(auth map[string]directory.Authority, member directory.Member, c hl7v2.CX, trusted bool) (string, string) {
	a, ok := auth[c.System()]
	if !ok && c.UniversalID == "" && c.Namespace != "" {
		a, ok = auth[c.Namespace]
	}
	switch {
	case ok && a.MemberID != member.ID:
		return "", "Assigning authority registered to another member"
	case ok:
		return a.System, ""
	case c.UniversalID != "" && !trusted:
		return "", "Assigning authority not registered to the sender"
	}
	return c.System(), ""
}

func subjectOf(r hl7v2.Resource) *hl7v2.Reference {
	switch {
	case r.Encounter != nil:
		return r.Encounter.Subject
	case r.Report != nil:
		return r.Report.Subject
	case r.Observation != nil:
		return r.Observation.Subject
	case r.DocumentReference != nil:
		return r.DocumentReference.Subject
	}
	return nil
}

// store writes the mapped message in tx: Patients first (upserted by MRN through Ingest),
// then Encounters, Observations and an MDM's DocumentReference (putDocument: its content
// through the document service) in their patient's compartment, then DiagnosticReports
// (whose results point at the Observations), and for A40/A34 the merge, for MDM T04 and
// T11 the change of the stored document (changeDocument: its status, or the cancel). It
// returns how many resource versions it wrote, and records each write in w (a new
// resource is a create; a new version of a Patient, of a visit's Encounter, of a
// document whose status changed, cancelled or superseded, or of a merge's re-pointed
// resources an update; a Patient left as it was, or a document resent, nothing).
func (h *HL7Intake) store(ctx context.Context, tx db.Querier, v records.Viewer, member directory.Member, m *hl7v2.Mapped, w *records.Writes) (int, error) {
	const op = "exchange.HL7Intake.store"
	mrns, retired, err := h.resolveIdentifiers(ctx, tx, member, m)
	if err != nil {
		return 0, err
	}
	// Messages about the same patient on different connections take turns: without this,
	// two could each find no source record for a new MRN and each create a Patient. These
	// are the MRN keys every intake path takes (mrnLockKey), all of the message's at once
	// (LockConditions sorts them), so a message about two patients and a Bundle about the
	// same two cannot take them in opposite orders; Ingest's own MRN lock is then a re-lock.
	locks := make([]string, 0, len(mrns)+1)
	for _, id := range mrns {
		locks = append(locks, mrnLockKey(identifier{System: id.System, Value: id.Value}))
	}
	if retired != nil {
		locks = append(locks, mrnLockKey(identifier{System: retired.System, Value: retired.Value}))
	}
	if err := h.srv.FHIR.LockConditions(ctx, tx, member.ID, locks); err != nil {
		return 0, err
	}
	ids := make(map[string]string, len(m.Resources)) // FullURL → Type/id
	rewrite := func(ref string) (string, error) {
		if !strings.HasPrefix(ref, "urn:uuid:") {
			return ref, nil
		}
		if to, ok := ids[ref]; ok {
			return to, nil
		}
		return "", errs.E(op, errs.Internal, "reference to a resource not yet stored")
	}
	n := 0
	// New resources other than Patients are stored together at the end (createMany: one
	// round trip for the rows and their index rows); their ids are assigned here, so later
	// resources of the message can already point at them.
	cache := compartmentCache{}
	var bulk []store.Write
	put := func(r hl7v2.Resource) error {
		b, err := r.JSON()
		if err != nil {
			return err
		}
		res, err := fhir.Parse(b)
		if err != nil {
			return errs.E(op, errs.Invalid, "the message maps to an invalid "+r.Kind, err)
		}
		if res, err = fhir.RewriteReferences(res, rewrite); err != nil {
			return err
		}
		id, err := h.existingEncounter(ctx, tx, member, r)
		if err != nil {
			return err
		}
		if id == "" && r.Kind != hl7v2.KindPatient && bulkCreatable(res.ResourceType) {
			id = store.NewID()
			w, err := h.srv.bulkWrite(ctx, tx, member, res, id, cache)
			if err != nil {
				return err
			}
			bulk = append(bulk, w)
			ids[r.FullURL] = res.ResourceType + "/" + id
			n++
			return nil
		}
		st, status, err := h.srv.IngestAs(ctx, tx, member, res, id)
		if err != nil {
			return err
		}
		written(w, st, status, id != "")
		ids[r.FullURL] = st.Type + "/" + st.ID
		n++
		return nil
	}
	for pass := 0; pass < 3; pass++ {
		for _, r := range m.Resources {
			want := 1
			switch r.Kind {
			case hl7v2.KindPatient:
				want = 0
			case hl7v2.KindDiagnosticReport:
				want = 2
			}
			if want != pass {
				continue
			}
			if r.Kind == hl7v2.KindPatient {
				if err := h.putPatient(ctx, tx, member, r, mrns[r.Subject], ids, put); err != nil {
					return 0, err
				}
				continue
			}
			if r.Kind == hl7v2.KindDocumentReference {
				if err := h.putDocument(ctx, tx, member, m, r, ids, put); err != nil {
					return 0, err
				}
				continue
			}
			if err := put(r); err != nil {
				return 0, err
			}
		}
	}
	if len(bulk) > 0 {
		sts, err := h.srv.createMany(ctx, tx, bulk)
		if err != nil {
			return 0, err
		}
		for _, st := range sts {
			w.Stored(audit.Create, st)
		}
	}
	if d := m.Document; d != nil && (d.Action == hl7v2.DocumentCancel || d.Action == hl7v2.DocumentStatusChange) {
		k, err := h.changeDocument(ctx, tx, member, m, ids, w)
		if err != nil {
			return 0, err
		}
		n += k
	}
	if m.Merge != nil {
		survivor := strings.TrimPrefix(ids[m.Resources[m.Subjects[m.Merge.Survivor].Patient].FullURL], "Patient/")
		k, err := h.merge(ctx, tx, v, member, survivor, *retired, w)
		if err != nil {
			return 0, err
		}
		n += k
	}
	return n, nil
}

// putPatient stores a message's Patient through put unless the member's Patient with that
// MRN was last written by this intake from the same JSON and is still live at the version
// intake wrote: then it only records the Patient's id in ids, and writes nothing (no new
// version, no MPI re-match). A Patient deleted or updated through FHIR since (its version
// moved on) is written again, so intake never points a message at a gone Patient.
func (h *HL7Intake) putPatient(ctx context.Context, tx db.Querier, member directory.Member, r hl7v2.Resource, mrn hl7v2.Identifier,
	ids map[string]string, put func(hl7v2.Resource) error) error {
	const op = "exchange.HL7Intake.putPatient"
	b, err := r.JSON()
	if err != nil {
		return err
	}
	sum := sha256.Sum256(b)
	src, err := h.srv.MPI.SourceByIdentifier(ctx, tx, mrn.System, mrn.Value)
	switch {
	case err == nil && src.MemberID == member.ID:
		var hash []byte
		var version *int
		err := tx.QueryRow(ctx, `SELECT sha256, version FROM exchange_hl7_patients WHERE patient_id = $1`, src.PatientID).Scan(&hash, &version)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return db.Map(op, err)
		}
		if err == nil && version != nil && bytes.Equal(hash, sum[:]) {
			head, err := h.srv.FHIR.Lock(ctx, tx, "Patient", src.PatientID)
			if err != nil && errs.CodeOf(err) != errs.NotFound {
				return err
			}
			if err == nil && !head.Deleted && head.MemberID == member.ID && head.Version == *version {
				ids[r.FullURL] = "Patient/" + src.PatientID
				return nil
			}
		}
	case err != nil && errs.CodeOf(err) != errs.NotFound:
		return err
	}
	if err := put(r); err != nil {
		return err
	}
	id := strings.TrimPrefix(ids[r.FullURL], "Patient/")
	head, err := h.srv.FHIR.Lock(ctx, tx, "Patient", id)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO exchange_hl7_patients(patient_id, sha256, version) VALUES ($1, $2, $3)
		ON CONFLICT (patient_id) DO UPDATE SET sha256 = EXCLUDED.sha256, version = EXCLUDED.version`, id, sum[:], head.Version)
	return db.Map(op, err)
}

// existingEncounter returns the id of the member's Encounter with r's visit number
// (PV1-19), so A01, A03 and A08 of one visit update one Encounter; "" for a new visit or
// a resource that is not an Encounter with a visit number. It locks the visit number for
// the transaction first, so two messages of one new visit cannot both create it.
func (h *HL7Intake) existingEncounter(ctx context.Context, tx db.Querier, member directory.Member, r hl7v2.Resource) (string, error) {
	if r.Kind != hl7v2.KindEncounter || len(r.Encounter.Identifier) == 0 {
		return "", nil
	}
	vn := r.Encounter.Identifier[0]
	if vn.System == "" || vn.Value == "" {
		return "", nil
	}
	c := store.Condition{Type: "Encounter", System: vn.System, Value: vn.Value}
	ids, err := h.srv.FHIR.MatchLocked(ctx, tx, member.ID, c)
	if err != nil || len(ids) != 1 {
		return "", err
	}
	return ids[0], nil
}

// merge merges the member's Patient with MRN retired into survivor: the retired Patient
// gets active=false and a replaced-by link to the survivor (a new version), every resource
// in its compartment is re-pointed to the survivor (a new version whose Patient references
// are rewritten), the retired Patient's source record leaves its regional person in the
// MPI (retireSource), and the merge is recorded in exchange_hl7_merges. A retired MRN
// Concord never received is recorded with no retired Patient. It returns the versions
// written. A resent message (same MSH-10) never reaches here: storeOnce answers it from
// the dedupe row.
//
// A retired MRN whose Patient the member has since deleted (FHIR DELETE leaves the MPI
// source record) is treated like one never received: the merge is recorded with that
// Patient and nothing re-pointed, nothing is written, and the sender gets AA. The sender's
// merge is right in its own system, so AE 204 would ask it to fix a message it cannot
// fix, and AR (the Patient read's not-found) would have it resend, failing the same way
// each time, with its queue stuck behind the message for good. A deleted Patient is
// absent everywhere else too (putPatient writes it again before pointing a message at
// it); it is not brought back here to carry a replaced-by link, and what the member left
// in its compartment stays where the member left it. The retired Patient is locked
// before its compartment, so this is decided before anything is written.
//
// Every version written is an update about two persons, and is audited under both: the
// person the retired record belonged to before the merge, and the survivor's person (""
// for a Patient the MPI has no source record for). The re-pointed resources are recorded
// in w (they are in the survivor's compartment now); all of them and the retired Patient
// are filed in w (Writes.File) under both persons, resolved here rather than when the
// events are written, because retireSource moves the retired record to a new person of its
// own.
func (h *HL7Intake) merge(ctx context.Context, tx db.Querier, v records.Viewer, member directory.Member, survivor string, retired hl7v2.Identifier, w *records.Writes) (int, error) {
	const op = "exchange.HL7Intake.merge"
	controlID := v.RequestID
	src, err := h.srv.MPI.SourceByIdentifier(ctx, tx, retired.System, retired.Value)
	switch {
	case errs.CodeOf(err) == errs.NotFound:
		_, err := tx.Exec(ctx, `INSERT INTO exchange_hl7_merges(member_id, survivor_patient, msh10) VALUES ($1, $2, $3)`, member.ID, survivor, controlID)
		return 0, db.Map(op, err)
	case err != nil:
		return 0, err
	case src.MemberID != member.ID:
		return 0, reject204("MRG-1", "Assigning authority registered to another member")
	case src.PatientID == survivor:
		return 0, nil
	}
	old := src.PatientID
	head, err := h.srv.FHIR.Lock(ctx, tx, "Patient", old)
	switch {
	case errs.CodeOf(err) == errs.NotFound || (err == nil && (head.Deleted || head.MemberID != member.ID)):
		h.log().Info("hl7v2 merge: the retired Patient was deleted, nothing to retire", "member", member.ID, "msh10", controlID, "patient", old)
		_, err := tx.Exec(ctx, `INSERT INTO exchange_hl7_merges(member_id, survivor_patient, retired_patient, msh10) VALUES ($1, $2, $3, $4)`,
			member.ID, survivor, old, controlID)
		return 0, db.Map(op, err)
	case err != nil:
		return 0, err
	}
	write := func(res *fhir.Resource, id, patient string) store.Write {
		sw := h.srv.sourceWrite(member, res, id) // source tag and consent labels, as every write
		sw.PatientID = patient
		return sw
	}
	rows, err := tx.Query(ctx, `SELECT type, id, body FROM fhir_resources WHERE member_id = $1 AND patient_id = $2 AND NOT deleted
		ORDER BY type, id FOR UPDATE`, member.ID, old)
	if err != nil {
		return 0, db.Map(op, err)
	}
	type row struct {
		typ, id string
		body    []byte
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		return x, r.Scan(&x.typ, &x.id, &x.body)
	})
	if err != nil {
		return 0, db.Map(op, err)
	}
	from, to := "Patient/"+old, "Patient/"+survivor
	n := 0
	moved := make([]audit.Resource, 0, len(list)+1) // every version written, for the filed events
	for _, x := range list {
		res, err := fhir.Parse(x.body)
		if err != nil {
			return 0, errs.E(op, errs.Internal, err)
		}
		res, err = fhir.RewriteReferences(res, func(ref string) (string, error) {
			if ref == from {
				return to, nil
			}
			return ref, nil
		})
		if err != nil {
			return 0, err
		}
		st, err := h.srv.FHIR.Put(ctx, tx, write(res, x.id, survivor))
		if err != nil {
			return 0, err
		}
		w.Stored(audit.Update, st)
		moved = append(moved, audit.Resource{Type: st.Type, ID: st.ID})
		n++
	}
	st, err := h.srv.FHIR.Get(ctx, tx, "Patient", old)
	if err != nil {
		return 0, err
	}
	body, err := retire(st.Body, to)
	if err != nil {
		return 0, errs.E(op, errs.Internal, err)
	}
	res, err := fhir.Parse(body)
	if err != nil {
		return 0, errs.E(op, errs.Internal, err)
	}
	retiredSt, err := h.srv.FHIR.Put(ctx, tx, write(res, old, ""))
	if err != nil {
		return 0, err
	}
	moved = append(moved, audit.Resource{Type: retiredSt.Type, ID: retiredSt.ID})
	n++
	before, after, err := h.retireSource(ctx, tx, v, member, src, survivor)
	if err != nil {
		return 0, err
	}
	for _, person := range []string{before, after} {
		for _, r := range moved {
			w.File(records.Filed{Action: audit.Update, Person: person, Resource: r})
		}
	}
	_, err = tx.Exec(ctx, `INSERT INTO exchange_hl7_merges(member_id, survivor_patient, retired_patient, repointed, msh10) VALUES ($1, $2, $3, $4, $5)`,
		member.ID, survivor, old, n-1, controlID)
	return n, db.Map(op, err)
}

// retireSource takes the retired Patient's source record out of its regional person in
// tx (mpistore.Ops.RetireSource: link history, outbox event, audit), so no person lists
// the retired Patient as a source any more. A survivor the MPI does not know leaves the
// MPI as it is. The change is audited as the member's system (actor "hl7v2|member",
// request id MSH-10). It returns the person the retired record belonged to before (as the
// MPI change locked it; retired's own when the MPI is left as it is) and the survivor's
// person ("" when the MPI does not know the survivor).
func (h *HL7Intake) retireSource(ctx context.Context, tx db.Querier, v records.Viewer, member directory.Member, retired mpistore.Source, survivor string) (before, after string, err error) {
	controlID := v.RequestID
	before = string(retired.PersonID)
	surv, err := h.srv.MPI.SourceByPatient(ctx, tx, survivor)
	switch {
	case errs.CodeOf(err) == errs.NotFound:
		return before, "", nil
	case err != nil:
		return "", "", err
	}
	after = string(surv.PersonID)
	if h.opts.Audit == nil {
		h.log().Warn("hl7v2 merge left the MPI unchanged: the intake has no audit log (HL7Options.Audit)", "member", member.ID, "msh10", controlID)
		return before, after, nil
	}
	model := ""
	if h.srv.Matcher != nil {
		model = h.srv.Matcher.Model()
	}
	c, err := mpistore.NewOps(h.srv.Pool, h.opts.Audit, model).RetireSource(ctx, tx, retired.ID, surv.ID, mpistore.Steward{
		Subject: v.Actor, Org: v.Org, Role: v.Role, Client: v.Client, RequestID: v.RequestID, SourceIP: v.SourceIP})
	if err != nil {
		return "", "", err
	}
	for _, m := range c.Moved {
		if m.Source == retired.ID {
			before = m.From
		}
	}
	return before, after, nil
}

// patientLink is an R4 Patient.link.
type patientLink struct {
	Other struct {
		Reference string `json:"reference"`
	} `json:"other"`
	Type string `json:"type"`
}

// retire returns a stored Patient's JSON with active=false and its links replaced by one
// replaced-by link to survivor; every other element is kept.
func retire(body []byte, survivor string) ([]byte, error) {
	var doc map[string]json.RawMessage // an arbitrary Patient: only two members change
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, err
	}
	l := patientLink{Type: "replaced-by"}
	l.Other.Reference = survivor
	links, err := json.Marshal([]patientLink{l})
	if err != nil {
		return nil, err
	}
	doc["active"] = json.RawMessage("false")
	doc["link"] = links
	return json.Marshal(doc)
}
