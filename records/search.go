package records

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/errs"
	mpistore "github.com/concord-hie/concord/mpi/store"
)

// QueryHasher renders a query string for the audit log with the values of the named PHI
// parameters replaced by keyed hashes. *audit.Hasher satisfies it.
type QueryHasher interface {
	HashQuery(q url.Values, phi []string) string
}

var _ QueryHasher = (*audit.Hasher)(nil)

// SearchConfig configures a Searcher.
type SearchConfig struct {
	// CursorKey seals paging cursors (AES-GCM under a key derived from it); at least 32
	// bytes. Cursors sealed under another key are rejected.
	CursorKey []byte
	// Hasher hashes PHI search terms in audit events. Required.
	Hasher QueryHasher
	// DefaultCount and MaxCount bound the page size (default 20 and 200).
	DefaultCount, MaxCount int
	// CursorTTL is how long a cursor stays valid (default 30 minutes).
	CursorTTL time.Duration
	// CountLimit bounds a total (_total=accurate, _summary=count, _count=0; default
	// 10×MaxCount): a search with more matches the caller may see is errs.Invalid. Rows
	// the caller may not see count toward no limit, so a refusal never tells that they exist.
	CountLimit int
	// ScanTime bounds the time one request spends examining rows (default 5 s): one
	// deadline, set when the request begins, shared by its page, its total and its
	// _revinclude. Once it has passed no further store batch is read or decided, except
	// that the first batch of a phase that comes back before it is decided whole, so a
	// request always does some work. A page that reaches it is answered as far as it got:
	// short of _count, or empty, with a next link that resumes after the last row
	// examined. A total or a _revinclude that reaches it is errs.Invalid ("narrow the
	// search"), never cut short. When it passes while the store is still answering a
	// phase's first read, or before any read of the request has come back (the store
	// itself is slow), the search is errs.Unavailable, which a client may retry. ScanTime
	// is the only bound on the rows examined, and unlike the others it is reached by
	// examining rows the caller may not see as well, so how long a search takes (and so
	// whether a page comes back short, or is refused for time) is the one channel left
	// through which their number shows.
	ScanTime time.Duration
}

// Searcher runs FHIR searches and $everything through the enforcement point: the store
// finds candidate rows, every row (matched or included) is decided on its own, denied rows
// are dropped without a trace in the result (totals count only what is shown), and one
// audit event per person is appended before anything is returned.
type Searcher struct {
	svc  *Service
	aead cipher.AEAD
	hash QueryHasher
	opts fhir.SearchOptions
	ttl  time.Duration
	// bounds on the rows one request examines (see SearchConfig)
	countLimit int
	scanTime   time.Duration
	clock      func() time.Time // for ScanTime's deadline; time.Now but in tests
}

