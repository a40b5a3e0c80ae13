// Package portal is Concord's human-facing web on Echo: OIDC sign-in (code flow with PKCE,
// state and nonce kept server-side), Redis sessions, the patient area (labs, and share links
// that let whoever holds one read the results it names until it expires or is revoked), the
// enrolment page and the staff landing. It is a transport: it owns no clinical data and
// decides no consent; Records and SharedRecords (implemented by the caller over the
// domains) do consent and audit.
//
// Every page is server-rendered from web/templates, parsed once by New. Errors returned by
// handlers become one readable error page that shows only the request ID.
package portal

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/redis/go-redis/v9"
	"golang.org/x/oauth2"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/web"
)

// Role is what a signed-in user is in the portal.
type Role string

const (
	RolePatient    Role = "patient"
	RoleClinician  Role = "clinician"
	RoleOfficer    Role = "officer"
	RoleUnenrolled Role = "unenrolled" // signed in, but the login is linked to no person or staff record
	// RoleProxy is a caregiver acting for a patient who granted it (ProxyGrant); the
	// session's PersonID is then the patient's.
	RoleProxy Role = "proxy"
	// RoleShare is the anonymous holder of a patient's share link, never a session's role.
	RoleShare Role = "share"
)

// Viewer is who is asking, as Records needs it for consent and audit.
type Viewer struct {
	PersonID  string // the patient's person ID; "" for staff
	Role      Role
	Org       string // staff: member ID; "" for patients
	Actor     string // "issuer|subject" of the login
	RequestID string
	SourceIP  string
	// BreakGlass: a clinician reads under their active break-the-glass declaration for the
	// person (purpose BTG); the enforcement point checks the declaration itself.
	BreakGlass bool
	// ProxySensitive: a caregiver (RoleProxy) whose grant lets them see sensitive
	// information too; without it sensitive items are left out of what they see.
	ProxySensitive bool
}

// Emergency lets clinicians declare break-the-glass from the portal.
type Emergency interface {
	// Declare records clinician v's emergency access to personID for reasonCode (one of
	// consent.BreakGlassReasons) with text, with its officer review, patient notification
	// and audit event, and returns when it expires. errs.Invalid names a bad reason.
	Declare(ctx context.Context, v Viewer, personID, reasonCode, text string) (time.Time, error)
	// Active returns when v's declaration for personID expires, or the zero time when none
	// is in force.
	Active(ctx context.Context, v Viewer, personID string) (time.Time, error)
}

// Staff is a clinician or privacy officer login at a member organization.
type Staff struct {
	Role    Role   // RoleClinician or RoleOfficer
	Org     string // member ID
	OrgName string // the member's display name; may be ""
	Name    string // display name
}

// LabResult is one laboratory result as the portal shows it. Value is the display value
// (numeric or text); Flag is an HL7 interpretation code ("H", "L", "HH", "LL", "A", "AA",
// "N" or ""); RefRange is display text such as "3.5-5.1".
type LabResult struct {
	ID               string // stable per result; optional
	Code             string // LOINC or the member's local code
	Display          string
	Value            string
	Unit             string
	Flag             string
	RefRange         string
	Effective        time.Time
	Status           string // final, preliminary, corrected, ...
	SourceMember     string // member ID
	SourceMemberName string
	// Part2 marks a 42 CFR Part 2 record disclosed to someone other than the patient (a
	// clinician of another member, a share link's holder): the page must carry the §2.32
	// redisclosure notice (consent.Part2Notice).
	Part2 bool
	// Sensitive marks a result with a sensitive label (consent.Sensitive): a share link
	// made for it records that the patient chose a sensitive result.
	Sensitive bool
}

// LogValue redacts the result, so a careless slog.Any stays safe.
func (LabResult) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// Identity links logins to persons.
type Identity interface {
	// PersonForLogin returns the person ID enrolled for (issuer, subject). It returns
	// errs.NotFound when the login is enrolled to no person, errs.Unavailable when the
	// lookup failed.
	PersonForLogin(ctx context.Context, issuer, subject string) (personID string, err error)
}

