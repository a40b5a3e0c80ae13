package fhir

import (
	"github.com/concord-hie/concord/internal/errs"
)

// Severity is OperationOutcome.issue.severity.
type Severity string

const (
	SeverityFatal       Severity = "fatal"
	SeverityError       Severity = "error"
	SeverityWarning     Severity = "warning"
	SeverityInformation Severity = "information"
)

// IssueType is OperationOutcome.issue.code, from the FHIR issue-type value set
// (http://hl7.org/fhir/issue-type).
type IssueType string

const (
	IssueInvalid         IssueType = "invalid"
	IssueStructure       IssueType = "structure"
	IssueRequired        IssueType = "required"
	IssueValue           IssueType = "value"
	IssueInvariant       IssueType = "invariant"
	IssueSecurity        IssueType = "security"
	IssueLogin           IssueType = "login"
	IssueUnknown         IssueType = "unknown"
	IssueExpired         IssueType = "expired"
	IssueForbidden       IssueType = "forbidden"
	IssueSuppressed      IssueType = "suppressed"
	IssueProcessing      IssueType = "processing"
	IssueNotSupported    IssueType = "not-supported"
	IssueDuplicate       IssueType = "duplicate"
	IssueMultipleMatches IssueType = "multiple-matches"
	IssueNotFound        IssueType = "not-found"
	IssueDeleted         IssueType = "deleted"
	IssueTooLong         IssueType = "too-long"
	IssueCodeInvalid     IssueType = "code-invalid"
	IssueExtension       IssueType = "extension"
	IssueTooCostly       IssueType = "too-costly"
	IssueBusinessRule    IssueType = "business-rule"
	IssueConflict        IssueType = "conflict"
	IssueTransient       IssueType = "transient"
	IssueLockError       IssueType = "lock-error"
	IssueNoStore         IssueType = "no-store"
	IssueException       IssueType = "exception"
	IssueTimeout         IssueType = "timeout"
	IssueIncomplete      IssueType = "incomplete"
	IssueThrottled       IssueType = "throttled"
	IssueInformational   IssueType = "informational"
)

// Issue is one OperationOutcome.issue.
type Issue struct {
	Severity    Severity  `json:"severity"`
	Code        IssueType `json:"code"`
	Diagnostics string    `json:"diagnostics,omitempty"` // must hold no PHI
	Expression  []string  `json:"expression,omitempty"`  // FHIRPath of the element at fault
}

// IssueFor maps an error to an Issue: errs.Invalid → invalid, NotFound → not-found,
// Conflict → conflict, Forbidden → forbidden, Unauthenticated → login, TooLarge → too-long,
// Unsupported → not-supported, RateLimited → throttled, Unavailable → transient, anything
// else → exception. Diagnostics is the error's caller-safe message (errs.MessageOf) and
// Expression its Path.
func IssueFor(err error) Issue {
	is := Issue{Severity: SeverityError, Diagnostics: errs.MessageOf(err)}
	switch errs.CodeOf(err) {
	case errs.Invalid:
		is.Code = IssueInvalid
	case errs.NotFound:
		is.Code = IssueNotFound
	case errs.Conflict:
		is.Code = IssueConflict
	case errs.Forbidden:
		is.Code = IssueForbidden
	case errs.Unauthenticated:
		is.Code = IssueLogin
	case errs.TooLarge:
		is.Code = IssueTooLong
	case errs.Unsupported:
		is.Code = IssueNotSupported
	case errs.RateLimited:
		is.Code = IssueThrottled
	case errs.Unavailable:
		is.Code = IssueTransient
	default:
		is.Code = IssueException
		is.Severity = SeverityFatal
	}
	if p := errs.PathOf(err); p != "" {
		is.Expression = []string{p}
	}
	return is
}

// OperationOutcome renders an OperationOutcome resource with the given issues (at least
// one; an empty list gets a single informational "All OK" issue, as FHIR requires one).
func OperationOutcome(issues ...Issue) []byte {
	if len(issues) == 0 {
		issues = []Issue{{Severity: SeverityInformation, Code: IssueInformational, Diagnostics: "All OK"}}
	}
	b, err := jsonValue(struct {
		ResourceType string  `json:"resourceType"`
		Issue        []Issue `json:"issue"`
	}{"OperationOutcome", issues})
	if err != nil { // strings and slices always encode
		panic(err)
	}
	return b
}