// NewSearcher returns a Searcher over svc. It returns errs.Invalid for a short cursor key
// or a missing hasher.
func NewSearcher(svc *Service, cfg SearchConfig) (*Searcher, error) {
	const op = "records.NewSearcher"
	if len(cfg.CursorKey) < 32 {
		return nil, errs.E(op, errs.Invalid, "search cursor key must be at least 32 bytes")
	}
	if cfg.Hasher == nil {
		return nil, errs.E(op, errs.Invalid, "search needs an audit query hasher")
	}
	m := hmac.New(sha256.New, cfg.CursorKey)
	m.Write([]byte("concord search cursor v1"))
	block, err := aes.NewCipher(m.Sum(nil))
	if err != nil {
		return nil, errs.E(op, errs.Internal, err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, errs.E(op, errs.Internal, err)
	}
	if cfg.DefaultCount <= 0 {
		cfg.DefaultCount = 20
	}
	if cfg.MaxCount <= 0 {
		cfg.MaxCount = 200
	}
	if cfg.CursorTTL <= 0 {
		cfg.CursorTTL = 30 * time.Minute
	}
	if cfg.CountLimit <= 0 {
		cfg.CountLimit = 10 * cfg.MaxCount
	}
	if cfg.ScanTime <= 0 {
		cfg.ScanTime = 5 * time.Second
	}
	return &Searcher{svc: svc, aead: aead, hash: cfg.Hasher, ttl: cfg.CursorTTL,
		countLimit: cfg.CountLimit, scanTime: cfg.ScanTime, clock: time.Now,
		opts: fhir.SearchOptions{DefaultCount: min(cfg.DefaultCount, cfg.MaxCount), MaxCount: cfg.MaxCount}}, nil
}

// checkChains refuses (errs.Invalid) a chained clause into anything but shared reference
// data (fhir.IsReferenceData) of a type allowType accepts. A chain is matched in SQL against the target
// resource, which no consent decision or scope check sees: into a clinical resource
// (DiagnosticReport?result.code=) it would let a caller test a hidden Observation's
// contents one value at a time through whether a report it may see comes back. The
// patient.identifier chain of a clinical search is resolved through the MPI before this
// and is not among clauses.
func (x *Searcher) checkChains(clauses []fhir.Clause, allowType func(string) bool) error {
	for _, c := range clauses {
		if c.Chain == nil {
			continue
		}
		if !fhir.IsReferenceData(c.Chain.TargetType) || allowType != nil && !allowType(c.Chain.TargetType) {
			return errs.E("records.Search", errs.Invalid, "chained parameter "+c.Param+"."+c.Chain.Param+
				" is supported only into "+strings.Join(fhir.ReferenceDataTypes(), ", ")+" (the types the token may read)")
		}
	}
	return nil
}

// Page is one page of a consent-filtered search.
type Page struct {
	Matches  []store.Stored // search.mode match, in the search's order
	Included []store.Stored // search.mode include
	// Total is the number of matches the caller may see, or nil when it is not given
	// (_total=none, or a later page or a first page with more to come unless
	// _total=accurate asked for it).
	Total *int
	// Next is the opaque cursor of the next page (the _cursor parameter), "" on the last.
	// It is set when a match the caller may see follows this page, so a page is never
	// short of _count, and a next page never empty, for rows the caller may not see, with
	// one exception that tells no more than the time the search took: a page whose
	// ScanTime ran out holds the matches found so far (maybe none) and, when the rows did
	// not run out with it, a Next that resumes after the last row examined.
	Next string
	// Search is the parsed search (what the self link describes).
	Search fhir.Search
	// Query is the query the page answers, without _cursor: on a later page the one
	// sealed in its cursor. It is the query the page's audit event records (hashed), for
	// a caller that audits what it adds to the page.
	Query url.Values
	// Part2 holds, keyed "Type/id", what must travel with each 42 CFR Part 2 record among
	// Matches and Included that the page discloses (see Part2Release, Part2Of); nil when
	// there is none.
	Part2 map[string]Part2Release
}

// CursorParam is the query parameter that carries a paging cursor. A request with it
// takes its whole query from the cursor; other parameters are ignored.
const CursorParam = "_cursor"

// cursor is the sealed paging state. It carries the original query, so a next link holds
// no PHI in clear and cannot be edited.
type cursor struct {
	Kind    string    `json:"k"` // resource type searched, or "$everything"
	Patient string    `json:"p,omitempty"`
	Query   string    `json:"q"`
	After   store.Key `json:"a"`
	Org     string    `json:"o"`
	Client  string    `json:"c"`
	Consent string    `json:"v"` // fingerprint of the directives in force when it was issued
	Expires int64     `json:"e"`
}

var errCursor = errs.E("records.Search", errs.Invalid, "the paging cursor is invalid or has expired; search again")

func (x *Searcher) seal(c cursor) string {
	plain, _ := json.Marshal(c)
	nonce := make([]byte, x.aead.NonceSize())
	_, _ = rand.Read(nonce)
	return base64.RawURLEncoding.EncodeToString(x.aead.Seal(nonce, nonce, plain, nil))
}

// open checks a cursor's seal, expiry and binding to the caller.
func (x *Searcher) open(v Viewer, raw string, now time.Time) (cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(raw)
	if err != nil || len(b) < x.aead.NonceSize() {
		return cursor{}, errCursor
	}
	plain, err := x.aead.Open(nil, b[:x.aead.NonceSize()], b[x.aead.NonceSize():], nil)
	if err != nil {
		return cursor{}, errCursor
	}
	var c cursor
	if json.Unmarshal(plain, &c) != nil || now.Unix() > c.Expires || c.Org != v.Org || c.Client != v.Client {
		return cursor{}, errCursor
	}
	return c, nil
}

// fingerprint identifies a set of directives by their ids and versions, so a cursor
// issued under one consent state does not serve a page under another.
func fingerprint(dirs []consent.Directive) string {
	keys := make([]string, len(dirs))
	for i, d := range dirs {
		keys[i] = string(d.ID) + ":" + strconv.Itoa(d.Version) + ":" + string(d.Status)
	}
	sort.Strings(keys)
	h := sha256.Sum256([]byte(strings.Join(keys, "\n")))
	return hex.EncodeToString(h[:12])
}

// request is a search being answered.
type request struct {
	v      Viewer
	at     time.Time
	kind   string
	query  url.Values // the original query, without _cursor
	search fhir.Search
	after  *store.Key
	first  bool
	scan   *scan // the request's ScanTime deadline, shared by its phases
}

// begin parses q, or the query sealed in its cursor. The request's ScanTime deadline is
// the one ctx shares (ShareScan), else a new one.
func (x *Searcher) begin(ctx context.Context, v Viewer, kind, patient string, q url.Values, parse func(url.Values) (fhir.Search, error)) (request, cursor, error) {
	r := request{v: v, at: x.svc.now(), kind: kind, first: true, scan: x.scanOf(ctx)}
	var c cursor
	if raw := q.Get(CursorParam); raw != "" {
		var err error
		if c, err = x.open(v, raw, r.at); err != nil {
			return r, c, err
		}
		if c.Kind != kind || c.Patient != patient {
			return r, c, errCursor
		}
		if r.query, err = url.ParseQuery(c.Query); err != nil {
			return r, c, errCursor
		}
		r.after, r.first = &c.After, false
	} else {
		r.query = url.Values{}
		for k, vs := range q {
			if k != CursorParam && k != "_format" {
				r.query[k] = vs
			}
		}
	}
	var err error
	r.search, err = parse(r.query)
	return r, c, err
}

func (x *Searcher) next(r request, patient, consentFP string, key store.Key) string {
	return x.seal(cursor{Kind: r.kind, Patient: patient, Query: r.query.Encode(), After: key, Org: r.v.Org,
		Client: r.v.Client, Consent: consentFP, Expires: r.at.Add(x.ttl).Unix()})
}

// decider authorizes rows for one request, loading each person's directives once.
type decider struct {
	x        *Searcher
	ctx      context.Context
	v        Viewer
	at       time.Time
	dirs     map[string][]consent.Directive
	viewers  map[string]Viewer // person → v with its break-the-glass declaration attached
	persons  map[string]string // member Patient id → person, for Patient rows
	lastDeny consent.Decision
	denied   int
	denials  map[string]consent.Decision // person → the last deny of one of their rows
	part2    map[string]Part2Release     // Part 2 records allowed so far, keyed by part2Key
}

func (x *Searcher) decider(ctx context.Context, v Viewer, at time.Time) *decider {
	return &decider{x: x, ctx: ctx, v: v, at: at, dirs: map[string][]consent.Directive{}, viewers: map[string]Viewer{}, persons: map[string]string{}}
}

func (d *decider) directives(person string) ([]consent.Directive, error) {
	if dirs, ok := d.dirs[person]; ok {
		return dirs, nil
	}
	dirs, err := d.x.svc.inForce(d.ctx, person, d.at)
	if err != nil {
		return nil, err
	}
	d.dirs[person] = dirs
	return dirs, nil
}

// viewer returns d.v with its active break-the-glass declaration for person attached (as
// Service.Read does), loaded once per person.
func (d *decider) viewer(person string) (Viewer, error) {
	if v, ok := d.viewers[person]; ok {
		return v, nil
	}
	v, err := d.x.svc.breakGlass(d.ctx, d.v, person, d.at)
	if err != nil {
		return Viewer{}, err
	}
	d.viewers[person] = v
	return v, nil
}

// glass reports whether a break-the-glass declaration was applied for person.
func (d *decider) glass(person string) bool {
	return d.viewers[person].BreakGlass != nil
}

// allow decides st for person: a member always sees what it sent; anything else passes
// consent.Decide for the viewer, with its break-the-glass declaration for person.
func (d *decider) allow(person string, st store.Stored) (bool, error) {
	if d.v.Org != "" && st.MemberID == d.v.Org {
		return true, nil
	}
	if person == "" {
		d.denied++
		return false, nil
	}
	dirs, err := d.directives(person)
	if err != nil {
		return false, err
	}
	v, err := d.viewer(person)
	if err != nil {
		return false, err
	}
	dec, labels := d.x.svc.decide(dirs, v, person, d.at, st)
	if !dec.Allow {
		d.denied++
		d.lastDeny = dec
		if d.denials == nil {
			d.denials = map[string]consent.Decision{}
		}
		d.denials[person] = dec
	} else if r, ok := part2Release(v, labels, dec); ok {
		if d.part2 == nil {
			d.part2 = map[string]Part2Release{}
		}
		d.part2[part2Key(st)] = r
	}
	return dec.Allow, nil
}

// prefetchPersons resolves, in one query, the persons of those of patientIDs that
// personOfPatient has not seen yet.
func (d *decider) prefetchPersons(patientIDs []string) error {
	var missing []string
	for _, id := range patientIDs {
		if _, ok := d.persons[id]; !ok {
			missing = append(missing, id)
		}
	}
	if len(missing) < 2 {
		return nil // personOfPatient's single lookup is as cheap
	}
	// With a versioned consent cache the persons' consent versions come in the same
	// statement, bounded like any consent read, and their directives from the cache.
	vd, versioned := d.x.svc.dirs.(versionedDirectives)
	var with func(string) string
	ctx, cancel := d.ctx, context.CancelFunc(func() {})
	if versioned {
		with = consent.VersionsSQL
		ctx, cancel = context.WithTimeout(d.ctx, vd.SourceTimeout())
	}
	found, versions, err := d.x.svc.mpi.PersonsOfPatientsWith(ctx, missing, with)
	cancel()
	if err != nil {
		if versioned {
			return errs.E("records.consent", errs.Unavailable, "consent unavailable", err)
		}
		return err
	}
	for _, id := range missing {
		person := string(found[id])
		d.persons[id] = person // "" when the MPI has none, as personOfPatient
		if _, ok := d.dirs[person]; person == "" || !versioned || ok {
			continue
		}
		v, err := consent.ParseVersions(versions[id])
		if err != nil {
			return errs.E("records.consent", errs.Unavailable, "consent unavailable", err)
		}
		dirs, err := vd.CurrentAt(d.ctx, person, v)
		if err != nil {
			return errs.E("records.consent", errs.Unavailable, "consent unavailable", err)
		}
		d.dirs[person] = dirs
	}
	return nil
}

// personOfPatient returns the person behind a member's Patient id, "" when the MPI has
// none.
func (d *decider) personOfPatient(patientID string) (string, error) {
	if p, ok := d.persons[patientID]; ok {
		return p, nil
	}
	src, err := d.x.svc.mpi.SourceByPatient(d.ctx, nil, patientID)
	if err != nil && errs.CodeOf(err) != errs.NotFound {
		return "", err
	}
	d.persons[patientID] = string(src.PersonID)
	return string(src.PersonID), nil
}

// errNarrow refuses a total that would count more rows the caller may see, or take longer,
// than allowed (see countAll).
var errNarrow = errs.E("records.Search", errs.Invalid, "too many records to count; narrow the search")

// errSlowStore refuses a search whose ScanTime passed before its first store batch came
// back (see scan.firstBatch): the store is slow, not the search too broad, so it is
// errs.Unavailable (503), which a client may retry, never a 4xx that tells it not to.
var errSlowStore = errs.E("records.Search", errs.Unavailable, "the record store is slow to answer; try again shortly")

// errSlowRevInclude refuses a _revinclude that ran out of ScanTime (see include).
var errSlowRevInclude = errs.E("records.Search", errs.Invalid, "the _revinclude took too long: lower _count, narrow the search, or use Patient/$everything")

// scan is the time one request has for examining rows (SearchConfig.ScanTime): one
// deadline, set when the request begins (newScan) and shared by its phases (the page,
// the total, the _revinclude), so that ScanTime bounds the request, not each phase.
type scan struct {
	now      func() time.Time
	deadline time.Time
	started  bool // a phase's first store batch came back before the deadline
}

func (x *Searcher) newScan() *scan {
	return &scan{now: x.clock, deadline: x.clock().Add(x.scanTime)}
}

// scanKey is the context key of the deadline ShareScan shares.
type scanKey struct{}

// ShareScan returns ctx carrying one ScanTime deadline, begun now, that every search x
// answers under ctx shares instead of beginning its own, so that ScanTime bounds them
// together as it bounds the phases (page, total, _revinclude) of one search. It is for a
// request that completes a _revinclude with searches of its own, run one after another:
// the exchange's _revinclude of directory Organizations, which are not in the store, is a
// search per source type and page. Each search is a phase of that request: its first
// store batch, if it comes back before the deadline, is decided whole; past the deadline
// its page is answered short, with a Next; and it is errSlowStore when the deadline
// passes while it waits for its first batch. A search that begins once an earlier one
// has used the time up (the deadline passed after the earlier one's first batch came back
// in time) reads nothing: its page is errSlowRevInclude (errs.Invalid; a total alone is
// errNarrow), so following such a Next ends there.
func (x *Searcher) ShareScan(ctx context.Context) context.Context {
	return context.WithValue(ctx, scanKey{}, x.newScan())
}

// scanOf returns the deadline ctx shares (ShareScan), else a new one.
func (x *Searcher) scanOf(ctx context.Context) *scan {
	if s, ok := ctx.Value(scanKey{}).(*scan); ok {
		return s
	}
	return x.newScan()
}

// passed reports whether the deadline has passed.
func (s *scan) passed() bool { return s.now().After(s.deadline) }

// spent reports whether the request has spent its time examining rows: the deadline has
// passed, after an earlier phase's first batch came back in time. A phase that begins so
// reads nothing and answers as it does when it runs out of time itself.
func (s *scan) spent() bool { return s.started && s.passed() }

// firstBatch is called when the first store batch of a phase that began unspent has come
// back. Before the deadline, the batch is to be decided whole, whatever the time when
// that ends, so a request always does some work. Past it, the store is to blame: the
// deadline passed while the phase waited for the batch, or before the phase began with no
// batch of the request back yet (what went before, the MPI and consent, is the store's
// work too). Then firstBatch returns errSlowStore.
func (s *scan) firstBatch() error {
	if s.passed() {
		return errSlowStore
	}
	s.started = true
	return nil
}

// fill reads q from the store in batches (resuming with q.After) until it has count+1
// rows that keep permits or the rows run out, and returns the permitted ones (at most
// count) and, when one more permitted row follows them, the key of the last one returned,
// so the next page resumes after it. keep decides each row (it may drop it or fail). So
// the page, and whether it has a next page, depend only on rows the caller may see: no
// count of examined rows cuts a page short, since a short page with a next link (or an
// empty one) would tell that hidden rows lie ahead.
//
// What bounds the work is the request's ScanTime (s). The first batch, if it comes back
// before the deadline, is decided whole; past the deadline fill reads and decides no
// more and returns the rows permitted so far (short of count, maybe none) with the key of
// the last row examined, so the next page resumes the scan where this one stopped. Such a
// short page tells nothing the time it took does not: that the deadline passed. A
// deadline that passes before the first batch comes back is errSlowStore; one that an
// earlier search sharing it (ShareScan) used up is errSlowRevInclude. So hidden rows
// show only in timing: a caller may learn that a page took long, not where hidden rows
// lie or how many there are.
func (x *Searcher) fill(ctx context.Context, s *scan, q store.Query, count int, f rowFilter) ([]store.Row, *store.Key, error) {
	var out []store.Row
	// Room for some denied rows, so one query usually fills the page; a batch that does
	// not fill it doubles the next, up to countBatch, so a run of denied rows costs few
	// queries.
	batch := max(count+count/4+2, 20)
	// fill is a request's first phase, so it begins unspent, unless the request shares an
	// earlier search's deadline (ShareScan) and that search used the time up.
	if s.spent() {
		return nil, nil, errSlowRevInclude
	}
	for first := true; ; first = false {
		// q.After is the last row examined (by this request, or by the one whose cursor
		// it continues): past the deadline, the next page resumes after it.
		if !first && s.passed() {
			return out, q.After, nil
		}
		q.Limit = batch
		rows, err := x.svc.fhir.Search(ctx, nil, q)
		if err == nil && first {
			err = s.firstBatch()
		}
		if err == nil {
			err = f.prefetch(rows)
		}
		if err != nil {
			return nil, nil, err
		}
		for i, row := range rows {
			if !first && s.passed() {
				return out, q.After, nil
			}
			ok, err := f.keep(row)
			if err != nil {
				return nil, nil, err
			}
			q.After = &rows[i].Key
			if !ok {
				continue
			}
			if len(out) == count {
				k := out[count-1].Key
				return out, &k, nil
			}
			out = append(out, row)
		}
		if len(rows) < batch {
			return out, nil, nil
		}
		batch = max(batch, min(2*batch, countBatch))
	}
}

// countBatch is how many rows countAll reads from the store at a time.
const countBatch = 500

// countAll counts the rows of q that keep permits. It pages through the store in batches
// of countBatch and is errNarrow (errs.Invalid) once more than countLimit rows are
// permitted: rows keep drops count toward no limit, so whether a total is refused depends
// only on rows the caller may see. What bounds the work instead is the request's
// ScanTime (s): past its deadline the total is errNarrow too (a total is never answered
// short), but errSlowStore when the deadline passed while countAll waited for its first
// batch, or before any batch of the request came back (the store is slow, see
// scan.firstBatch). A first batch that came back in time is decided whole. So hidden
// rows show only in timing: a caller may learn that a total took long (or was refused for
// time), not whether a count reached a limit.
func (x *Searcher) countAll(ctx context.Context, s *scan, q store.Query, f rowFilter) (int, error) {
	q.After, q.Limit = nil, countBatch
	n := 0
	for first := true; ; first = false {
		if first && s.spent() || !first && s.passed() {
			return 0, errNarrow
		}
		rows, err := x.svc.fhir.Search(ctx, nil, q)
		if err == nil && first {
			err = s.firstBatch()
		}
		if err == nil {
			err = f.prefetch(rows)
		}
		if err != nil {
			return 0, err
		}
		for _, row := range rows {
			if !first && s.passed() {
				return 0, errNarrow
			}
			ok, err := f.keep(row)
			if err != nil {
				return 0, err
			}
			if !ok {
				continue
			}
			if n++; n > x.countLimit {
				return 0, errNarrow
			}
		}
		if len(rows) < q.Limit {
			return n, nil
		}
		q.After = &rows[len(rows)-1].Key
	}
}

// rowFilter decides the rows fill and countAll examine. before, when not nil, sees each
// batch of rows the store returned ahead of keep, so that keep's lookups for the whole
// batch can be one query.
type rowFilter struct {
	keep   func(store.Row) (bool, error)
	before func([]store.Row) error
}

func (f rowFilter) prefetch(rows []store.Row) error {
	if f.before == nil {
		return nil
	}
	return f.before(rows)
}

// run answers a prepared store query: the page and the total (the caller adds the
// includes).
func (x *Searcher) run(ctx context.Context, r request, q store.Query, f rowFilter) (Page, *store.Key, error) {
	s := r.search
	page := Page{Search: s, Query: r.query}
	q.Sort, q.After = s.Sort, r.after
	var next *store.Key
	if s.Count > 0 && !s.SummaryCount {
		rows, k, err := x.fill(ctx, r.scan, q, s.Count, f)
		if err != nil {
			return Page{}, nil, err
		}
		next = k
		for _, row := range rows {
			page.Matches = append(page.Matches, row.Stored)
		}
	}
	switch {
	case s.Total == fhir.TotalNone && !s.SummaryCount:
	case s.Total == fhir.TotalAccurate || s.SummaryCount || s.Count == 0:
		n, err := x.countAll(ctx, r.scan, q, f)
		if err != nil {
			return Page{}, nil, err
		}
		page.Total = &n
	case r.first && next == nil:
		n := len(page.Matches)
		page.Total = &n
	}
	return page, next, nil
}

// MaxRevIncluded caps the resources one page's _revinclude may add. A page that would add
// more is refused (errs.Invalid: lower _count, or use $everything) rather than cut short,
// so a clinic never takes a partial list of, say, a report's results for the whole. Only
// resources the caller may see count toward it.
const MaxRevIncluded = 1000

// revBatch is how many _revinclude sources include decides at a time (one GetMany), and
// how many it first reads from the reference index.
const revBatch = 1000

// includeScope says whose consent decides an included resource of compartment c (a
// Patient id): ok false when c lies outside what the search may disclose.
type includeScope func(c string) (person string, ok bool, err error)

// storedCompartment returns the Patient compartment st belongs to: its own id for a Patient,
// else the Patient it is about ("" for reference data).
func storedCompartment(st store.Stored) string {
	if st.Type == "Patient" {
		return st.ID
	}
	return st.PatientID
}

// searchReference answers a search of reference data (fhir.IsReferenceData): the caller's own
// resources of typ and every other member's that sharedReference shares, which hold no
// patient's data, so no consent decides them and the query's audit event names no patient.
// Includes reach only such reference data.
func (x *Searcher) searchReference(ctx context.Context, r request, typ string, allowType func(string) bool) (Page, error) {
	if err := x.checkChains(r.search.Clauses, allowType); err != nil {
		return Page{}, err
	}
	d := x.decider(ctx, r.v, r.at)
	keep := func(row store.Row) (bool, error) {
		return r.v.Org != "" && row.MemberID == r.v.Org && storedCompartment(row.Stored) == "" || sharedReference(row.Stored), nil
	}
	page, next, err := x.run(ctx, r, store.Query{Type: typ, Clauses: r.search.Clauses}, rowFilter{keep: keep})
	if err != nil {
		return Page{}, errs.E("records.Search", err)
	}
	noCompartments := func(string) (string, bool, error) { return "", false, nil }
	if err := x.include(ctx, r.scan, d, &page, noCompartments, allowType); err != nil {
		return Page{}, err
	}
	if next != nil {
		page.Next = x.next(r, "", "", *next)
	}
	if err := x.audit(ctx, r, d, map[string][]store.Stored{"": append(slices.Clone(page.Matches), page.Included...)}); err != nil {
		return Page{}, err
	}
	return page, nil
}

// compartmentScope is the includeScope of a clinical search: the compartments of the
// searched person's Patients, decided by that person's consent.
func compartmentScope(person string, compartments map[string]bool) includeScope {
	return func(c string) (string, bool, error) { return person, compartments[c], nil }
}

// include fetches the _include targets and the _revinclude sources of the page's matches
// and keeps those that authorize: reference data (Medication, Organization,
// Practitioner, ...) reached from a permitted match, and compartment resources that scope
// admits and that pass the decision of scope's person. Anything else, and any resource of
// a type allowType (the token's scopes; nil allows all) refuses, is dropped without a
// trace in the page. It returns errs.Invalid when the _revinclude would add more than
// MaxRevIncluded resources that the caller may see; sources it may not see count toward
// no limit, so the refusal never tells that they exist. Reading and deciding the sources is
// bounded by the request's ScanTime (s) instead: past its deadline the _revinclude is
// errSlowRevInclude (errs.Invalid; never cut short), also when the page used the time up,
// but errSlowStore when the deadline passed while include waited for its first read (see
// scan.firstBatch). How long that takes is the one channel left through which the number
// of hidden sources shows.
func (x *Searcher) include(ctx context.Context, s *scan, d *decider, page *Page, scope includeScope, allowType func(string) bool) error {
	if len(page.Search.Include)+len(page.Search.RevInclude) == 0 || len(page.Matches) == 0 {
		return nil
	}
	if len(page.Search.RevInclude) > 0 && s.spent() {
		return errSlowRevInclude
	}
	seen := map[[2]string]bool{}
	ids := make([]string, 0, len(page.Matches))
	for _, m := range page.Matches {
		seen[[2]string{m.Type, m.ID}] = true
		ids = append(ids, m.ID)
	}
	keep := func(refs [][2]string) (int, error) {
		refs = slices.DeleteFunc(refs, func(r [2]string) bool { return seen[r] })
		got, err := x.svc.fhir.GetMany(ctx, nil, refs)
		if err != nil {
			return 0, err
		}
		sort.Slice(got, func(i, j int) bool { return got[i].Type+"/"+got[i].ID < got[j].Type+"/"+got[j].ID })
		kept := 0
		for _, st := range got {
			ok := false
			compartment := storedCompartment(st)
			switch {
			case allowType != nil && !allowType(st.Type):
			case compartment == "" && fhir.IsReferenceData(st.Type):
				ok = d.v.Org != "" && st.MemberID == d.v.Org || sharedReference(st)
			case compartment != "":
				person, in, err := scope(compartment)
				if err != nil {
					return 0, err
				}
				if in {
					if ok, err = d.allow(person, st); err != nil {
						return 0, err
					}
				}
			}
			if ok && !seen[[2]string{st.Type, st.ID}] {
				seen[[2]string{st.Type, st.ID}] = true
				page.Included = append(page.Included, st)
				kept++
			}
		}
		return kept, nil
	}
	for _, inc := range page.Search.Include {
		refs, err := x.svc.fhir.Refs(ctx, nil, inc.SourceType, inc.Param, inc.TargetType, ids)
		if err != nil {
			return err
		}
		if _, err := keep(refs); err != nil {
			return err
		}
	}
	tooMany := errs.E("records.Search", errs.Invalid, fmt.Sprintf("_revinclude would add more than %d resources to this page: lower _count, or use Patient/$everything", MaxRevIncluded))
	added, first := 0, true
	for _, inc := range page.Search.RevInclude {
		// RevRefs returns the first limit sources in id order. Read again with twice the
		// limit until a read comes back short, deciding only the sources not read before,
		// in batches; only the sources that keep adds count toward the cap. Of N sources,
		// the reads before the last come back full, their limits summing to less than 2N,
		// and the last returns all N: fewer than 3N index rows are read, and each source
		// is fetched and decided once, so fewer than 4N rows are read in all.
		read := map[[2]string]bool{}
		for limit := revBatch; ; limit *= 2 {
			if !first && s.passed() {
				return errSlowRevInclude
			}
			refs, err := x.svc.fhir.RevRefs(ctx, nil, inc.SourceType, inc.Param, page.Search.ResourceType, ids, limit)
			if err == nil && first {
				err = s.firstBatch() // the _include reads above count as the phase's wait
			}
			if err != nil {
				return err
			}
			last := len(refs) < limit
			refs = slices.DeleteFunc(refs, func(r [2]string) bool { return read[r] })
			for batch := range slices.Chunk(refs, revBatch) {
				// The phase's first batch (its first read's first revBatch sources) is
				// decided whole; past the deadline no other is.
				if !first && s.passed() {
					return errSlowRevInclude
				}
				first = false
				for _, r := range batch {
					read[r] = true
				}
				n, err := keep(batch)
				if err != nil {
					return err
				}
				if added += n; added > MaxRevIncluded {
					return tooMany
				}
			}
			first = false
			if last {
				break
			}
		}
	}
	return nil
}

// audit appends one Query event per person for what the page discloses, and a deny event
// for each person some of whose rows were examined and none shown.
func (x *Searcher) audit(ctx context.Context, r request, d *decider, byPerson map[string][]store.Stored) error {
	q := x.hash.HashQuery(r.query, audit.PHIParams())
	if len(q) > 8192 {
		q = q[:8192]
	}
	persons := make([]string, 0, len(byPerson)+len(d.denials))
	for p := range byPerson {
		persons = append(persons, p)
	}
	for p := range d.denials { // a person found but wholly denied has a deny event too
		if _, ok := byPerson[p]; !ok {
			persons = append(persons, p)
		}
	}
	sort.Strings(persons)
	if len(persons) == 0 {
		persons = []string{""}
	}
	evs := make([]audit.Event, 0, len(persons))
	for _, p := range persons {
		ev := event(r.v, audit.Query, p, r.at)
		ev.BreakGlass = d.glass(p)
		ev.Query = q
		for _, st := range byPerson[p] {
			if len(ev.Resources) < 1000 {
				ev.Resources = append(ev.Resources, audit.Resource{Type: st.Type, ID: st.ID})
			}
		}
		ev.Outcome, ev.Reason = audit.Permit, "permitted"
		if len(ev.Resources) == 0 && d.denied > 0 {
			dec, ok := d.denials[p]
			if !ok {
				dec = d.lastDeny
			}
			ev.Outcome, ev.Reason = audit.Deny, dec.Reason.String()
			ev.Consent, ev.ConsentVersion = string(dec.By), int64(dec.Version)
		}
		evs = append(evs, ev)
	}
	return x.svc.appendAll(ctx, evs)
}

// exactFilter returns a check for the :exact string clauses of s, or nil when it has
// none. The index keeps only folded values, so the store matches :exact on the folded
// value and this check compares each stored value as written.
func exactFilter(s fhir.Search) func(store.Stored) bool {
	var exact []fhir.Clause
	for _, c := range s.Clauses {
		if c.Modifier == fhir.ModExact && c.Chain == nil {
			exact = append(exact, c)
		}
	}
	if len(exact) == 0 {
		return nil
	}
	return func(st store.Stored) bool {
		r, err := fhir.Parse(st.Body)
		if err != nil {
			return false
		}
		vals := fhir.Extract(r)
		for _, c := range exact {
			ok := false
			for _, iv := range vals {
				for _, v := range c.Values {
					ok = ok || iv.Param == c.Param && iv.Exact == v.Raw
				}
			}
			if !ok {
				return false
			}
		}
		return true
	}
}

// Search answers a FHIR search on typ for v. q is the query (or only _cursor for a next
// page).
//
// A Patient search (PDQm) returns the caller's own member's Patients and, for purpose
// TREAT, other members' Patients whose person's consent permits it. A search of reference
// data (Organization, Practitioner, PractitionerRole, Location, Medication) returns every
// member's resources of the type. Any other type is a
// clinical search and needs exactly one patient (or subject) parameter naming the
// caller's own member's Patient, by id or by patient.identifier=system|MRN; it searches
// the regional record of that Patient's person (every member's Patient the MPI links to
// the person), each row decided by consent. A patient that is unknown or not the caller's
// gives an empty page, never an error that would tell the two apart.
//
// A page is bounded by SearchConfig.ScanTime, not refused for it: once the request's
// deadline passes, the page holds the matches found so far (maybe none) and a next link
// that resumes the scan after the last row examined.
//
// Errors: errs.Invalid for a malformed search, a clinical search without its patient, an
// unsupported parameter or a bad cursor (tampered, expired, another caller's, or issued
// under a consent state that has since changed); errs.Invalid too for the searches it
// refuses as too broad: a total (_total=accurate, _summary=count, _count=0) over more than
// CountLimit matches the caller may see, a _revinclude that would add more than
// MaxRevIncluded resources it may see, and a total or a _revinclude that runs out of
// ScanTime; errs.Unavailable when consent or the audit log cannot be reached, or when
// ScanTime passes while the search waits for the store's first rows (the store is slow;
// nothing is returned).
func (x *Searcher) Search(ctx context.Context, v Viewer, typ string, q url.Values) (Page, error) {
	return x.SearchAllowed(ctx, v, typ, q, nil)
}

// SearchAllowed is Search limited to the resource types allowType accepts (the caller's
// token scopes): an _include target of a type it refuses is dropped like a denied row.
// The searched type itself is the caller's to check before calling. allowType nil allows
// every type.
func (x *Searcher) SearchAllowed(ctx context.Context, v Viewer, typ string, q url.Values, allowType func(string) bool) (Page, error) {
	const op = "records.Search"
	r, c, err := x.begin(ctx, v, typ, "", q, func(q url.Values) (fhir.Search, error) { return x.opts.Parse(typ, q) })
	if err != nil {
		return Page{}, err
	}
	if typ == "Patient" {
		return x.searchPatients(ctx, r, allowType)
	}
	if fhir.IsReferenceData(typ) {
		return x.searchReference(ctx, r, typ, allowType)
	}
	at := -1
	for i, cl := range r.search.Clauses {
		if cl.Param == "patient" || cl.Param == "subject" {
			if at >= 0 {
				return Page{}, errs.E(op, errs.Invalid, "give one patient (or subject) parameter")
			}
			at = i
		}
	}
	if at < 0 {
		return Page{}, errs.E(op, errs.Invalid, "clinical searches need the patient (or subject) parameter")
	}
	pc := r.search.Clauses[at]
	if len(pc.Values) != 1 || pc.Modifier != fhir.ModNone && pc.Chain == nil ||
		pc.Chain != nil && (pc.Chain.Param != "identifier" || pc.Values[0].SystemMode != fhir.ExactSystem || pc.Values[0].Code == "") ||
		pc.Chain == nil && pc.Values[0].RefType != "" && pc.Values[0].RefType != "Patient" {
		return Page{}, errs.E(op, errs.Invalid, "the patient parameter takes one Patient id, or patient.identifier=system|value")
	}
	d := x.decider(ctx, v, r.at)
	// The Patient's source record, its person's other Patients and (with a versioned
	// consent cache) the person's consent versions, in one statement bounded like any
	// consent read.
	vd, versioned := x.svc.dirs.(versionedDirectives)
	var with func(string) string
	cctx, cancel := ctx, context.CancelFunc(func() {})
	if versioned {
		with = consent.VersionsSQL
		cctx, cancel = context.WithTimeout(ctx, vd.SourceTimeout())
	}
	var comp mpistore.Compartment
	if pc.Chain != nil {
		comp, err = x.svc.mpi.CompartmentOf(cctx, "", pc.Values[0].System, pc.Values[0].Code, with)
	} else {
		comp, err = x.svc.mpi.CompartmentOf(cctx, pc.Values[0].RefID, "", "", with)
	}
	cancel()
	if err != nil && errs.CodeOf(err) != errs.NotFound {
		if versioned {
			return Page{}, errs.E("records.consent", errs.Unavailable, "consent unavailable", err)
		}
		return Page{}, err
	}
	src := comp.Source
	if err != nil || src.MemberID != v.Org || v.Org == "" {
		// Unknown, or another member's patient: an empty result, like a patient with no
		// data. The log keeps the difference.
		if err := x.svc.AuditRefusal(ctx, v, audit.Query, "", "unknown-or-foreign-patient", x.hash.HashQuery(r.query, audit.PHIParams())); err != nil {
			return Page{}, err
		}
		page := Page{Search: r.search, Query: r.query}
		if r.search.Total != fhir.TotalNone || r.search.SummaryCount {
			page.Total = new(int)
		}
		return page, nil
	}
	person := string(src.PersonID)
	ids := comp.Patients
	compartments := map[string]bool{}
	for _, id := range ids {
		compartments[id] = true
	}
	if versioned {
		cv, err := consent.ParseVersions(comp.With)
		if err != nil {
			return Page{}, errs.E("records.consent", errs.Unavailable, "consent unavailable", err)
		}
		dirs, err := vd.CurrentAt(ctx, person, cv)
		if err != nil {
			return Page{}, errs.E("records.consent", errs.Unavailable, "consent unavailable", err)
		}
		d.dirs[person] = dirs
	}
	dirs, err := d.directives(person)
	if err != nil {
		return Page{}, err
	}
	fp := fingerprint(dirs)
	if !r.first && c.Consent != fp {
		return Page{}, errCursor
	}
	clauses := slices.Delete(slices.Clone(r.search.Clauses), at, at+1)
	if err := x.checkChains(clauses, allowType); err != nil {
		return Page{}, err
	}
	sq := store.Query{Type: typ, Clauses: clauses, Patients: ids}
	exact := exactFilter(r.search)
	page, next, err := x.run(ctx, r, sq, rowFilter{keep: func(row store.Row) (bool, error) {
		if exact != nil && !exact(row.Stored) {
			return false, nil
		}
		return d.allow(person, row.Stored)
	}})
	if err != nil {
		return Page{}, errs.E(op, err)
	}
	if err := x.include(ctx, r.scan, d, &page, compartmentScope(person, compartments), allowType); err != nil {
		return Page{}, err
	}
	if next != nil {
		page.Next = x.next(r, "", fp, *next)
	}
	if err := x.audit(ctx, r, d, map[string][]store.Stored{person: append(slices.Clone(page.Matches), page.Included...)}); err != nil {
		return Page{}, err
	}
	d.part2Page(&page)
	return page, nil
}

// searchPatients answers a Patient search (PDQm ITI-78).
func (x *Searcher) searchPatients(ctx context.Context, r request, allowType func(string) bool) (Page, error) {
	if err := x.checkChains(r.search.Clauses, allowType); err != nil {
		return Page{}, err
	}
	d := x.decider(ctx, r.v, r.at)
	exact := exactFilter(r.search)
	keep := func(row store.Row) (bool, error) {
		if exact != nil && !exact(row.Stored) {
			return false, nil
		}
		if r.v.Org != "" && row.MemberID == r.v.Org {
			return true, nil
		}
		if !regionalPurpose(r.v.Purpose) {
			return false, nil
		}
		person, err := d.personOfPatient(row.ID)
		if err != nil {
			return false, err
		}
		return d.allow(person, row.Stored)
	}
	sq := store.Query{Type: "Patient", Clauses: r.search.Clauses}
	if !regionalPurpose(r.v.Purpose) {
		sq.Members = []string{r.v.Org} // only its own member's Patients can pass keep
	}
	before := func(rows []store.Row) error { // the persons of a batch (keep's and the audit's) in one query
		ids := make([]string, len(rows))
		for i, row := range rows {
			ids[i] = row.ID
		}
		return d.prefetchPersons(ids)
	}
	page, next, err := x.run(ctx, r, sq, rowFilter{keep: keep, before: before})
	if err != nil {
		return Page{}, errs.E("records.Search", err)
	}
	// Included resources of a compartment are those of the page's own Patients, decided by
	// the consent of each one's person (for a purpose that reaches beyond the caller's own
	// records; otherwise only the caller's own rows pass).
	matched := map[string]bool{}
	for _, st := range page.Matches {
		matched[st.ID] = true
	}
	scope := func(c string) (string, bool, error) {
		if !matched[c] {
			return "", false, nil
		}
		if !regionalPurpose(r.v.Purpose) {
			return "", true, nil
		}
		person, err := d.personOfPatient(c)
		return person, true, err
	}
	if err := x.include(ctx, r.scan, d, &page, scope, allowType); err != nil {
		return Page{}, err
	}
	if next != nil {
		page.Next = x.next(r, "", "", *next)
	}
	byPerson := map[string][]store.Stored{}
	ids := make([]string, len(page.Matches))
	for i, st := range page.Matches {
		ids[i] = st.ID
	}
	if err := d.prefetchPersons(ids); err != nil {
		return Page{}, err
	}
	for _, st := range page.Matches {
		person, err := d.personOfPatient(st.ID)
		if err != nil {
			return Page{}, err
		}
		byPerson[person] = append(byPerson[person], st)
	}
	for _, st := range page.Included {
		person := ""
		if c := storedCompartment(st); matched[c] {
			if person, err = d.personOfPatient(c); err != nil {
				return Page{}, err
			}
		}
		byPerson[person] = append(byPerson[person], st)
	}
	if err := x.audit(ctx, r, d, byPerson); err != nil {
		return Page{}, err
	}
	d.part2Page(&page)
	return page, nil
}

// Everything answers Patient/{id}/$everything for v: the consent-filtered regional record
// of the person behind the caller's own member's Patient patientID — every member's
// Patient linked to the person and everything in their compartments — newest first, paged.
// q takes _since (an instant or date), _type (comma-separated types), _count and
// _cursor. allowType, if not nil, limits the types (the caller's scopes). A patient that
// does not exist or is not the caller's member's is errs.NotFound, alike.
func (x *Searcher) Everything(ctx context.Context, v Viewer, patientID string, q url.Values, allowType func(string) bool) (Page, error) {
	const op = "records.Everything"
	var types []string
	var since time.Time
	parse := func(q url.Values) (fhir.Search, error) {
		s := fhir.Search{ResourceType: "Patient", Count: x.opts.DefaultCount}
		for k, vs := range q {
			if len(vs) != 1 || vs[0] == "" {
				return s, errs.E(op, errs.Invalid, "give "+k+" once, with a value")
			}
			switch k {
			case "_count":
				n, err := strconv.Atoi(vs[0])
				if err != nil || n < 0 {
					return s, errs.E(op, errs.Invalid, "_count must be a non-negative integer")
				}
				s.Count = min(n, x.opts.MaxCount)
			case "_type":
				for _, t := range strings.Split(vs[0], ",") {
					if !fhir.IsResourceType(t) {
						return s, errs.E(op, errs.Invalid, "_type names an unknown resource type")
					}
					types = append(types, t)
				}
			case "_since":
				t, err := time.Parse(time.RFC3339Nano, vs[0])
				if err != nil {
					if t, err = time.Parse("2006-01-02", vs[0]); err != nil {
						return s, errs.E(op, errs.Invalid, "_since must be an instant")
					}
				}
				since = t
			default:
				return s, errs.E(op, errs.Invalid, "$everything does not support this parameter")
			}
		}
		return s, nil
	}
	r, c, err := x.begin(ctx, v, "$everything", patientID, q, parse)
	if err != nil {
		return Page{}, err
	}
	notFound := errs.E(op, errs.NotFound, "resource not found")
	src, err := x.svc.mpi.SourceByPatient(ctx, nil, patientID)
	if err != nil && errs.CodeOf(err) != errs.NotFound {
		return Page{}, err
	}
	d := x.decider(ctx, v, r.at)
	if err != nil || src.MemberID != v.Org || v.Org == "" {
		ev := event(v, audit.Query, "", r.at)
		ev.Outcome, ev.Reason = audit.Deny, "not-found"
		ev.Query = x.hash.HashQuery(r.query, audit.PHIParams())
		if err := x.svc.appendAudit(ctx, ev); err != nil {
			return Page{}, err
		}
		return Page{}, notFound
	}
	person := string(src.PersonID)
	sources, err := x.svc.mpi.Sources(ctx, src.PersonID)
	if err != nil {
		return Page{}, err
	}
	ids := make([]string, 0, len(sources))
	for _, s := range sources {
		ids = append(ids, s.PatientID)
	}
	dirs, err := d.directives(person)
	if err != nil {
		return Page{}, err
	}
	fp := fingerprint(dirs)
	if !r.first && c.Consent != fp {
		return Page{}, errCursor
	}
	sq := store.Query{Types: types, Patients: ids, PatientsSelf: true, Since: since}
	page, next, err := x.run(ctx, r, sq, rowFilter{keep: func(row store.Row) (bool, error) {
		if allowType != nil && !allowType(row.Type) {
			return false, nil
		}
		return d.allow(person, row.Stored)
	}})
	if err != nil {
		return Page{}, errs.E(op, err)
	}
	if next != nil {
		page.Next = x.next(r, patientID, fp, *next)
	}
	if err := x.audit(ctx, r, d, map[string][]store.Stored{person: page.Matches}); err != nil {
		return Page{}, err
	}
	d.part2Page(&page)
	return page, nil
}

// regionalPurpose reports whether a viewer with purpose p may be shown other members'
// Patients at all (each still decided by consent): treatment, and break-the-glass, which
// consent permits only under the viewer's active declaration for the person.
func regionalPurpose(p string) bool {
	return p == consent.PurposeTreatment || p == consent.PurposeBreakGlass
}