// StaffDirectory finds staff logins. StaffStore implements it on PostgreSQL.
type StaffDirectory interface {
	// StaffForLogin returns the staff record for (issuer, subject), errs.NotFound when there
	// is none, errs.Unavailable when the lookup failed.
	StaffForLogin(ctx context.Context, issuer, subject string) (Staff, error)
}

// Records reads a person's clinical data on behalf of a viewer.
type Records interface {
	// Labs returns the laboratory results of personID that v may see, in any order, each
	// labelled with its source member. It decides consent and writes the audit row before
	// returning; it returns errs.Unavailable when either fails (the portal shows a 503) and
	// errs.NotFound when v may not see the person.
	Labs(ctx context.Context, v Viewer, personID string) ([]LabResult, error)
	// Summary returns personID's problems, medications, allergies and immunizations that v
	// may see, each list newest first and labelled with its source member. Consent, audit
	// and errors as Labs.
	Summary(ctx context.Context, v Viewer, personID string) (HealthSummary, error)
	// Export writes to w the whole record of personID that v may see, as a FHIR R4 Bundle
	// (type collection) of the resources as their members sent them. Consent, audit and
	// errors as Labs: nothing is written before the audit event has committed.
	Export(ctx context.Context, v Viewer, personID string, w io.Writer) error
}

// HealthSummary is a person's record beyond labs, from every member.
type HealthSummary struct {
	Conditions    []SummaryItem
	Medications   []SummaryItem
	Allergies     []SummaryItem
	Immunizations []SummaryItem
}

// SummaryItem is one problem, medication, allergy or immunization.
type SummaryItem struct {
	Display          string
	Detail           string    // dosage, reaction, ...; "" when none
	Date             time.Time // onset, prescribed, recorded or given; zero when unknown
	Status           string    // active, resolved, completed, ...; "" when none
	SourceMemberName string
}

// LogValue redacts the item.
func (SummaryItem) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// Documents serves a patient's documents: the clinical documents every member sent about
// the person, decided by consent and audited like any record, and the patient's own uploads,
// kept apart from them.
type Documents interface {
	// List returns the documents of v's person, newest first: clinical documents as one
	// entry per near-duplicate cluster (the same content, or the same type, author
	// organization and clinical day, from any member) holding every copy, with the members
	// that sent them, then the patient's uploads. It clusters after the consent filter,
	// over only what v may see, so a withheld copy changes neither a count nor the entry's
	// primary; it stores, merges and deletes nothing. It audits the listing;
	// errs.Unavailable when consent or the audit log cannot be reached.
	List(ctx context.Context, v Viewer) ([]DocumentCluster, error)
	// Open authorizes v's read of document id (a DocumentReference id, or an upload's id),
	// describes it, and opens its content when want (nil: always) accepts the description:
	// one read, one audit event, committed when Open returns. A document v may not see is
	// errs.NotFound, as an unknown one. Close the file.
	Open(ctx context.Context, v Viewer, id string, want func(DocumentItem) bool) (*DocumentFile, error)
	// Upload stores a document of v's own, labelled patient-sourced. A repeat with the same
	// key stores nothing new. errs.TooLarge, errs.Unsupported or errs.Invalid describe bad
	// content in a sentence for the patient; errs.Unavailable when storage is down.
	Upload(ctx context.Context, v Viewer, key, contentType string, body io.Reader) error
}

// DocumentItem is one row of the documents list.
type DocumentItem struct {
	ID          string    // what Open takes
	Title       string    // the document type's name
	Date        time.Time // zero when the document gives none
	Sources     []string  // the members that sent it (names); empty for an upload
	Copies      string    // "2 copies from 2 organizations" when more than one document holds the bytes
	ContentType string
	Size        int64
	Status      string // current or superseded
	Uploaded    bool   // the patient's own upload
}

// DocumentFile is an opened document. Write streams its bytes, checked against their
// SHA-256 as they go; an error after the first byte means the transfer must be cut. Write
// is nil when Open's want declined the content.
type DocumentFile struct {
	Item        DocumentItem // the document as the page describes it (Copies left empty)
	ContentType string
	Filename    string // generated, never a sender's name
	Size        int64
	Write       func(w io.Writer) error
	Close       func() error
}

