// Package errs holds Concord's one error type. It is a leaf package: it imports only the
// standard library, so every domain package can return it and every server can map it to a
// response in exactly one place.
package errs

import (
	"errors"
	"fmt"
)

// Code classifies an error for the caller. Servers map codes to responses; nothing else
// about an error is ever sent to a client.
type Code uint8

const (
	// Internal is the zero Code: anything unclassified is an internal error.
	Internal Code = iota
	// NotFound: the thing does not exist, or the caller may not know that it does.
	NotFound
	// Invalid: the input is malformed or breaks a rule; the caller must change it.
	Invalid
	// Conflict: the input clashes with stored state (duplicate, version mismatch).
	Conflict
	// Unauthenticated: no valid credentials.
	Unauthenticated
	// Forbidden: credentials are valid but lack a permission that depends on no record.
	Forbidden
	// Unavailable: a dependency failed; retrying later may succeed.
	Unavailable
	// TooLarge: the input exceeds a size limit.
	TooLarge
	// Unsupported: the request asks for something Concord does not do (media type, version).
	Unsupported
	// RateLimited: the caller sent too many requests.
	RateLimited
)

var codeNames = [...]string{
	Internal:        "internal",
	NotFound:        "not_found",
	Invalid:         "invalid",
	Conflict:        "conflict",
	Unauthenticated: "unauthenticated",
	Forbidden:       "forbidden",
	Unavailable:     "unavailable",
	TooLarge:        "too_large",
	Unsupported:     "unsupported",
	RateLimited:     "rate_limited",
}

func (c Code) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return fmt.Sprintf("code(%d)", c)
}

// Error is the only error type that crosses package boundaries.
type Error struct {
	Code Code   // how a server answers
	Msg  string // safe for any caller to read: no PHI and no text from the cause
	Op   string // the operation that failed, e.g. "mpi.Store.Merge"; for logs
	Err  error  // the cause: logged with the request ID, never sent
	// Path optionally names the offending element (FHIRPath-like "Patient.name[0].given")
	// so an OperationOutcome can point at it. It must not contain values.
	Path string
}

// E builds an *Error. Each argument is placed by its type: a Code, a string (the safe
// message), or an error (the cause). op names the failing operation.
func E(op string, args ...any) *Error {
	e := &Error{Op: op}
	for _, a := range args {
		switch v := a.(type) {
		case Code:
			e.Code = v
		case string:
			e.Msg = v
		case *Error:
			e.Err = v
			if e.Code == Internal {
				e.Code = v.Code
			}
			if e.Msg == "" {
				e.Msg = v.Msg
			}
			if e.Path == "" {
				e.Path = v.Path
			}
		case error:
			e.Err = v
		}
	}
	return e
}

// Error renders the error for logs: op, code, message and cause.
func (e *Error) Error() string {
	s := e.Op
	if s != "" {
		s += ": "
	}
	s += e.Code.String()
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// CodeOf returns the Code of the outermost *Error in err's chain, or Internal when there is
// none. A nil error has no code; CodeOf(nil) returns Internal and callers must check nil first.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Internal
}

// MessageOf returns the caller-safe message of the outermost *Error, or "" when there is none.
func MessageOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Msg
	}
	return ""
}

// PathOf returns the element path of the outermost *Error that names one, or "".
func PathOf(err error) string {
	for err != nil {
		var e *Error
		if !errors.As(err, &e) {
			return ""
		}
		if e.Path != "" {
			return e.Path
		}
		err = e.Err
	}
	return ""
}

// Is reports whether err carries code c.
func Is(err error, c Code) bool { return err != nil && CodeOf(err) == c }