// ShareLink is a patient's share link as the portal keeps it: never its token, only the
// token's SHA-256. ResourceID is "" for a link to every lab result. Note is the patient's own
// words about the recipient and FirstName the patient's first name shown on the shared
// page: neither is ever logged.
type ShareLink struct {
	ID         int64
	PersonID   string
	ResourceID string
	// IncludeSensitive: the link shows sensitive results. For a link of all results the
	// patient ticked it; for a link of one result, that result was sensitive when the
	// patient chose it. A one-result link without it shows nothing once its result becomes
	// sensitive.
	IncludeSensitive bool
	Note             string
	FirstName        string
	CreatedBy        string // the patient's login, "iss|sub"
	Created          time.Time
	Expires          time.Time
	Revoked          time.Time // zero while not revoked
	Uses             int
	LastUsed         time.Time // zero when never used
}

// LogValue redacts the link: it holds the patient's words and name.
func (l ShareLink) LogValue() slog.Value {
	return slog.GroupValue(slog.Int64("id", l.ID), slog.String("person", l.PersonID))
}

// ShareLinks keeps patients' share links. ShareStore implements it on PostgreSQL. Every
// method but ShareLinkByHash is scoped to the owning person.
type ShareLinks interface {
	// CreateShareLink stores l (ID, Uses and Revoked ignored) under the token hash for
	// patient v (l.PersonID is v.PersonID) and returns its ID. errs.Invalid for a malformed
	// link, errs.Conflict when the person already has the most active links allowed.
	CreateShareLink(ctx context.Context, v Viewer, l ShareLink, tokenHash []byte) (int64, error)
	// ActiveShareLinks returns personID's links that are neither expired at now nor
	// revoked, newest first.
	ActiveShareLinks(ctx context.Context, personID string, now time.Time) ([]ShareLink, error)
	// RevokeShareLink revokes link id of patient v (v.PersonID) at now. errs.NotFound when
	// v has no such active link.
	RevokeShareLink(ctx context.Context, v Viewer, id int64, now time.Time) error
	// ShareLinkByHash returns the link whose token hashes to tokenHash if it is neither
	// expired at now nor revoked; errs.NotFound for an unknown, expired or revoked link
	// alike.
	ShareLinkByHash(ctx context.Context, tokenHash []byte, now time.Time) (ShareLink, error)
	// CountShareUse records one use of link id at now.
	CountShareUse(ctx context.Context, id int64, now time.Time) error
}

// SharedRecords reads what a share link shows.
type SharedRecords interface {
	// SharedLabs returns the lab results of link.PersonID that the holder of link may see
	// (every one, or link.ResourceID alone), each labelled with its source member. v is the
	// anonymous holder (Role RoleShare, RequestID, SourceIP). It decides consent as the
	// share role with the patient's own purpose (PATRQT) and commits one audit event for the
	// use, marked as a share-link use, before returning; it returns errs.Unavailable when
	// either fails, and then nothing.
	SharedLabs(ctx context.Context, v Viewer, link ShareLink) ([]LabResult, error)
}

// Privacy serves the privacy pages: the patient's access log and consent preview, and
// the officer console. PrivacyStore implements it on PostgreSQL. The portal scopes every
// call: a patient's calls name only their own person ID; officer calls come only from an
// officer session.
type Privacy interface {
	// MemberNames returns member ID → display name for every member, errs.Unavailable
	// when the directory cannot be read.
	MemberNames(ctx context.Context) (map[string]string, error)
	// AccessLog returns the permitted accesses to personID's record between from and to
	// (zero: unbounded), newest first (audit.AccessLog), for patient v. The reading is itself
	// audited (audit.AuditQuery) before the log is returned; it returns errs.Unavailable,
	// and no rows, when that event cannot be written.
	AccessLog(ctx context.Context, v Viewer, personID string, from, to time.Time) ([]audit.Access, error)
	// Accounting returns the accounting of disclosures of personID's record between from
	// and to (audit.Accounting: oldest first, at most 10,000 rows), for v: the patient
	// themself or an officer. The reading is audited like AccessLog's.
	Accounting(ctx context.Context, v Viewer, personID string, from, to time.Time) ([]audit.DisclosureRow, error)
	// Directives returns the directives in force for personID now: their own and the
	// regional default policies. errs.Unavailable when consent cannot be read.
	Directives(ctx context.Context, personID string) ([]consent.Directive, error)
	// SearchAudit returns one page of audit events matching f and the next cursor
	// (audit.Search), for officer v. The search is itself audited (audit.AuditQuery, with
	// its outcome) before the results are returned; it returns errs.Unavailable, and no
	// events, when that event cannot be written.
	SearchAudit(ctx context.Context, v Viewer, f audit.Filter) ([]audit.Event, string, error)
	// SetChoice turns patient v's sharing choice kind (optout; deny-org or sensitive with
	// org) on or off as of at: a new version of the choice's directive, audited, in force
	// for the next request.
	SetChoice(ctx context.Context, v Viewer, kind, org string, on bool, at time.Time) error
	// DirectivesAt returns the directives that were in force for personID at at (the
	// current ones for a time not in the past), for officer v's simulation, which it
	// audits (action authz-consent, reason officer-simulation).
	DirectivesAt(ctx context.Context, v Viewer, personID string, at time.Time) ([]consent.Directive, error)
	// ConsentHistory returns every version of personID's own directives (not the regional
	// policies), oldest first, for officer v. The reading is audited (action read of the
	// Consent directives, reason officer-consent-review) before it returns; errs.Unavailable
	// when it cannot be.
	ConsentHistory(ctx context.Context, v Viewer, personID string) ([]consent.Version, error)
	// RecordPaperConsent records, for officer v at at, the consent form f that a patient
	// signed outside the portal: a new version of the choice's directive (the same directive
	// as the patient's own portal choice of that kind, so either can change it later), with
	// the date signed and the form reference as its source, audited in the same transaction
	// (consent-change, reason paper-form-on or paper-form-off). errs.Invalid for a bad form,
	// errs.NotFound for an unknown or retired person, errs.Conflict for withdrawing a choice
	// that is not on record, errs.Forbidden when v is not an officer.
	RecordPaperConsent(ctx context.Context, v Viewer, f PaperConsent, at time.Time) (consent.Directive, error)
	// Notices returns personID's unread notices (today: each break-the-glass access to
	// their record), newest first, at most 20.
	Notices(ctx context.Context, personID string) ([]Notice, error)
	// UnseenNotices counts personID's unread notices.
	UnseenNotices(ctx context.Context, personID string) (int, error)
	// MarkNoticeSeen marks personID's notice id read at at; errs.NotFound when it is not
	// an unread notice of theirs.
	MarkNoticeSeen(ctx context.Context, personID string, id int64, at time.Time) error
	// Dispute records patient v's report of access seq in their access log (a permitted
	// access to v's own record) with reason, audited in the same transaction. errs.NotFound
	// when seq is not such an access; errs.Conflict when it was reported already.
	Dispute(ctx context.Context, v Viewer, seq int64, reason string) error
	// Disputes returns personID's reports by audit seq.
	Disputes(ctx context.Context, personID string) (map[int64]Dispute, error)
	// OpenDisputes returns the open reports with their accesses, oldest first.
	OpenDisputes(ctx context.Context) ([]Dispute, error)
	// CloseDispute closes open report id with the officer's resolution, audited.
	// errs.NotFound when no open report has that ID.
	CloseDispute(ctx context.Context, v Viewer, id int64, resolution string) error
	// BreakGlassReviews returns the open break-the-glass review tasks, oldest first.
	BreakGlassReviews(ctx context.Context) ([]BreakGlassReview, error)
	// CloseBreakGlassReview closes open task id as reviewed by officer v, audited with v's
	// request ID and source IP. It returns errs.NotFound when no open task has that ID.
	CloseBreakGlassReview(ctx context.Context, v Viewer, id int64) error
	// MPIReviews returns the open identity review items, oldest first, at most limit.
	MPIReviews(ctx context.Context, limit int) ([]MPIReview, error)
	// ResolveMPIReview decides open review item id as officer v: link joins its record to
	// the candidate person, otherwise the record is kept apart from the candidate. The
	// decision is audited by the MPI. It returns errs.NotFound for an unknown item,
	// errs.Conflict for one already resolved.
	ResolveMPIReview(ctx context.Context, v Viewer, id int64, link bool) error
}

// BreakGlassReview is one open officer review of a break-the-glass declaration. ReasonText
// is the clinician's own words: shown to officers, never logged.
type BreakGlassReview struct {
	ID         int64
	PersonID   string
	Member     string // declaring member ID
	Actor      string // declaring user "iss|sub"; "" for a system
	Client     string // declaring system; "" for a user
	ReasonCode string
	ReasonText string
	Declared   time.Time
	Expires    time.Time
	Opened     time.Time
}

// LogValue redacts the review: it holds free text.
func (BreakGlassReview) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// MPIReview is one open identity-matching review item: a source record that scored
// between the thresholds against a candidate person.
type MPIReview struct {
	ID        int64
	Kind      string // "review" or "possible-duplicate"
	SourceID  int64
	Member    string // the source record's member ID
	Candidate string // person ID
	RunnerUp  string // person ID or ""
	Score     float64
	Guards    string // comma-separated guard names that held it back, or ""
	Model     string
	Created   time.Time
	Fields    []MPIField // per-field evidence, in the model's field order
}

// MPIField is the comparison of one field: its agreement level and weight.
type MPIField struct {
	Name   string
	Level  int
	Weight float64
}

// DefaultMFAACR is the default Config.MFAACR: the OpenID PAPE multi-factor policy URI.
const DefaultMFAACR = "http://schemas.openid.net/pape/policies/2007/06/multi-factor"

// Config configures the portal. Issuer, ClientID, ClientSecret and BaseURL are required.
type Config struct {
	BaseURL      string // public origin of the portal, e.g. "http://localhost:8080"; no trailing slash
	Issuer       string // OIDC issuer, exactly as in its discovery document
	ClientID     string
	ClientSecret string
	RedirectURL  string // default BaseURL + "/auth/callback"
	// PostLogoutRedirectURL is sent to the OP's end_session endpoint; default BaseURL + "/".
	PostLogoutRedirectURL string

	RedisPrefix string // every session key starts with it, e.g. "concord:"

	// InsecureCookies drops the Secure flag and the __Host- prefix, for plain-http
	// deployments on a non-loopback host (browsers treat http://localhost as secure, so the
	// demo does not need it). Never set it behind TLS.
	InsecureCookies bool

	PatientIdle time.Duration // default 30 min
	StaffIdle   time.Duration // default 15 min
	Absolute    time.Duration // default 12 h
	LoginWindow time.Duration // how long a started sign-in may take; default 10 min

	// StaffMFAOff lets clinicians and privacy officers sign in without a second factor. The
	// default (false) requires one: the ID token's acr equals MFAACR or its amr names a
	// second factor (mfaMethods); a staff sign-in without that evidence is refused with a page
	// that says why. Patients are never required to use one.
	StaffMFAOff bool
	// MFAACR is the acr value that proves a second factor, and what a sign-in started from
	// the refusal page asks the OP for (acr_values); default DefaultMFAACR.
	MFAACR string
	// StepUpWindow is how recent a sign-in must be for break-the-glass, recording a consent
	// or a guardian, identity merges and splits, record exports, and a patient's changes
	// that give others more of the record: inviting a caregiver or letting one see
	// sensitive information, making a share link, a sharing choice that widens sharing
	// (requireFreshAuth, askStepUp); default DefaultStepUpWindow.
	StepUpWindow time.Duration

	Location *time.Location // dates on pages; default UTC
}

// Deps are the services the portal calls.
type Deps struct {
	Identity Identity
	Staff    StaffDirectory
	Records  Records
	// Privacy serves /access, /privacy and /officer; nil leaves those pages out.
	Privacy Privacy
	// Shares and Shared serve share links (/labs/share, /share/{token}); with either nil
	// the portal offers no share links.
	Shares ShareLinks
	Shared SharedRecords
	// Patients serves the clinicians' patient look-up (/staff/patients); nil leaves it out.
	Patients PatientLookup
	// Messages serves secure messages (/messages, /staff/messages); nil leaves them out.
	Messages Messaging
	// Documents serves the patient's documents (/documents); nil leaves them out.
	Documents Documents
	// Proxies serves caregiver access (/caregivers, /caregiver/{token}); nil leaves it out.
	Proxies Proxies
	// Emergency lets clinicians break the glass on a patient's page; nil leaves it out.
	Emergency Emergency
	Redis     redis.Cmdable
	Logger    *slog.Logger     // default slog.Default()
	Now       func() time.Time // default time.Now; tests pass a fake clock
	// HTTPClient talks to the OP (discovery, token, userinfo, JWKS); default a client with a
	// 10 s timeout that refuses redirects.
	HTTPClient *http.Client
}

// Server is the portal. Register mounts it.
type Server struct {
	cfg      Config
	identity Identity
	staff    StaffDirectory
	records  Records
	privacy  Privacy
	shares   ShareLinks
	shared   SharedRecords
	patients PatientLookup
	messages Messaging
	docs     Documents
	proxies  Proxies
	btg      Emergency
	limiter  *ipLimiter // share pages, per client IP
	// msgLimiter counts messages sent, per login
	msgLimiter     *ipLimiter
	msgHourLimiter *ipLimiter
	sessions       *SessionStore
	log            *slog.Logger
	now            func() time.Time
	hc             *http.Client
	pages          *renderer
	csp            string
	cookie         cookieNames

	mu       sync.Mutex // guards the lazily discovered OP below
	provider *oidc.Provider
	oauth    *oauth2.Config
	endSess  string // end_session_endpoint, "" when not advertised
}

// New checks cfg, parses the templates and returns the portal. It does not contact the OP:
// discovery happens at the first sign-in and is retried until it succeeds, so the portal
// starts while the IdP is down. It returns errs.Invalid for a missing or malformed setting.
// It panics if the page templates and the page registrations disagree (a build defect).
func New(cfg Config, deps Deps) (*Server, error) {
	const op = "portal.New"
	if cfg.Issuer == "" || cfg.ClientID == "" || cfg.ClientSecret == "" || cfg.BaseURL == "" {
		return nil, errs.E(op, errs.Invalid, "portal needs an issuer, a client ID, a client secret and a base URL")
	}
	if deps.Identity == nil || deps.Staff == nil || deps.Records == nil || deps.Redis == nil {
		return nil, errs.E(op, errs.Invalid, "portal needs Identity, Staff, Records and Redis")
	}
	cfg.BaseURL = strings.TrimSuffix(cfg.BaseURL, "/")
	base, err := url.Parse(cfg.BaseURL)
	if err != nil || base.Scheme == "" || base.Host == "" {
		return nil, errs.E(op, errs.Invalid, "malformed portal base URL", err)
	}
	iss, err := url.Parse(cfg.Issuer)
	if err != nil || iss.Scheme == "" || iss.Host == "" {
		return nil, errs.E(op, errs.Invalid, "malformed OIDC issuer URL", err)
	}
	if cfg.RedirectURL == "" {
		cfg.RedirectURL = cfg.BaseURL + "/auth/callback"
	}
	if cfg.PostLogoutRedirectURL == "" {
		cfg.PostLogoutRedirectURL = cfg.BaseURL + "/"
	}
	if cfg.PatientIdle == 0 {
		cfg.PatientIdle = 30 * time.Minute
	}
	if cfg.StaffIdle == 0 {
		cfg.StaffIdle = 15 * time.Minute
	}
	if cfg.Absolute == 0 {
		cfg.Absolute = 12 * time.Hour
	}
	if cfg.LoginWindow == 0 {
		cfg.LoginWindow = 10 * time.Minute
	}
	if cfg.Location == nil {
		cfg.Location = time.UTC
	}
	if cfg.MFAACR == "" {
		cfg.MFAACR = DefaultMFAACR
	}
	if cfg.StepUpWindow <= 0 {
		cfg.StepUpWindow = DefaultStepUpWindow
	}
	s := &Server{
		cfg:      cfg,
		identity: deps.Identity,
		staff:    deps.Staff,
		records:  deps.Records,
		privacy:  deps.Privacy,
		shares:   deps.Shares,
		shared:   deps.Shared,
		patients: deps.Patients,
		messages: deps.Messages,
		docs:     deps.Documents,
		proxies:  deps.Proxies,
		btg:      deps.Emergency,
		log:      deps.Logger,
		now:      deps.Now,
		hc:       deps.HTTPClient,
		pages:    newRenderer(web.Templates(), pageNames),
		cookie:   newCookieNames(cfg.InsecureCookies),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.hc == nil {
		s.hc = &http.Client{
			Timeout:       10 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	s.limiter = newIPLimiter(deps.Redis, cfg.RedisPrefix+"share-rl:", shareRatePerMinute, s.now, s.log)
	s.msgLimiter = newIPLimiter(deps.Redis, cfg.RedisPrefix+"msg-rl:", messageRatePerMinute, s.now, s.log)
	s.msgHourLimiter = newLimiter(deps.Redis, cfg.RedisPrefix+"msg-rlh:", messageRatePerHour, time.Hour, s.now, s.log)
	s.sessions = NewSessionStore(deps.Redis, cfg.RedisPrefix, SessionTimeouts{
		PatientIdle: cfg.PatientIdle, StaffIdle: cfg.StaffIdle, Absolute: cfg.Absolute, Login: cfg.LoginWindow,
	}, s.now)
	// form-action must allow the OP's origin: Chromium applies form-action to the redirects
	// that follow a form submission, and both "Sign in" and "Sign out" are forms whose
	// response redirects to the OP.
	s.csp = "default-src 'self'; frame-ancestors 'none'; form-action 'self' " + iss.Scheme + "://" + iss.Host +
		"; base-uri 'self'; object-src 'none'"
	return s, nil
}

// Sessions returns the session store, for operators' tools and tests.
func (s *Server) Sessions() *SessionStore { return s.sessions }

// SessionCookie is the name of the cookie that carries the session ID.
func (s *Server) SessionCookie() string { return s.cookie.session }

// op returns the discovered provider and the OAuth2 config, discovering them on first use.
// It returns errs.Unavailable while the OP does not answer.
func (s *Server) op(ctx context.Context) (*oidc.Provider, *oauth2.Config, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.provider != nil {
		return s.provider, s.oauth, nil
	}
	dctx, cancel := context.WithTimeout(oidc.ClientContext(ctx, s.hc), 10*time.Second)
	defer cancel()
	p, err := oidc.NewProvider(dctx, s.cfg.Issuer)
	if err != nil {
		return nil, nil, errs.E("portal.discover", errs.Unavailable, "the sign-in service is unavailable", err)
	}
	var meta struct {
		EndSession string `json:"end_session_endpoint"`
	}
	_ = p.Claims(&meta)
	s.provider = p
	s.endSess = meta.EndSession
	s.oauth = &oauth2.Config{
		ClientID:     s.cfg.ClientID,
		ClientSecret: s.cfg.ClientSecret,
		RedirectURL:  s.cfg.RedirectURL,
		Endpoint:     p.Endpoint(),
		Scopes:       []string{oidc.ScopeOpenID, "profile", "email"},
	}
	return s.provider, s.oauth, nil
}

// endSession returns the OP's end_session endpoint, or "" when it is not advertised or the
// OP has not been discovered.
func (s *Server) endSession() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.endSess
}

// Dispute is a patient's report of an access they do not recognise, and its review.
type Dispute struct {
	ID         int64
	PersonID   string
	Seq        int64  // the disputed audit event
	Reason     string // the patient's words; never logged
	Created    time.Time
	Open       bool
	Closed     time.Time
	Resolution string // the officer's words, shown to the patient
	// The disputed access, for the officer's review.
	Access audit.Access
}

// LogValue redacts the dispute: it holds free text.
func (d Dispute) LogValue() slog.Value {
	return slog.GroupValue(slog.Int64("id", d.ID), slog.Int64("seq", d.Seq))
}
